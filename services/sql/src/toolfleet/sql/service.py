"""What the sql tools share: the catalog of databases, the threads blocking drivers run in,
the session's uploaded databases, and each call's time limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.service import Service
from toolfleet.core.tool import ArgsT, CallContext, Tool, ToolError
from toolfleet.sql.catalog import Catalog
from toolfleet.sql.database import Database, Interrupt, OverBudget
from toolfleet.sql.session_databases import STATE_KEY, SessionDatabases
from toolfleet.sql.settings import SqlSettings
from toolfleet.sql.suggestions import close

T = TypeVar("T")


class SqlService(Service[SqlSettings]):
    """The sql service (one per process): the catalog, the threads, the session databases."""

    name = "sql"
    Settings = SqlSettings

    def __init__(self, settings: SqlSettings | None = None) -> None:
        super().__init__(settings)
        self.catalog = Catalog(self.settings)
        self._threads: ThreadPoolExecutor | None = None
        self._fast: ThreadPoolExecutor | None = None
        self._fast_free: asyncio.Semaphore | None = None
        self.fast_runs = 0  # queries done within the fast budget
        self.slow_runs = 0  # queries run in the other threads (first attempt over budget)

    def tools(self) -> list[Tool]:
        """sql, sql_schema and the hidden sql_database (session uploads)."""
        from toolfleet.sql.describe import SchemaTool
        from toolfleet.sql.query import QueryTool
        from toolfleet.sql.uploads import DatabaseTool

        return [QueryTool(self), SchemaTool(self), DatabaseTool(self)]

    async def start(self) -> None:
        """Start the threads."""
        self._threads = ThreadPoolExecutor(
            self.settings.threads, thread_name_prefix="toolfleet-sql"
        )
        if self.settings.fast_threads:
            self._fast = ThreadPoolExecutor(
                self.settings.fast_threads, thread_name_prefix="toolfleet-sql-fast"
            )
            self._fast_free = asyncio.Semaphore(self.settings.fast_threads)

    async def stop(self) -> None:
        """Close every database and the threads."""
        if self._threads is not None:
            threads, self._threads = self._threads, None
            await asyncio.get_running_loop().run_in_executor(threads, self.catalog.close)
            threads.shutdown(wait=False, cancel_futures=True)
            if self._fast is not None:
                self._fast.shutdown(wait=False, cancel_futures=True)
                self._fast = None

    async def blocking(
        self,
        fn: Callable[..., T],
        *args: Any,
        interrupt: Interrupt | None = None,
        fast: bool = False,
    ) -> T:
        """Run ``fn`` in one of the service's threads (the fast ones if ``fast``); if the
        call is abandoned meanwhile, ``interrupt`` stops the query (the thread then returns
        its connection)."""
        threads = self._fast if fast and self._fast is not None else self._threads
        if threads is None:
            raise ToolError(ErrorKind.unavailable, "the sql service is not started", retryable=True)
        future = asyncio.get_running_loop().run_in_executor(threads, fn, *args)
        try:
            return await future
        except asyncio.CancelledError:
            if interrupt is not None:
                interrupt()
            raise

    async def run(self, db: Database, fn: Callable[..., T], *args: Any, interrupt: Interrupt) -> T:
        """Run a query job ``fn(*args, budget)``: for a database that honours budgets, first
        in the fast threads with a short budget, then (past it) again in the others."""
        if db.budgeted and self._fast_free is not None:
            # Jobs go to a fast thread only when one is free: a thread that takes job after
            # job from a queue holds the GIL so often that the event loop starves.
            async with self._fast_free:
                budget = time.monotonic() + self.settings.fast_budget_ms / 1000
                try:
                    found = await self.blocking(fn, *args, budget, interrupt=interrupt, fast=True)
                    self.fast_runs += 1
                    return found
                except OverBudget:
                    pass
        self.slow_runs += 1
        return await self.blocking(fn, *args, None, interrupt=interrupt)

    def status(self) -> dict[str, Any]:
        """What operators see in /readyz: the databases, the threads, how queries ran."""
        return {
            **self.catalog.status(),
            "threads": self.settings.threads,
            "fast_threads": self.settings.fast_threads,
            "fast_runs": self.fast_runs,
            "slow_runs": self.slow_runs,
        }

    def deadline(self, ctx: CallContext) -> float:
        """When the query must stop: before the call's own deadline by a margin, so the
        query is stopped by the engine (and its connection kept) rather than abandoned."""
        now = time.monotonic()
        remaining = ctx.deadline - now
        margin = min(0.25, max(0.1, remaining * 0.05))
        return now + max(0.0, min(self.settings.query_timeout_s, remaining - margin))

    def session_databases(self, ctx: CallContext) -> SessionDatabases | None:
        """The databases this call's session uploaded (None: none, or no session)."""
        state = ctx.state(STATE_KEY)
        return state if isinstance(state, SessionDatabases) else None

    def resolve(self, ctx: CallContext, db_id: str) -> Database:
        """The database ``db_id`` names for this call: the session's own first, then the
        configured ones."""
        uploads = self.session_databases(ctx)
        if uploads is not None and db_id in uploads.databases:
            return uploads.databases[db_id].db
        db = self.catalog.find(db_id)
        if db is not None:
            return db
        names = [*(uploads.databases if uploads else ()), *self.catalog.names()]
        near = close(db_id, names)
        if near:
            hint = "Did you mean " + " or ".join(repr(n) for n in near) + "?"
        elif names and len(names) <= 30:
            hint = "Databases: " + ", ".join(names) + "."
        else:
            hint = "Use the db_id given with the task."
        raise ToolError(ErrorKind.not_found, f"there is no database {db_id!r}", hint=hint)


class SqlTool(Tool[ArgsT]):
    """A tool of the sql service (they share one :class:`SqlService`)."""

    # A session's uploaded databases live where its calls run (distributed: its worker).
    stateful = True

    def __init__(self, sql: SqlService) -> None:
        super().__init__(sql)
        self.sql = sql
        self.max_concurrency = sql.settings.threads  # type: ignore[misc]
