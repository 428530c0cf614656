"""The executor runs invocations on the tools of this process.

It is the one place where arguments are validated (unknown keys refused), per-tool
concurrency is limited, the timeout is enforced, every exception becomes a diagnostic and
every string of the observation is made valid UTF-8 (:mod:`toolfleet.core.surrogates`). The
in-process dispatcher calls it directly; a Redis worker calls it for each message it takes
off a stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError
from toolfleet.core.errors import ToolError, UnknownToolError
from toolfleet.core.protocol import (
    CallOptions,
    ErrorDiagnostic,
    ErrorKind,
    Invocation,
    Observation,
    Usage,
)
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.service import Service
from toolfleet.core.state import SessionStates
from toolfleet.core.surrogates import scrub_observation
from toolfleet.core.tool import CallContext, Tool

log = logging.getLogger(__name__)


class Executor:
    """Runs invocations against a registry, keeping the sessions' tool state."""

    def __init__(self, registry: ToolRegistry, states: SessionStates | None = None) -> None:
        self.registry = registry
        self.states = states if states is not None else SessionStates()
        self._limits = {
            tool.name: asyncio.Semaphore(tool.max_concurrency)
            for tool in registry
            if tool.max_concurrency
        }

    async def start(self) -> None:
        """Start every service once, then every tool; if one fails, what started is stopped
        again before the error is raised."""
        started: list[Service[Any] | Tool[Any]] = []
        try:
            for part in [*self.registry.services(), *self.registry]:
                await part.start()
                started.append(part)
        except BaseException:
            await _stop_all(reversed(started))
            raise

    async def stop(self) -> None:
        """End every session's state, then stop every tool, then every service once."""
        await self.states.close_all()
        await _stop_all([*self.registry, *reversed(self.registry.services())])

    async def run(self, inv: Invocation) -> Observation:
        """Run one invocation; never raises for a tool's failure. What comes back always
        serialises: lone surrogates are replaced, with a note (see :mod:`surrogates`)."""
        return scrub_observation(await self._run(inv))

    async def _run(self, inv: Invocation) -> Observation:
        ids = {"session_id": inv.session_id, "trajectory_id": inv.trajectory_id}
        try:
            tool = self.registry.get(inv.tool)
        except UnknownToolError as exc:
            return Observation.failure(inv.tool, inv.call_id, unknown_tool(exc), **ids)
        try:
            # extra="forbid" whatever the model says: an unknown key is never dropped unseen
            args = tool.Arguments.model_validate(inv.arguments, extra="forbid")
        except ValidationError as exc:
            diagnostic = invalid_arguments(exc, tool.name, tool.Arguments)
            return Observation.failure(inv.tool, inv.call_id, diagnostic, **ids)

        remaining = inv.timeout_s - max(0.0, time.time() - inv.submitted_at)
        started: float | None = None  # None: the call never started (timed out queueing)
        ctx = CallContext(
            call_id=inv.call_id,
            tenant=inv.tenant,
            session_id=inv.session_id,
            trajectory_id=inv.trajectory_id,
            timeout_s=inv.timeout_s,
            deadline=time.monotonic() + remaining,
            states=self.states,
        )
        limit = self._limits.get(tool.name)
        result = None
        error: ErrorDiagnostic | None
        try:
            async with asyncio.timeout(remaining if remaining > 0 else 0) as scope:
                if limit is not None:
                    await limit.acquire()
                try:
                    started = time.time()
                    result = await tool.call(args, ctx)
                finally:
                    if limit is not None:
                        limit.release()
        except ToolError as exc:
            error = exc.diagnostic
        except TimeoutError:
            if not scope.expired():
                raise
            error = ErrorDiagnostic(
                kind=ErrorKind.timeout,
                message=f"the call did not finish within its {inv.timeout_s:g} s timeout",
                hint="Do less work per call, or send a larger timeout_s.",
            )
        except Exception as exc:
            log.exception("tool %s failed on call %s", tool.name, inv.call_id)
            error = ErrorDiagnostic(
                kind=ErrorKind.internal,
                message=f"the {tool.name} tool failed unexpectedly: {type(exc).__name__}",
                detail=str(exc)[:2000] or None,
                retryable=True,
            )
        else:
            error = result.error
        finished = time.time()
        began = finished if started is None else started
        usage = Usage(
            queue_ms=max(0.0, (began - inv.submitted_at) * 1000.0),
            run_ms=(finished - began) * 1000.0,
            cost=tool.cost if result is None or result.cost is None else result.cost,
            input_tokens=0 if result is None else result.input_tokens,
            output_tokens=0 if result is None else result.output_tokens,
        )
        if result is None:
            assert error is not None  # every way out of the tool without a result sets one
            return Observation.failure(inv.tool, inv.call_id, error, usage=usage, **ids)
        return Observation(
            ok=error is None,
            tool=inv.tool,
            call_id=inv.call_id,
            content=result.content,
            data=result.data,
            error=error,
            usage=usage,
            truncated=result.truncated,
            **ids,
        )


