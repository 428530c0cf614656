"""SQLite databases: a pool of read-only connections per file (see :mod:`sqlite_guard`), and
SQLite's errors as diagnostics (syntax errors located by the engine itself)."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from toolfleet.core.protocol import ErrorKind
from toolfleet.sql import errors
from toolfleet.sql.database import Database, Interrupt, OverBudget
from toolfleet.sql.errors import Position, QueryError
from toolfleet.sql.results import Limits, QueryResult, RowCollector
from toolfleet.sql.schema import ColumnInfo, ForeignKeyInfo, TableInfo
from toolfleet.sql.sqlite_guard import Guard

FETCH = 256
MAX_SQL_CHARS = 1_000_000
#: SQLite's storage class of each Python type its driver returns.
STORAGE_CLASSES = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}


class _Connection:
    """A pooled connection and its guard."""

    def __init__(self, conn: sqlite3.Connection, guard: Guard) -> None:
        self.conn = conn
        self.guard = guard


class SqliteDatabase(Database):
    """A SQLite file, opened read-only; connections are created on demand and reused."""

    engine = "sqlite"
    budgeted = True

    def __init__(
        self, db_id: str, path: Path, *, max_value_bytes: int, max_idle: int, untrusted: bool
    ) -> None:
        super().__init__(db_id)
        self.path = path
        self.max_value_bytes = max_value_bytes
        self.max_idle = max_idle
        self.untrusted = untrusted  # uploaded by a session: check cell sizes while reading
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ connections

    def _connect(self) -> _Connection:
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        try:
            conn = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None, timeout=1.0
            )
        except sqlite3.Error as exc:
            raise QueryError(
                ErrorKind.unavailable,
                f"the database {self.db_id!r} cannot be opened: {exc}",
                retryable=True,
            ) from None
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        if self.untrusted:
            conn.execute("PRAGMA cell_size_check = ON")
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, self.max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_CHARS)
        guard = Guard()
        guard.install(conn)
        return _Connection(conn, guard)

    def _acquire(self) -> _Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _release(self, conn: _Connection) -> None:
        conn.guard.disarm()
        try:
            if conn.conn.in_transaction:  # a BEGIN of the query's own
                conn.conn.rollback()
        except sqlite3.Error:
            conn.conn.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.conn.close()

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    # ------------------------------------------------------------------ queries

    def execute(
        self,
        query: str,
        limits: Limits,
        deadline: float,
        interrupt: Interrupt,
        budget: float | None = None,
    ) -> QueryResult:
        started = time.monotonic()
        if started >= deadline:
            raise errors.timeout(0.0)
        conn = self._acquire()
        conn.guard.arm(deadline, interrupt, budget)
        interrupt.bind(conn.conn.interrupt)
        try:
            try:
                return self._fetch(conn.conn, query, limits)
            except UnicodeDecodeError:
                pass
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
            # Text that is not UTF-8 (seen in some benchmark databases): decode leniently.
            conn.conn.text_factory = _lenient_text
            try:
                return self._fetch(conn.conn, query, limits)
            finally:
                conn.conn.text_factory = str
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise self._failure(exc, query, conn, deadline - started) from None
        finally:
            interrupt.bind(None)
            self._release(conn)

    def _fetch(self, conn: sqlite3.Connection, query: str, limits: Limits) -> QueryResult:
        cursor = conn.execute(query)
        try:
            if cursor.description is None:
                return QueryResult(columns=[], types=[], has_result_set=False)
            columns = [d[0] for d in cursor.description]
            collector = RowCollector(limits, track_types=True)
            while batch := cursor.fetchmany(FETCH):
                if not all(collector.add(row) for row in batch):
                    break
            types = [
                "|".join(STORAGE_CLASSES.get(t, "TEXT") for t in seen) or None
                for seen in collector.value_types
            ] or [None] * len(columns)
            return collector.result(columns, types)
        finally:
            cursor.close()

    def _failure(self, exc: Exception, query: str, conn: _Connection, limit_s: float) -> QueryError:
        message = str(exc)
        guard = conn.guard
        if message == "interrupted" and guard.over_budget:
            raise OverBudget from None
        if guard.refused is not None:
            return errors.read_only(guard.refused, message)
        code = getattr(exc, "sqlite_errorname", "")
        if message == "interrupted":
            return errors.timeout(limit_s if guard.stopped_late else 0.0, message)
        if code == "SQLITE_READONLY" or "readonly database" in message:
            return errors.read_only("a write", message)
        if message.endswith("may not be modified"):
            return errors.read_only(message, message)
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
            return errors.one_statement(message)
        if code == "SQLITE_TOOBIG" or "too big" in message:
            return QueryError(
                ErrorKind.memory_limit,
                f"a value in the query would be larger than {self.max_value_bytes} bytes",
                engine_message=message,
                hint="Build smaller strings and blobs (check zeroblob, printf, replace).",
            )
        return _classify(message, query, conn.conn)

    # ------------------------------------------------------------------ schema

    def load_schema(self, deadline: float) -> list[TableInfo]:
        conn = self._acquire()
        conn.guard.arm(deadline, Interrupt())
        try:
            master = conn.conn.execute(
                "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
            ).fetchall()
            tables = []
            for kind, name in master:
                quoted = self.quote(name)
                try:
                    info = conn.conn.execute(f"PRAGMA table_info({quoted})").fetchall()
                except sqlite3.OperationalError:  # a view over a column that is gone
                    info = []
                pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
                columns = [
                    ColumnInfo(
                        name=r[1], type=r[2] or "", nullable=not r[3], primary_key=bool(r[5])
                    )
                    for r in info
                ]
                fks: dict[int, ForeignKeyInfo] = {}
                for row in conn.conn.execute(f"PRAGMA foreign_key_list({quoted})").fetchall():
                    fk = fks.setdefault(
                        row[0], ForeignKeyInfo(columns=[], ref_table=row[2], ref_columns=[])
                    )
                    fk.columns.append(row[3])
                    if row[4] is not None:
                        fk.ref_columns.append(row[4])
                tables.append(
                    TableInfo(
                        name=name,
                        kind="view" if kind == "view" else "table",
                        columns=columns,
                        primary_key=pk,
                        foreign_keys=list(fks.values()),
                    )
                )
            return tables
        except sqlite3.Error as exc:
            raise QueryError(
                ErrorKind.unavailable,
                f"the schema of {self.db_id!r} cannot be read: {exc}",
                engine_message=str(exc),
            ) from None
        finally:
            self._release(conn)

    def status(self) -> dict[str, Any]:
        return {"engine": self.engine, "path": str(self.path)}


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# ---------------------------------------------------------------------- error messages

_NEAR = re.compile(r'^near "(.*)": syntax error$', re.S)
_UNRECOGNIZED = re.compile(r'^unrecognized token: "(.*)"$', re.S)
_NO_TABLE = re.compile(r"^no such table: (.+)$")
_NO_COLUMN = re.compile(r"^no such column: (.+)$")
_AMBIGUOUS = re.compile(r"^ambiguous column name: (.+)$")
_NO_FUNCTION = re.compile(r"^no such function: (.+)$")


def _classify(message: str, query: str, conn: sqlite3.Connection) -> QueryError:
    """A SQLite error message as a QueryError (kind, position, subject for hints)."""
    if m := _NEAR.match(message):
        token = m.group(1)
        offset = _syntax_error_offset(conn, query, token)
        return QueryError(
            ErrorKind.syntax_error,
            f"syntax error near {token!r}",
            engine_message=message,
            position=None if offset is None else Position.at(query, offset),
            hint=errors.HINTS[ErrorKind.syntax_error],
        )
    if message == "incomplete input":
        end = len(query.rstrip().rstrip(";").rstrip())
        return QueryError(
            ErrorKind.syntax_error,
            "syntax error: the query ends too early (unclosed parenthesis, quote or clause?)",
            engine_message=message,
            position=Position.at(query, end),
            hint="Complete the statement: close every parenthesis and quote.",
        )
    if m := _UNRECOGNIZED.match(message):
        offset = query.find(m.group(1))
        return QueryError(
            ErrorKind.syntax_error,
            f"unrecognized token {m.group(1)!r} (an unclosed quote?)",
            engine_message=message,
            position=None if offset < 0 else Position.at(query, offset),
            hint="Strings use single quotes ('text'); identifiers double quotes (\"name\").",
        )
    for pattern, kind, what, text in (
        (_NO_TABLE, ErrorKind.not_found, "table", "no such table: {}"),
        (_NO_COLUMN, ErrorKind.not_found, "column", "no such column: {}"),
        (_AMBIGUOUS, ErrorKind.runtime_error, "ambiguous_column", "ambiguous column name: {}"),
        (_NO_FUNCTION, ErrorKind.not_found, "function", "no such function: {}"),
    ):
        if m := pattern.match(message):
            name = m.group(1)
            offset = _find_word(query, name.rsplit(".", 1)[-1])
            return QueryError(
                kind,
                text.format(name),
                engine_message=message,
                position=None if offset is None else Position.at(query, offset),
                subject=(what, name),
            )
    return QueryError(ErrorKind.runtime_error, message, engine_message=message)


def _syntax_error_offset(conn: sqlite3.Connection, query: str, token: str) -> int | None:
    """Where SQLite's parser stopped: the occurrence of ``token`` such that the query cut
    right after it fails to compile with the same error (compiled with EXPLAIN, not run)."""
    candidates = _occurrences(query, token)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    expected = f'near "{token}": syntax error'
    for offset in candidates[:20]:
        try:
            conn.execute("EXPLAIN " + query[: offset + len(token)]).close()
        except sqlite3.Error as exc:
            if str(exc) == expected:
                return offset
    return candidates[0]


def _occurrences(query: str, token: str) -> list[int]:
    """Offsets of ``token`` in the query outside string literals and comments, at word
    boundaries when the token is a word."""
    if not token:
        return []
    code = _blank_literals(query)
    word = token[0].isalnum() or token[0] == "_"
    found, start = [], 0
    while (i := code.find(token, start)) >= 0:
        start = i + 1
        if word and (
            (i > 0 and (code[i - 1].isalnum() or code[i - 1] == "_"))
            or (
                i + len(token) < len(code)
                and (code[i + len(token)].isalnum() or code[i + len(token)] == "_")
            )
        ):
            continue
        found.append(i)
    if not found and token in query:  # the token is itself a literal
        found.append(query.find(token))
    return found


def _find_word(query: str, word: str) -> int | None:
    word = word.strip('"`[]')
    found = _occurrences(query, word) or _occurrences(query.lower(), word.lower())
    return found[0] if found else None


_LITERAL = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.S)


def _blank_literals(query: str) -> str:
    """The query with string literals and comments blanked out (same length)."""
    return _LITERAL.sub(lambda m: " " * len(m.group(0)), query)
