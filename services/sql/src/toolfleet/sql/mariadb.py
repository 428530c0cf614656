"""MariaDB (and MySQL) databases through PyMySQL.

Sessions are read-only (``SET SESSION TRANSACTION READ ONLY``, every autocommitted statement
is a read-only transaction) and time-limited (``max_statement_time``; MySQL's
``max_execution_time``). PyMySQL does not enable multi-statements, so the server refuses a
call with several. MariaDB keeps SET and other session changes across statements: a
statement without a result set discards its connection instead of returning it to the pool.
Rows are streamed (unbuffered cursor); past the count limit the connection is dropped rather
than drained.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE
from toolfleet.core.protocol import ErrorKind
from toolfleet.sql import errors
from toolfleet.sql.database import Interrupt
from toolfleet.sql.errors import Position, QueryError
from toolfleet.sql.results import Limits, QueryResult, RowCollector
from toolfleet.sql.server import ServerDatabase

FETCH = 256
TYPE_NAMES = {
    getattr(FIELD_TYPE, name): name
    for name in dir(FIELD_TYPE)
    if name.isupper() and isinstance(getattr(FIELD_TYPE, name), int)
}
TYPE_NAMES.update(
    {
        FIELD_TYPE.LONG: "INT",
        FIELD_TYPE.LONGLONG: "BIGINT",
        FIELD_TYPE.NEWDECIMAL: "DECIMAL",
        FIELD_TYPE.VAR_STRING: "VARCHAR",
        FIELD_TYPE.STRING: "CHAR",
        FIELD_TYPE.BLOB: "TEXT/BLOB",
    }
)

CONNECTION_ERRORS = {2003, 2006, 2013, 2014, 2055, 0}
TIMEOUT_ERRORS = {1969, 3024, 1317, 1028}
DENIED_ERRORS = {1792, 1142, 1143, 1044, 1227, 1370, 1290, 1045, 1211}
SUBJECTS = {
    1146: "table",
    1054: "column",
    1052: "ambiguous_column",
    1305: "function",
    1630: "function",
}
KINDS = {
    1146: ErrorKind.not_found,
    1054: ErrorKind.not_found,
    1305: ErrorKind.not_found,
    1630: ErrorKind.not_found,
    1064: ErrorKind.syntax_error,
    1149: ErrorKind.syntax_error,
}
GRANTS_READ_ONLY = {"SELECT", "USAGE", "SHOW VIEW"}


class MariaDatabase(ServerDatabase):
    """A MariaDB or MySQL database."""

    engine = "mariadb"

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
        record.info["mariadb"] = "mariadb" in version.lower()
        record.info["time_limit"] = None

    def _is_connection_error(self, exc: BaseException) -> bool:
        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        return isinstance(exc, pymysql.err.OperationalError) and _code(exc) in CONNECTION_ERRORS

    def _run(
        self, raw: Any, query: str, limits: Limits, deadline: float, interrupt: Interrupt
    ) -> tuple[QueryResult, bool]:
        conn: pymysql.Connection = raw.dbapi_connection
        limit_s = deadline - time.monotonic()
        self._set_time_limit(raw, conn, limit_s)
        cur = conn.cursor(pymysql.cursors.SSCursor)
        started = time.monotonic()
        try:
            cur.execute(query)
            if cur.description is None:
                return QueryResult(columns=[], types=[], has_result_set=False), False
            columns = [d[0] for d in cur.description]
            types: list[str | None] = [TYPE_NAMES.get(d[1]) for d in cur.description]
            collector = RowCollector(limits)
            drained = True
            while drained and (batch := cur.fetchmany(FETCH)):
                drained = all(collector.add(row) for row in batch)
            if drained:
                cur.close()
            if time.monotonic() - started >= raw.info["time_limit"] * 0.98:
                # Some functions (BENCHMARK) stopped by max_statement_time return a value
                # instead of failing: a statement that ran to the limit was stopped.
                stopped = errors.timeout(limit_s)
                stopped.discard_connection = not drained
                raise stopped
            # rows left unread: drop the connection rather than read them all
            return collector.result(columns, types), drained
        except pymysql.err.MySQLError as exc:
            if self._is_connection_error(exc):
                raise
            raise _failure(exc, query, limit_s) from None

    def _set_time_limit(self, raw: Any, conn: Any, limit_s: float) -> None:
        # A coarse limit changes rarely, so the SET is skipped on most calls.
        step = 0.1 if limit_s >= 1 else 0.01
        seconds = max(0.01, math.floor(limit_s / step) * step)
        if raw.info.get("time_limit") == seconds:
            return
        with conn.cursor() as cur:
            if raw.info.get("mariadb", True):
                cur.execute(f"SET SESSION max_statement_time = {seconds:.2f}")
            else:  # MySQL: milliseconds, SELECT only
                cur.execute(f"SET SESSION max_execution_time = {max(1, int(seconds * 1000))}")
        raw.info["time_limit"] = seconds

    def _role_writes(self, raw: Any) -> str | None:
        with raw.dbapi_connection.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = [str(row[0]) for row in cur.fetchall()]
        problems = []
        for grant in grants:
            m = re.match(r"GRANT (.+?) ON ", grant)
            if m is None:
                problems.append(grant.split(" TO ")[0])  # a role: its grants are unknown
                continue
            privileges = {p.strip().split("(")[0].strip() for p in m.group(1).split(",")}
            if privileges - GRANTS_READ_ONLY:
                problems.append(", ".join(sorted(privileges - GRANTS_READ_ONLY)))
        return "; ".join(problems) or None


def _code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


_NEAR = re.compile(r"near '(.*)' at line (\d+)$", re.S)
_QUOTED = re.compile(r"'([^']*)'")


def _failure(exc: pymysql.err.MySQLError, query: str, limit_s: float) -> QueryError:
    """A MariaDB error as a QueryError."""
    code = _code(exc)
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if code in TIMEOUT_ERRORS:
        return errors.timeout(limit_s, message)
    if code == 1370 and "for routine" in message:
        # an unknown function is taken for a stored routine the role may not execute
        name = _QUOTED.findall(message)[-1].rsplit(".", 1)[-1]
        return QueryError(
            ErrorKind.not_found,
            f"there is no function {name}()",
            engine_message=message,
            position=_position_of(query, name),
            subject=("function", name),
        )
    if code in DENIED_ERRORS:
        return errors.read_only(message, message)
    if code == 1064:
        return _syntax_error(message, query)
    kind = KINDS.get(code, ErrorKind.runtime_error)
    subject = SUBJECTS.get(code)
    name = None
    if subject is not None:
        quoted = _QUOTED.findall(message)
        if quoted:
            name = quoted[0].rsplit(".", 1)[-1] if subject == "table" else quoted[0]
        elif subject == "function":  # "FUNCTION db.name does not exist"
            words = message.split()
            name = words[1].rsplit(".", 1)[-1] if len(words) > 1 else None
    return QueryError(
        kind,
        message,
        engine_message=message,
        position=_position_of(query, name) if name else None,
        subject=(subject, name) if subject and name else None,
    )


def _position_of(query: str, name: str) -> Position | None:
    at = query.lower().find(name.lower())
    return Position.at(query, at) if at >= 0 else None


def _syntax_error(message: str, query: str) -> QueryError:
    m = _NEAR.search(message)
    position = None
    near = ""
    if m is not None:
        near, line = m.group(1), int(m.group(2))
        line_start = 0
        for _ in range(line - 1):
            line_start = query.find("\n", line_start) + 1 or len(query)
        if not near:
            at = len(query.rstrip())
        else:
            at = query.find(near, line_start)
            if at < 0:
                at = query.find(near)
        if at >= 0:
            position = Position.at(query, at)
            if query[:at].rstrip().endswith(";"):
                return errors.one_statement(message)
    shown = near.split("\n")[0][:40]
    return QueryError(
        ErrorKind.syntax_error,
        f"syntax error near {shown!r}" if near else "syntax error at the end of the query",
        engine_message=message,
        position=position,
        hint=errors.HINTS[ErrorKind.syntax_error],
    )
