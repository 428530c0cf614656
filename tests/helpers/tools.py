"""Test-only tools and an app factory that serves them. Never shipped in a registry."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Literal

from pydantic import BaseModel, Field
from toolfleet.core import ErrorKind, ImagePart, JsonPart, Settings, Tool, ToolError, ToolResult
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.service import Service
from toolfleet.core.tool import CallContext
from toolfleet.gateway.app import create_app

# 1x1 transparent PNG
PNG_1x1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="  # noqa: E501


class EchoArgs(BaseModel):
    """Arguments of echo."""

    text: str = Field(description="Text to send back.")
    times: int = Field(default=1, ge=1, le=10, description="How often to repeat it.")


class EchoOutput(BaseModel):
    """What echo's data holds."""

    length: int = Field(description="Length of the text.")


class Echo(Tool[EchoArgs]):
    name = "echo"
    description = "Sends the text back."
    Arguments = EchoArgs
    Output = EchoOutput
    service = "test"
    cost = 1.0

    async def call(self, args: EchoArgs, ctx: CallContext) -> ToolResult:
        return ToolResult.text(args.text * args.times, data={"length": len(args.text)})


class NoArgs(BaseModel):
    """No arguments."""


class NoOp(Tool[NoArgs]):
    name = "noop"
    description = "Does nothing (gateway overhead benchmark)."
    Arguments = NoArgs
    service = "test"

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        return ToolResult()


class SleepArgs(BaseModel):
    seconds: float = Field(ge=0, le=60)


class Sleep(Tool[SleepArgs]):
    name = "sleep"
    description = "Sleeps."
    Arguments = SleepArgs
    service = "test"

    async def call(self, args: SleepArgs, ctx: CallContext) -> ToolResult:
        await asyncio.sleep(args.seconds)
        return ToolResult.text("slept")


class FailArgs(BaseModel):
    how: Literal["diagnostic", "crash"] = "diagnostic"


class Fail(Tool[FailArgs]):
    name = "fail"
    description = "Fails, with a diagnostic or with an unexpected exception."
    Arguments = FailArgs
    service = "test"

    async def call(self, args: FailArgs, ctx: CallContext) -> ToolResult:
        if args.how == "crash":
            raise RuntimeError("boom")
        raise ToolError(
            ErrorKind.runtime_error, "division by zero", detail="line 1", hint="check the divisor"
        )


class CounterState:
    """A stateful value that records forks and closes."""

    closed: list[int] = []  # ids of closed states, class-wide so tests can look

    def __init__(self, value: int = 0) -> None:
        self.value = value

    async def fork(self) -> CounterState:
        return CounterState(self.value)

    async def close(self) -> None:
        CounterState.closed.append(id(self))


class CounterArgs(BaseModel):
    add: int = 1


class Counter(Tool[CounterArgs]):
    name = "counter"
    description = "Adds to a per-session counter and returns it."
    Arguments = CounterArgs
    service = "test"
    stateful = True

    async def call(self, args: CounterArgs, ctx: CallContext) -> ToolResult:
        state = ctx.state("counter")
        if state is None:
            state = CounterState()
            ctx.set_state("counter", state)
        state.value += args.add
        return ToolResult(content=[JsonPart(data={"value": state.value})])


class BarrierArgs(BaseModel):
    parties: int = Field(ge=1, le=100)


class Barrier(Tool[BarrierArgs]):
    """Returns only when ``parties`` calls wait at once: proves calls run concurrently."""

    name = "barrier"
    description = "Waits for other calls."
    Arguments = BarrierArgs
    service = "test"

    def __init__(self) -> None:
        super().__init__()
        self._barrier: asyncio.Barrier | None = None

    async def call(self, args: BarrierArgs, ctx: CallContext) -> ToolResult:
        if self._barrier is None or self._barrier.parties != args.parties:
            self._barrier = asyncio.Barrier(args.parties)
        await self._barrier.wait()
        return ToolResult.text("met")


class Picture(Tool[NoArgs]):
    name = "picture"
    description = "Returns a 1x1 PNG."
    Arguments = NoArgs
    service = "test"

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        return ToolResult(
            content=[ImagePart(mime_type="image/png", data=PNG_1x1, width=1, height=1)]
        )


class WhoAmI(Tool[NoArgs]):
    name = "whoami"
    description = "Says which process runs it."
    Arguments = NoArgs
    service = "test"

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        return ToolResult(data={"pid": os.getpid()})


class Context(Tool[NoArgs]):
    """Answers what it was told about the call (its timeout, the time it has left)."""

    name = "context"
    description = "Returns its call context."
    Arguments = NoArgs
    service = "test"

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        remaining = ctx.deadline - time.monotonic()
        return ToolResult(data={"timeout_s": ctx.timeout_s, "remaining": remaining})


class HiddenEcho(Echo):
    """Callable, not listed."""

    name = "hidden_echo"
    hidden = True


class CountingService(Service):
    """A service owning a counter tool, recording its starts and stops."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def tools(self) -> list[Tool]:
        return [Counter(self)]

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    def status(self) -> dict[str, Any]:
        return {"starts": self.events.count("start")}


class TallyArgs(BaseModel):
    path: str = Field(description="File to append the token to, when the call completes.")
    token: str
    seconds: float = Field(default=0.0, ge=0, le=60)


class Tally(Tool[TallyArgs]):
    """Records each completed run (so tests can count runs of one call)."""

    name = "tally"
    description = "Sleeps, then appends the token to a file."
    Arguments = TallyArgs
    service = "test"

    async def call(self, args: TallyArgs, ctx: CallContext) -> ToolResult:
        await asyncio.sleep(args.seconds)
        fd = os.open(args.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{args.token}\n".encode())
        finally:
            os.close(fd)
        return ToolResult(data={"pid": os.getpid()})


def distributed_tools(settings: Settings | None = None) -> list[Tool]:
    """The test tools plus those the distributed tests need (``--tools-from`` of a worker)."""
    return [*test_registry(settings), WhoAmI(), Tally()]


def test_registry(settings: Settings | None = None) -> ToolRegistry:
    """Every test-only tool (``settings`` unused: the signature of ``--tools-from``)."""
    tools = (Echo, NoOp, Sleep, Fail, Counter, Barrier, Picture)
    return ToolRegistry(cls() for cls in tools)


test_registry.__test__ = False  # not a pytest test


def make_app():
    """App factory for ``uvicorn --factory tests.helpers.tools:make_app`` (settings from env)."""
    settings = Settings()
    return create_app(settings, registry=test_registry(settings))
