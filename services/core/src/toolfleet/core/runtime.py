"""The runtime: what the gateway's routes (REST, MCP, compat) call.

It resolves sessions and trajectories, admits or refuses calls (back-pressure), applies
idempotency keys, hands invocations to the dispatcher, books usage and counts metrics.

Sessions, the usage ledger and idempotency records sit behind three interfaces
(:class:`SessionStore`, :class:`UsageLedger`, :class:`IdempotencyStore`): in memory in the
embedded mode, in Redis in the distributed mode (:mod:`toolfleet.core.redis_state`), so any
gateway replica answers any call, fork, usage query or release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from toolfleet.core import logs
from toolfleet.core.calllog import CallLog
from toolfleet.core.dispatch import Dispatcher
from toolfleet.core.errors import (
    IdempotencyConflictError,
    OverloadedError,
    SessionExpiredError,
    SessionNotFoundError,
    TrajectoryNotFoundError,
    UnknownToolError,
)
from toolfleet.core.executor import unknown_tool
from toolfleet.core.idempotency import IdempotencyStore, MemoryIdempotencyStore, fingerprint
from toolfleet.core.ledger import Booking, MemoryUsageLedger, UsageLedger
from toolfleet.core.metrics import Metrics
from toolfleet.core.protocol import (
    CallRequest,
    ErrorDiagnostic,
    ErrorKind,
    Invocation,
    Observation,
    SessionCreate,
    SessionFork,
    SessionInfo,
    TextPart,
    ToolCall,
    ToolSpec,
    TrajectoryUsage,
)
from toolfleet.core.redis_dispatch import RedisDispatcher
from toolfleet.core.redis_state import (
    RedisIdempotencyStore,
    RedisSessionStore,
    RedisState,
    SessionQuery,
)
from toolfleet.core.service import Service
from toolfleet.core.service_metrics import ServiceStatusCollector
from toolfleet.core.sessions import MemorySessionStore, Session, SessionStore
from toolfleet.core.settings import Settings
from toolfleet.core.surrogates import ARGUMENTS_NOTE, scrub
from toolfleet.protocol.diagnostics import with_diagnostic_text

log = logging.getLogger(__name__)


class Runtime:
    """Sessions, ledger, back-pressure and idempotency in front of a dispatcher."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        metrics: Metrics | None = None,
        *,
        shared_state: bool | None = None,
    ) -> None:
        """``shared_state``: keep sessions, ledger and idempotency records in Redis
        (``settings.redis_url``); None: when the dispatcher is the Redis one."""
        self.settings = settings
        self.dispatcher = dispatcher
        self.metrics = metrics or Metrics()
        dispatcher.use_metrics(self.metrics)
        self.sessions: SessionStore
        self.ledger: UsageLedger
        self.idempotency: IdempotencyStore
        if shared_state is None:
            shared_state = isinstance(dispatcher, RedisDispatcher)
        # distributed, state in Redis: a call's session is resolved in the script that
        # queues it, and the worker books its answer (no round trips of their own)
        self._folding: RedisDispatcher | None = None
        self._shared_sessions: RedisSessionStore | None = None
        if shared_state:
            # distributed: the state every gateway replica shares lives in Redis
            shared = RedisState(settings)
            self._shared_sessions = shared.sessions
            if isinstance(dispatcher, RedisDispatcher):
                self._folding = dispatcher
            self.sessions, self.ledger, self.idempotency = (
                shared.sessions,
                shared.ledger,
                shared.idempotency,
            )
        else:
            self.sessions = MemorySessionStore(
                settings.session_ttl_s, settings.max_session_ttl_s, settings.max_sessions
            )
            self.ledger = MemoryUsageLedger()
            self.idempotency = MemoryIdempotencyStore(
                settings.idempotency_ttl_s, settings.idempotency_max_entries
            )
        self.in_flight = 0
        self._sweeper: asyncio.Task[None] | None = None
        self.metrics.registry.register(ServiceStatusCollector(dispatcher))
        self.call_log = CallLog.from_settings(settings, self.metrics)  # None: off

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the call log, the dispatcher and the session sweeper."""
        if self.call_log is not None:
            await self.call_log.start()
        await self.dispatcher.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="toolfleet-session-sweeper")

    async def stop(self) -> None:
        """Stop the sweeper and the dispatcher (which releases every session's state)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.dispatcher.stop()
        for store in (self.sessions, self.ledger, self.idempotency):
            await store.close()
        if self.call_log is not None:
            await self.call_log.stop()  # after the dispatcher: its last calls are written

    async def _sweep(self) -> None:
        """End the sessions whose TTL passed: each is taken by one gateway of the deployment,
        which tells the worker holding its state."""
        while True:
            await asyncio.sleep(self.settings.session_sweep_s)
            try:
                expired = await self.sessions.take_expired()
            except Exception:  # Redis unreachable: the next sweep takes them
                log.warning("finding expired sessions failed", exc_info=True)
                continue
            for session_id in expired:
                await self._release(session_id)
            if expired:
                await self._gauge_sessions()

    # ------------------------------------------------------------------ tools

    def specs(self) -> list[ToolSpec]:
        """Every tool served."""
        return self.dispatcher.specs()

    def has_tool(self, name: str) -> bool:
        """True when a tool of that name is served (hidden ones included)."""
        return self.dispatcher.has_tool(name)

    def check_tool(self, name: str) -> None:
        """Raise :class:`UnknownToolError` unless the tool is served."""
        if not self.dispatcher.has_tool(name):
            available = [s.name for s in self.specs()]
            raise UnknownToolError(name, available, self.dispatcher.removed(name))

    def status(self) -> dict[str, Any]:
        """Per service, what it reports for operators (``/readyz`` ``services``)."""
        return self.dispatcher.status()

    def local_service(self, name: str) -> Service[Any] | None:
        """The service of that name when its tools run in this process (embedded), so a
        route can read its settings; None in distributed mode or when it is not served."""
        return self.dispatcher.local_service(name)

    async def readiness(self) -> str | None:
        """Why the runtime cannot take calls now (None: it can): the shared state's store
        does not answer, or a configured service has no live worker."""
        return await self.dispatcher.readiness()

    async def session_count(self) -> int:
        """Live sessions (of the deployment, in distributed mode)."""
        return await self.sessions.count()

    def admit(self, count: int = 1) -> None:
        """Refuse with :class:`OverloadedError` when ``count`` more calls would pass the
        in-flight limit."""
        if self.in_flight + count > self.settings.max_in_flight:
            self.metrics.rejected.labels("overload").inc(count)
            raise OverloadedError(
                f"{self.in_flight} calls in flight, limit {self.settings.max_in_flight}",
                self.settings.retry_after_s,
            )

    async def call(self, tenant: str, tool: str, request: CallRequest) -> Observation:
        """Run one call. Raises for what the caller must fix (unknown tool or session, an
        idempotency conflict) and :class:`OverloadedError`; a tool's failure, and a session
        that expired, are observations."""
        self.check_tool(tool)
        query = self._query(tenant, tool, request)
        try:
            session = await self._resolve_session(tenant, request) if query is None else None
            self.admit()
            return await self._submit(tenant, tool, request, session, query)
        except SessionExpiredError as exc:
            return _expired(tool, request, exc)

    async def batch(self, tenant: str, calls: list[ToolCall]) -> list[Observation]:
        """Run calls concurrently; each problem becomes that call's observation."""
        self.admit(len(calls))
        return list(await asyncio.gather(*(self._batch_one(tenant, c) for c in calls)))

    async def _batch_one(self, tenant: str, call: ToolCall) -> Observation:
        ids = {"session_id": call.session_id, "trajectory_id": call.trajectory_id}
        try:
            self.check_tool(call.tool)
            query = self._query(tenant, call.tool, call)
            session = await self._resolve_session(tenant, call) if query is None else None
            return await self._submit(tenant, call.tool, call, session, query)
        except SessionExpiredError as exc:
            return _expired(call.tool, call, exc)
        except (UnknownToolError, SessionNotFoundError) as exc:
            diagnostic = _lookup_diagnostic(exc)
            return _failure(call.tool, diagnostic, **ids)
        except OverloadedError as exc:
            diagnostic = ErrorDiagnostic(
                kind=ErrorKind.rate_limited,
                message=f"the {call.tool} tool's queue is full ({exc}); not run",
                hint=f"Send the call again after {exc.retry_after_s} s.",
                retryable=True,
            )
            return _failure(call.tool, diagnostic, **ids)
        except IdempotencyConflictError as exc:
            diagnostic = ErrorDiagnostic(kind=ErrorKind.invalid_arguments, message=str(exc))
            return _failure(call.tool, diagnostic, **ids)

    def _query(self, tenant: str, tool: str, request: CallRequest) -> SessionQuery | None:
        """The call's session lookup, when it can ride in the script that queues the call
        (state in Redis, the Redis dispatcher, workers that book answers); else None."""
        if self._folding is None or self._shared_sessions is None:
            return None
        if request.session_id is None and request.trajectory_id is None:
            return None
        if not self._folding.books_answers(tool):
            return None
        return self._shared_sessions.query(tenant, request.session_id, request.trajectory_id)

    async def _resolve_session(self, tenant: str, request: CallRequest) -> Session | None:
        if request.session_id is not None:
            return await self.sessions.get(tenant, request.session_id)
        if request.trajectory_id is not None:
            return await self.sessions.for_trajectory(tenant, request.trajectory_id)
        return None

    async def _submit(
        self,
        tenant: str,
        tool: str,
        request: CallRequest,
        session: Session | None,
        query: SessionQuery | None = None,
    ) -> Observation:
        """Run the call in ``session``, or in the session ``query`` resolves as it queues the
        call (the worker then books the answer)."""
        trajectory_id = request.trajectory_id or (session.trajectory_id if session else None)
        timeout_s = min(
            request.timeout_s or self.settings.default_timeout_s, self.settings.max_timeout_s
        )
        # Arguments parsed by a stdlib-JSON route may hold lone surrogates ("\ud800"): made
        # valid here, so the invocation serialises (Redis, call log) and the tool sees text.
        arguments, surrogates = scrub(request.arguments)
        inv = Invocation(
            call_id=_new_call_id(),
            tool=tool,
            arguments=arguments,
            tenant=tenant,
            session_id=session.session_id if session else None,
            trajectory_id=trajectory_id,
            timeout_s=timeout_s,
            submitted_at=time.time(),
            request_id=logs.current_request_id(),
        )
        booking = None  # with a query, the worker books the answer
        if trajectory_id and query is None:
            booking = Booking(self.ledger, tenant, trajectory_id)
        if request.idempotency_key is not None:
            key = request.idempotency_key
            print_ = fingerprint(
                tool, arguments, request.session_id or f"t:{request.trajectory_id or ''}"
            )
            deadline = inv.submitted_at + inv.timeout_s
            store = self.idempotency
            if query is not None and isinstance(store, RedisIdempotencyStore):
                # the record starts in the script that queues the call; the worker books
                record = store.record(tenant, key, print_, inv.call_id, deadline)
                make = lambda: self._run(inv, None, query, record)  # noqa: E731
                obs = await store.run(
                    tenant, key, print_, inv.call_id, deadline, make, None, tool, begins=True
                )
            else:
                # booked by the store, with the record's end
                make = lambda: self._run(inv, None, query)  # noqa: E731
                obs = await store.run(
                    tenant, key, print_, inv.call_id, deadline, make, booking, tool
                )
        else:
            obs = await self._run(inv, booking, query)
        if surrogates:
            note = TextPart(text=ARGUMENTS_NOTE)
            obs = obs.model_copy(update={"content": [*obs.content, note]})
        return obs

    async def _run(
        self,
        inv: Invocation,
        booking: Booking | None,
        query: SessionQuery | None = None,
        record: list[Any] | None = None,
    ) -> Observation:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        bound = logs.bind_call(inv)  # log lines name the call
        try:
            if query is None:
                obs = await self.dispatcher.dispatch(inv)
            else:
                assert self._folding is not None
                obs = await self._folding.dispatch_in_session(inv, query, book=True, record=record)
                if self.call_log is not None or self.settings.log_calls:
                    ids = {"session_id": obs.session_id, "trajectory_id": obs.trajectory_id}
                    inv = inv.model_copy(update=ids)  # the session the script found
        except OverloadedError:
            self.metrics.rejected.labels("backlog").inc()
            raise
        finally:
            logs.unbind_call(bound)
            self.in_flight -= 1
            self.metrics.in_flight.dec()
        obs = with_diagnostic_text(obs)  # whatever ran it, a failure says why in its text
        seconds = time.perf_counter() - started
        self.metrics.observe(obs, seconds)
        if self.call_log is not None:
            self.call_log.record(inv, obs, seconds)
        if self.settings.log_calls:
            logs.log_call(log, inv, obs, seconds)
        if booking is not None:
            await booking.book(obs)
        return obs

    # ------------------------------------------------------------------ sessions

    async def create_session(self, tenant: str, request: SessionCreate) -> SessionInfo:
        """Open a session (with a trajectory id: the trajectory's session, unless it has one)."""
        session = await self.sessions.create(
            tenant,
            ttl_s=request.ttl_s,
            metadata=request.metadata,
            trajectory_id=request.trajectory_id,
        )
        if request.trajectory_id is not None:
            await self.ledger.touch(tenant, request.trajectory_id)
        await self._gauge_sessions()
        return session.info()

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo:
        """Describe a live session (does not renew its TTL)."""
        return (await self.sessions.get(tenant, session_id, touch=False)).info()

    async def delete_session(self, tenant: str, session_id: str) -> SessionInfo:
        """End a session and release its tool state."""
        info = await self.get_session(tenant, session_id)
        await self._end(session_id)
        return info

    async def fork_session(self, tenant: str, session_id: str, request: SessionFork) -> SessionInfo:
        """Copy a live session, tool state included, into a new session."""
        parent = await self.sessions.get(tenant, session_id)
        child = await self.sessions.create(
            tenant,
            ttl_s=request.ttl_s or parent.ttl_s,
            metadata=parent.metadata if request.metadata is None else request.metadata,
            trajectory_id=request.trajectory_id,
            parent_id=parent.session_id,
        )
        try:
            await self.dispatcher.fork_session(parent.session_id, child.session_id)
        except BaseException:
            await self.sessions.remove(child.session_id)
            raise
        if request.trajectory_id is not None:
            await self.ledger.touch(tenant, request.trajectory_id)
        await self._gauge_sessions()
        return child.info()

    async def _end(self, session_id: str) -> None:
        if await self.sessions.remove(session_id) is None:
            return
        await self._gauge_sessions()
        await self._release(session_id)

    async def _release(self, session_id: str) -> None:
        """Release the session's tool state wherever it is held."""
        try:
            await self.dispatcher.end_session(session_id)
        except Exception:
            log.exception("releasing session %s failed", session_id)

    async def _gauge_sessions(self) -> None:
        with contextlib.suppress(Exception):  # a gauge is not worth failing a call
            self.metrics.sessions.set(await self.sessions.count())

    # ------------------------------------------------------------------ trajectories

    async def usage(self, tenant: str, trajectory_id: str) -> TrajectoryUsage:
        """The trajectory's usage so far."""
        book = await self.ledger.get(tenant, trajectory_id)
        if book is None:
            raise TrajectoryNotFoundError(trajectory_id)
        return book

    async def release_trajectory(self, tenant: str, trajectory_id: str) -> TrajectoryUsage:
        """End every session of the trajectory and return its final usage."""
        session_ids = await self.sessions.of_trajectory(tenant, trajectory_id)
        book = await self.ledger.pop(tenant, trajectory_id)
        await self.sessions.forget_trajectory(tenant, trajectory_id)
        if book is None and not session_ids:
            raise TrajectoryNotFoundError(trajectory_id)
        for session_id in session_ids:
            await self._end(session_id)
        return book or TrajectoryUsage(trajectory_id=trajectory_id)


def _new_call_id() -> str:
    return uuid.uuid4().hex


def _failure(tool: str, diagnostic: ErrorDiagnostic, **ids: Any) -> Observation:
    """A failed observation the runtime makes itself, its diagnostic in its text."""
    return with_diagnostic_text(Observation.failure(tool, _new_call_id(), diagnostic, **ids))


def _expired(tool: str, request: CallRequest, exc: SessionExpiredError) -> Observation:
    """The answer to a call whose session expired: not run, not booked, and said plainly."""
    if exc.trajectory_id is not None:
        hint = (
            "Your earlier variables, files and images are gone. Re-create what you need; "
            "the next call runs in a fresh session."
        )
    else:
        hint = "Open a new session (POST /v1/sessions) and re-create what you need in it."
    diagnostic = ErrorDiagnostic(
        kind=ErrorKind.session_expired, message=str(exc), hint=hint, retryable=False
    )
    return _failure(
        tool,
        diagnostic,
        data={"restarted": True, "expired_session_id": exc.session_id},
        trajectory_id=request.trajectory_id,
    )


def _lookup_diagnostic(exc: UnknownToolError | SessionNotFoundError) -> ErrorDiagnostic:
    if isinstance(exc, UnknownToolError):
        return unknown_tool(exc)
    return ErrorDiagnostic(
        kind=ErrorKind.not_found,
        message=str(exc),
        hint="Open a new session, or send the call with a trajectory_id instead.",
    )
