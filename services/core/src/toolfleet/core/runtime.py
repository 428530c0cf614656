"""The runtime: what the gateway's routes (REST, MCP, compat) call.

It resolves sessions and trajectories, admits or refuses calls (back-pressure), applies
idempotency keys, hands invocations to the dispatcher, books usage and counts metrics.
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
    OverloadedError,
    SessionNotFoundError,
    TrajectoryNotFoundError,
    UnknownToolError,
)
from toolfleet.core.executor import unknown_tool
from toolfleet.core.idempotency import IdempotencyCache
from toolfleet.core.ledger import UsageLedger
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
from toolfleet.core.service_metrics import ServiceStatusCollector
from toolfleet.core.sessions import Session, SessionTable
from toolfleet.core.settings import Settings
from toolfleet.core.surrogates import ARGUMENTS_NOTE, scrub
from toolfleet.protocol.diagnostics import with_diagnostic_text

log = logging.getLogger(__name__)


class Runtime:
    """Sessions, ledger, back-pressure and idempotency in front of a dispatcher."""

    def __init__(
        self, settings: Settings, dispatcher: Dispatcher, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.metrics = metrics or Metrics()
        dispatcher.use_metrics(self.metrics)
        self.sessions = SessionTable(
            settings.session_ttl_s, settings.max_session_ttl_s, settings.max_sessions
        )
        self.ledger = UsageLedger()
        self.idempotency = IdempotencyCache(
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
        if self.call_log is not None:
            await self.call_log.stop()  # after the dispatcher: its last calls are written

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.settings.session_sweep_s)
            for session_id in self.sessions.expired():
                await self._end(session_id)

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
            raise UnknownToolError(name, [s.name for s in self.specs()])

    def status(self) -> dict[str, Any]:
        """Per service, what it reports for operators (``/readyz`` ``services``)."""
        return self.dispatcher.status()

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
        """Run one call. Raises for what the caller must fix (unknown tool or session) and
        :class:`OverloadedError`; a tool's failure is an observation."""
        self.check_tool(tool)
        session = self._resolve_session(tenant, request)
        self.admit()
        return await self._submit(tenant, tool, request, session)

    async def batch(self, tenant: str, calls: list[ToolCall]) -> list[Observation]:
        """Run calls concurrently; each problem becomes that call's observation."""
        self.admit(len(calls))
        return list(await asyncio.gather(*(self._batch_one(tenant, c) for c in calls)))

    async def _batch_one(self, tenant: str, call: ToolCall) -> Observation:
        ids = {"session_id": call.session_id, "trajectory_id": call.trajectory_id}
        try:
            self.check_tool(call.tool)
            session = self._resolve_session(tenant, call)
        except (UnknownToolError, SessionNotFoundError) as exc:
            diagnostic = _lookup_diagnostic(exc)
            return _failure(call.tool, diagnostic, **ids)
        try:
            return await self._submit(tenant, call.tool, call, session)
        except OverloadedError as exc:
            diagnostic = ErrorDiagnostic(
                kind=ErrorKind.rate_limited,
                message=f"the {call.tool} tool's queue is full ({exc}); not run",
                hint=f"Send the call again after {exc.retry_after_s} s.",
                retryable=True,
            )
            return _failure(call.tool, diagnostic, **ids)

    def _resolve_session(self, tenant: str, request: CallRequest) -> Session | None:
        if request.session_id is not None:
            return self.sessions.get(tenant, request.session_id)
        if request.trajectory_id is not None:
            session = self.sessions.for_trajectory(tenant, request.trajectory_id)
            self._gauge_sessions()
            return session
        return None

    async def _submit(
        self, tenant: str, tool: str, request: CallRequest, session: Session | None
    ) -> Observation:
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
        if request.idempotency_key is not None:
            obs = await self.idempotency.run(
                tenant, request.idempotency_key, lambda: self._run(inv)
            )
        else:
            obs = await self._run(inv)
        if surrogates:
            note = TextPart(text=ARGUMENTS_NOTE)
            obs = obs.model_copy(update={"content": [*obs.content, note]})
        return obs

    async def _run(self, inv: Invocation) -> Observation:
        self.in_flight += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()
        bound = logs.bind_call(inv)  # log lines name the call
        try:
            obs = await self.dispatcher.dispatch(inv)
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
        if inv.trajectory_id is not None:
            self.ledger.record(inv.tenant, inv.trajectory_id, obs)
        return obs

    # ------------------------------------------------------------------ sessions

    def create_session(self, tenant: str, request: SessionCreate) -> SessionInfo:
        """Open a session."""
        session = self.sessions.create(
            tenant,
            ttl_s=request.ttl_s,
            metadata=request.metadata,
            trajectory_id=request.trajectory_id,
        )
        if request.trajectory_id is not None:
            self.ledger.touch(tenant, request.trajectory_id)
        self._gauge_sessions()
        return session.info()

    def get_session(self, tenant: str, session_id: str) -> SessionInfo:
        """Describe a live session (does not renew its TTL)."""
        return self.sessions.get(tenant, session_id, touch=False).info()

    async def delete_session(self, tenant: str, session_id: str) -> SessionInfo:
        """End a session and release its tool state."""
        info = self.get_session(tenant, session_id)
        await self._end(session_id)
        return info

    async def fork_session(self, tenant: str, session_id: str, request: SessionFork) -> SessionInfo:
        """Copy a live session, tool state included, into a new session."""
        parent = self.sessions.get(tenant, session_id)
        child = self.sessions.create(
            tenant,
            ttl_s=request.ttl_s or parent.ttl_s,
            metadata=parent.metadata if request.metadata is None else request.metadata,
            trajectory_id=request.trajectory_id,
            parent_id=parent.session_id,
        )
        try:
            await self.dispatcher.fork_session(parent.session_id, child.session_id)
        except BaseException:
            self.sessions.remove(child.session_id)
            raise
        if request.trajectory_id is not None:
            self.ledger.touch(tenant, request.trajectory_id)
        self._gauge_sessions()
        return child.info()

    async def _end(self, session_id: str) -> None:
        if self.sessions.remove(session_id) is None:
            return
        self._gauge_sessions()
        try:
            await self.dispatcher.end_session(session_id)
        except Exception:
            log.exception("releasing session %s failed", session_id)

    def _gauge_sessions(self) -> None:
        self.metrics.sessions.set(len(self.sessions))

    # ------------------------------------------------------------------ trajectories

    def usage(self, tenant: str, trajectory_id: str) -> TrajectoryUsage:
        """The trajectory's usage so far."""
        book = self.ledger.get(tenant, trajectory_id)
        if book is None:
            raise TrajectoryNotFoundError(trajectory_id)
        return book

    async def release_trajectory(self, tenant: str, trajectory_id: str) -> TrajectoryUsage:
        """End every session of the trajectory and return its final usage."""
        session_ids = self.sessions.of_trajectory(tenant, trajectory_id)
        book = self.ledger.pop(tenant, trajectory_id)
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


def _lookup_diagnostic(exc: UnknownToolError | SessionNotFoundError) -> ErrorDiagnostic:
    if isinstance(exc, UnknownToolError):
        return unknown_tool(exc)
    return ErrorDiagnostic(
        kind=ErrorKind.not_found,
        message=str(exc),
        hint="Open a new session, or send the call with a trajectory_id instead.",
    )
