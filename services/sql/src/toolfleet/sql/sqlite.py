"""SQLite databases: each query runs in a worker process of the service's pool
(:mod:`sqlite_pool`, :mod:`sqlite_worker`), read-only and guarded there
(:mod:`sqlite_guard`); here its reply becomes a result or a :class:`QueryError`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from toolfleet.core.protocol import ErrorKind
from toolfleet.sql import errors
from toolfleet.sql.database import Database, Interrupt
from toolfleet.sql.errors import Position, QueryError
from toolfleet.sql.results import Limits, QueryResult
from toolfleet.sql.schema import ColumnInfo, ForeignKeyInfo, TableInfo
from toolfleet.sql.sqlite_pool import PoolBusy, SqlitePool, WorkerFailed


class SqliteDatabase(Database):
    """A SQLite file, opened read-only by the pool's workers."""

    engine = "sqlite"

    def __init__(
        self, db_id: str, path: Path, *, pool: SqlitePool, max_value_bytes: int, untrusted: bool
    ) -> None:
        super().__init__(db_id)
        self.path = path
        self.pool = pool
        self.max_value_bytes = max_value_bytes
        self.untrusted = untrusted  # uploaded by a session: check cell sizes while reading
        self.virtual_tables: list[str] = []  # found by load_schema

    def close(self) -> None:
        self.pool.forget(str(self.path))

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _message(self, op: str, deadline: float, **fields: Any) -> dict[str, Any]:
        return {
            "op": op,
            "path": str(self.path),
            "untrusted": self.untrusted,
            "max_value_bytes": self.max_value_bytes,
            "deadline": deadline,
            **fields,
        }

    def _request(self, op: str, deadline: float, interrupt: Interrupt, **fields: Any) -> dict:
        """One request to a worker, blocking (a service thread)."""
        started = time.monotonic()
        if started >= deadline:
            raise errors.timeout(0.0)
        message = self._message(op, deadline, **fields)
        try:
            reply = self.pool.request(str(self.path), message, deadline, bind=interrupt.bind)
        except (PoolBusy, WorkerFailed) as exc:
            raise _unanswered(exc, deadline - started) from None
        return self._checked(reply, fields.get("sql", ""), deadline - started)

    def _checked(self, reply: dict[str, Any], query: str, limit_s: float) -> dict[str, Any]:
        if not reply.get("ok"):
            raise self._failure(reply.get("failure") or {}, query, limit_s)
        return reply

    # ------------------------------------------------------------------ queries

    def execute(
        self, query: str, limits: Limits, deadline: float, interrupt: Interrupt
    ) -> QueryResult:
        return _result(self._request("query", deadline, interrupt, **_query_fields(query, limits)))

    async def execute_async(self, query: str, limits: Limits, deadline: float) -> QueryResult:
        """:meth:`execute` from the event loop, with no thread in between (the hot path of
        the sql tool); a cancelled call kills the worker running it."""
        started = time.monotonic()
        if started >= deadline:
            raise errors.timeout(0.0)
        message = self._message("query", deadline, **_query_fields(query, limits))
        try:
            reply = await self.pool.request_async(str(self.path), message, deadline)
        except (PoolBusy, WorkerFailed) as exc:
            raise _unanswered(exc, deadline - started) from None
        return _result(self._checked(reply, query, deadline - started))

    def _failure(self, failure: dict[str, Any], query: str, limit_s: float) -> QueryError:
        """A worker's failure reply as a QueryError, worded here."""
        kind = failure.get("kind")
        engine_message = failure.get("engine_message")
        if kind == "timeout":
            return errors.timeout(limit_s, engine_message)
        if kind == "refused":
            what, why = failure.get("refused") or ("a write", None)
            if why is None:
                return errors.read_only(what, engine_message)
            return errors.refused_function(what, why, engine_message)
        if kind == "one_statement":
            return errors.one_statement(engine_message)
        if kind == "too_big":
            return QueryError(
                ErrorKind.memory_limit,
                f"a value in the query would be larger than {self.max_value_bytes} bytes",
                engine_message=engine_message,
                hint="Build smaller strings and blobs (check zeroblob, printf, replace, "
                "group_concat).",
            )
        if kind == "memory_limit":
            return QueryError(
                ErrorKind.memory_limit,
                "the query needed more memory than a query may use",
                engine_message=engine_message,
                hint="Make the query cheaper: filter with WHERE, avoid DISTINCT or ORDER BY "
                "over huge intermediate results, make recursive CTEs stop.",
            )
        try:
            error_kind = ErrorKind(kind)
        except ValueError:
            error_kind = ErrorKind.internal
        offset = failure.get("offset")
        subject = failure.get("subject")
        return QueryError(
            error_kind,
            failure.get("message") or engine_message or "the query failed",
            engine_message=engine_message,
            position=Position.at(query, offset) if isinstance(offset, int) else None,
            hint=failure.get("hint") or errors.HINTS.get(error_kind),
            subject=(subject[0], subject[1]) if subject else None,
            retryable=error_kind in (ErrorKind.internal, ErrorKind.unavailable),
        )

    # ------------------------------------------------------------------ schema

    def load_schema(self, deadline: float) -> list[TableInfo]:
        try:
            reply = self._request("schema", deadline, Interrupt())
        except QueryError as exc:
            raise QueryError(
                exc.kind if exc.kind is ErrorKind.timeout else ErrorKind.unavailable,
                f"the schema of {self.db_id!r} cannot be read: {exc.message}",
                engine_message=exc.engine_message,
                retryable=exc.retryable,
            ) from None
        self.virtual_tables = list(reply.get("virtual_tables") or [])
        return [
            TableInfo(
                name=t["name"],
                kind=t["kind"],
                columns=[ColumnInfo(**c) for c in t["columns"]],
                primary_key=t["primary_key"],
                foreign_keys=[ForeignKeyInfo(**fk) for fk in t["foreign_keys"]],
            )
            for t in reply["tables"]
        ]

    def status(self) -> dict[str, Any]:
        return {"engine": self.engine, "path": str(self.path)}


def _query_fields(query: str, limits: Limits) -> dict[str, Any]:
    return {
        "sql": query,
        "max_rows": limits.max_rows,
        "max_bytes": limits.max_bytes,
        "count_limit": limits.count_limit,
    }


def _result(reply: dict[str, Any]) -> QueryResult:
    if not reply.get("has_result_set", True):
        return QueryResult(columns=[], types=[], has_result_set=False)
    return QueryResult(
        columns=list(reply["columns"]),
        types=list(reply["types"]),
        rows=list(reply["rows"]),
        row_count=int(reply["row_count"]),
        row_count_exact=bool(reply["row_count_exact"]),
    )


def _unanswered(exc: PoolBusy | WorkerFailed, limit_s: float) -> QueryError:
    """The failure of a query no worker answered."""
    if isinstance(exc, PoolBusy):
        return QueryError(
            ErrorKind.timeout,
            f"the query could not start before its deadline: {exc}",
            hint="Send the call again, or with a larger timeout_s.",
            retryable=True,
        )
    if exc.timed_out or exc.abandoned:
        return errors.timeout(
            limit_s,
            "one step of the query did not return: the process running it was killed "
            "(and replaced)",
        )
    return QueryError(
        ErrorKind.internal,
        f"the process running the query died: {exc}; it was replaced",
        hint="Send the query again; if it fails the same way, simplify it.",
        retryable=True,
    )
