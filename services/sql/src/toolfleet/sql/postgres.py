"""PostgreSQL databases (psycopg 3): every call is one ``BEGIN READ ONLY`` transaction with a
``statement_timeout``, rolled back at the end, so nothing a query does outlives it.

The query is sent with the extended protocol (``binary=True``), which the server refuses to
run with more than one statement, and rows are streamed (chunked), so a huge result is never
held in memory: past the count limit the query is cancelled.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from toolfleet.core.protocol import ErrorKind
from toolfleet.sql import errors
from toolfleet.sql.database import Interrupt
from toolfleet.sql.errors import Position, QueryError
from toolfleet.sql.results import Limits, QueryResult, RowCollector
from toolfleet.sql.server import ServerDatabase

#: Rows per network chunk (libpq 17+; one at a time with older ones).
CHUNK = 256 if psycopg.pq.version() >= 170000 else 1

#: SQLSTATE -> (kind, subject of did-you-mean hints).
STATES: dict[str, tuple[ErrorKind, str | None]] = {
    "42601": (ErrorKind.syntax_error, None),
    "42P01": (ErrorKind.not_found, "table"),
    "42703": (ErrorKind.not_found, "column"),
    "42702": (ErrorKind.runtime_error, "ambiguous_column"),
    "42883": (ErrorKind.not_found, "function"),
    "25006": (ErrorKind.permission_denied, None),
    "42501": (ErrorKind.permission_denied, None),
}
#: SQLSTATE classes that mean a value or a type did not fit: the model's mistake.
TYPE_CLASSES = ("22", "42804", "42846", "42725", "42P18", "42P08", "42883")


class PostgresDatabase(ServerDatabase):
    """A PostgreSQL database."""

    engine = "postgresql"

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            cur.execute(
                "SET default_transaction_read_only = on; SET application_name = 'toolfleet-sql'"
            )

    def _is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            getattr(exc, "sqlstate", None) is None or str(exc.sqlstate).startswith("08")
        )

    def _run(
        self, raw: Any, query: str, limits: Limits, deadline: float, interrupt: Interrupt
    ) -> tuple[QueryResult, bool]:
        conn: psycopg.Connection = raw.dbapi_connection
        limit_s = deadline - time.monotonic()
        cur = conn.cursor()
        cur.execute(f"BEGIN READ ONLY; SET LOCAL statement_timeout = {max(1, int(limit_s * 1000))}")
        interrupt.bind(conn.cancel_safe if hasattr(conn, "cancel_safe") else conn.cancel)
        ended = False
        try:
            try:
                result, keep = _stream(conn, cur, query, limits)
            finally:
                interrupt.bind(None)
                ended = _rollback(cur)
        except psycopg.Error as exc:
            if self._is_connection_error(exc):
                raise
            failure = _failure(exc, query, limit_s, interrupt)
            failure.discard_connection = not ended
            raise failure from None
        return result, keep and ended

    def _role_writes(self, raw: Any) -> str | None:
        conn: psycopg.Connection = raw.dbapi_connection
        with conn.cursor() as cur:
            cur.execute("BEGIN READ ONLY")
            try:
                cur.execute(ROLE_CHECK)
                row = cur.fetchone()
            finally:
                cur.execute("ROLLBACK")
        assert row is not None
        problems = [what for what, bad in zip(ROLE_PROBLEMS, row, strict=True) if bad]
        return ", ".join(problems) or None


ROLE_PROBLEMS = (
    "superuser",
    "may create in the database",
    "may create in a schema",
    "may INSERT/UPDATE/DELETE/TRUNCATE a table",
    "may write server files or run server programs",
)
ROLE_CHECK = """
SELECT
  (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
  has_database_privilege(current_database(), 'CREATE'),
  EXISTS (SELECT 1 FROM pg_namespace n
          WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
            AND has_schema_privilege(n.oid, 'CREATE')),
  EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
            AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
  pg_has_role('pg_write_server_files', 'MEMBER')
    OR pg_has_role('pg_execute_server_program', 'MEMBER')
"""


def _stream(
    conn: psycopg.Connection, cur: psycopg.Cursor, query: str, limits: Limits
) -> tuple[QueryResult, bool]:
    """Stream the query's rows into a result; and whether the connection may be reused."""
    collector = RowCollector(limits)
    columns: list[str] | None = None
    types: list[str | None] = []
    stream = cur.stream(query, binary=True, size=CHUNK)
    try:
        for row in stream:
            if columns is None:
                columns, types = _describe(cur.description)
            if not collector.add(row):
                break  # closing the stream cancels the rest of the query
    except psycopg.ProgrammingError as exc:
        if exc.sqlstate is not None or "didn't produce a result" not in str(exc):
            raise
        # A statement without a result set (SET, PREPARE ...): its effects may outlive the
        # transaction in this session, so the connection is not reused.
        return QueryResult(columns=[], types=[], has_result_set=False), False
    finally:
        stream.close()
    if columns is None:  # no rows: ask the server for the result's columns
        columns, types = _describe_statement(conn, query)
    return collector.result(columns, types), True


def _rollback(cur: psycopg.Cursor) -> bool:
    """End the call's transaction; False when the connection is no longer usable."""
    try:
        cur.execute("ROLLBACK")
        cur.close()
    except psycopg.Error:
        return False
    return True


def _describe(description: Any) -> tuple[list[str], list[str | None]]:
    return [c.name for c in description], [c.type_display for c in description]


def _describe_statement(conn: psycopg.Connection, query: str) -> tuple[list[str], list[str | None]]:
    """Columns of a query that returned no rows (prepared, described, not run)."""
    pg = conn.pgconn
    prepared = pg.prepare(b"", query.encode())
    if prepared.status != psycopg.pq.ExecStatus.COMMAND_OK:
        return [], []
    desc = pg.describe_prepared(b"")
    names, types = [], []
    for i in range(desc.nfields):
        names.append((desc.fname(i) or b"").decode())
        info = conn.adapters.types.get(desc.ftype(i))
        types.append(info.name if info is not None else None)
    return names, types


def _failure(exc: psycopg.Error, query: str, limit_s: float, interrupt: Interrupt) -> QueryError:
    """A PostgreSQL error as a QueryError."""
    state = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or str(exc).splitlines()[0]
    if state == "57014":  # query_canceled: statement_timeout or our cancel
        return errors.timeout(0.0 if interrupt.requested else limit_s, message)
    position = None
    if diag.statement_position:
        position = Position.at(query, int(diag.statement_position) - 1)
    if state in ("25006", "42501"):
        return errors.read_only(message, message)
    if "cannot insert multiple commands" in message:
        return errors.one_statement(message)
    kind, subject = STATES.get(state, (ErrorKind.runtime_error, None))
    if state == "42883" and message.startswith("operator"):  # a type mismatch
        kind, subject = ErrorKind.runtime_error, None
    hint = diag.message_hint
    if kind is ErrorKind.syntax_error and hint is None:
        hint = errors.HINTS[ErrorKind.syntax_error]
    if state.startswith(TYPE_CLASSES) and subject is None:
        hint = (hint + " " if hint else "") + (
            "Cast explicitly (x::integer, x::text) or compare values of the same type."
        )
    name = _subject_name(message, subject) if subject else None
    return QueryError(
        kind,
        message,
        engine_message=str(exc).strip() if diag.message_detail else None,
        position=position,
        hint=hint,
        subject=(subject, name) if subject and name else None,
    )


def _subject_name(message: str, subject: str) -> str | None:
    """The name in 'relation "x" does not exist', 'column t.x does not exist' ..."""
    if subject == "function":
        head = message.removeprefix("function ").split(" does not exist")[0]
        return head.split("(")[0]
    if '"' in message:
        return message.split('"')[1]
    words = message.split()
    return words[1] if len(words) > 1 else None