async def _stop_all(parts: Iterable[Service[Any] | Tool[Any]]) -> None:
    """Stop each tool or service; a failure is logged and the others still stop."""
    for part in parts:
        try:
            await part.stop()
        except Exception:
            kind = "tool" if isinstance(part, Tool) else "service"
            log.exception("stopping %s %s failed", kind, part.name)


def unknown_tool(exc: UnknownToolError) -> ErrorDiagnostic:
    """The diagnostic for a call of a tool that does not exist."""
    guess = f"Did you mean {' or '.join(exc.closest)}? " if exc.closest else ""
    return ErrorDiagnostic(
        kind=ErrorKind.not_found,
        message=f"there is no tool named {exc.name!r}"
        + (f" any more: {exc.removed}" if exc.removed else ""),
        hint=f"{guess}Available tools: {', '.join(exc.available) or '(none)'}.",
    )


#: Keys of the call itself (beside ``arguments``), which a model may put among the arguments.
CALL_OPTIONS = frozenset(CallOptions.model_fields)


def invalid_arguments(
    exc: ValidationError, tool: str = "", model: type[BaseModel] | None = None
) -> ErrorDiagnostic:
    """The diagnostic for arguments that do not match the tool's schema, field by field.
    Unknown keys are named, with the arguments the tool takes; a call option sent as an
    argument (``timeout_s`` ...) is told where it belongs."""
    problems, unknown = [], []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if err["type"] == "extra_forbidden":
            unknown.append(path)
        else:
            problems.append(f"{path}: {err['msg']}")
    hint = "Fix the named arguments and call again; the tool list gives the schema."
    if not unknown:
        return ErrorDiagnostic(
            kind=ErrorKind.invalid_arguments,
            message="the arguments do not match the tool's schema: " + "; ".join(problems[:5]),
            detail="\n".join(problems),
            hint=hint,
        )
    what = f"the {tool} tool" if tool else "the tool"
    names = ", ".join(repr(k) for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    message = f"unknown argument{'s' if len(unknown) > 1 else ''} {names} for {what}"
    if problems:
        message += "; also " + "; ".join(problems[:3])
    if model is not None:
        takes = ", ".join(f.alias or name for name, f in model.model_fields.items())
        hint = f"{what[0].upper()}{what[1:]} takes: {takes or '(no arguments)'}. {hint}"
    options = [k for k in unknown if k in CALL_OPTIONS]
    if options:
        one = len(options) == 1
        hint = (
            f"{' and '.join(options)} {'is a call option' if one else 'are call options'}, "
            f"not {'a tool argument' if one else 'tool arguments'}: send "
            f'{"it" if one else "them"} beside "arguments" in the call (REST: {{"arguments": '
            '{...}, "timeout_s": 5}; MCP: the _meta key "toolfleet/timeout_s" or a '
            f'"_toolfleet" object in the arguments). {hint}'
        )
    return ErrorDiagnostic(
        kind=ErrorKind.invalid_arguments,
        message=message,
        detail="\n".join([*(f"{k}: unknown argument" for k in unknown), *problems]),
        hint=hint,
    )
