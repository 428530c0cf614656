"""The interface every engine implements, and what the event loop uses to stop a query.

A :class:`Database`'s methods block (drivers are synchronous): the service runs them in its
threads. Each reuses pooled connections, so a lookup costs one query, not a connection.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from toolfleet.core.protocol import ErrorKind
from toolfleet.sql.errors import QueryError
from toolfleet.sql.results import Limits, QueryResult
from toolfleet.sql.schema import SampleRows, Schema, TableInfo
from toolfleet.sql.suggestions import (
    ambiguous_column,
    function_hint,
    misspelt_keyword,
    unknown_column,
    unknown_function,
    unknown_table,
)


class Interrupt:
    """Stops a query running in another thread: the thread binds how (e.g. the connection's
    interrupt), the event loop calls it when the call is abandoned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop: Callable[[], Any] | None = None
        self.requested = False

    def bind(self, stop: Callable[[], Any] | None) -> None:
        """Set (or clear, with None) how to stop the running query."""
        with self._lock:
            self._stop = stop
            if stop is not None and self.requested:
                stop()

    def __call__(self) -> None:
        with self._lock:
            self.requested = True
            if self._stop is not None:
                self._stop()


class Database(abc.ABC):
    """One database the sql tools can query, read-only."""

    engine: ClassVar[str]  # sqlite, postgresql or mariadb

    def __init__(self, db_id: str) -> None:
        self.db_id = db_id
        self._schema: Schema | None = None
        self._schema_lock = threading.Lock()
        self._samples: dict[tuple[str, int], SampleRows] = {}

    @abc.abstractmethod
    def execute(
        self,
        query: str,
        limits: Limits,
        deadline: float,
        interrupt: Interrupt,
    ) -> QueryResult:
        """Run ``query`` read-only until ``deadline`` (time.monotonic()); raises
        :class:`QueryError` (without schema hints: see :meth:`explain`)."""

    @abc.abstractmethod
    def load_schema(self, deadline: float) -> list[TableInfo]:
        """Read the tables, views, columns and keys from the engine."""

    @abc.abstractmethod
    def quote(self, name: str) -> str:
        """``name`` as a quoted identifier of this engine."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connections (queries running now finish first)."""

    def status(self) -> dict[str, Any]:
        """What operators should see of this database."""
        return {"engine": self.engine}

    def schema(self, deadline: float) -> Schema:
        """The schema, read once and kept."""
        with self._schema_lock:
            if self._schema is None:
                self._schema = Schema(self.load_schema(deadline))
            return self._schema

    def sample(self, table: TableInfo, rows: int, deadline: float) -> SampleRows:
        """The first ``rows`` rows of a table (read once and kept)."""
        kept = self._samples.get((table.name, rows))
        if kept is not None:
            return kept
        limits = Limits(max_rows=rows, max_bytes=1 << 20, count_limit=rows)
        query = f"SELECT * FROM {self.quote(table.name)} LIMIT {int(rows)}"
        result = self.execute(query, limits, deadline, Interrupt())
        sample = SampleRows(columns=result.columns, rows=result.rows)
        self._samples[(table.name, rows)] = sample
        return sample

    def explain(self, error: QueryError, query: str, deadline: float) -> QueryError:
        """Add a did-you-mean hint from the real schema to a failure that names a table,
        column or function, and a word on a syntax error that looks like a misspelt keyword."""
        if error.kind is ErrorKind.syntax_error and error.position is not None:
            word = misspelt_keyword(query, error.position.offset)
            if word is not None:
                error.hint = f"{word} {error.hint or ''}".strip()
        if error.subject is None:
            return error
        what, name = error.subject
        if what == "function":
            # a known dialect mix-up says more than the engine's generic hint
            error.hint = (
                function_hint(name, self.engine)
                or error.hint
                or unknown_function(name, self.engine)
            )
            return error
        if error.hint is not None:  # the engine's own (PostgreSQL: "Perhaps you meant ...")
            return error
        try:
            schema = self.schema(deadline)
        except QueryError:
            return error
        if what == "table":
            error.hint = unknown_table(name, schema, self.engine)
        elif what == "column":
            error.hint = unknown_column(name, schema, query, self.engine)
        elif what == "ambiguous_column":
            error.hint = ambiguous_column(name, schema, query)
        return error
