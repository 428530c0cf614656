"""The Executor directly (no HTTP): what a call's observation holds for each way it can end,
per-tool concurrency, deadlines counted from submission, and the session state tools keep."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest
from pydantic import BaseModel
from toolfleet.core.executor import Executor
from toolfleet.core.protocol import ErrorKind, Invocation
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.tool import CallContext, Tool, ToolResult

from tests.helpers import invocation
from tests.helpers.tools import Context, Counter, Echo, Fail, Sleep


class NoArgs(BaseModel):
    """No arguments."""


class OneAtATime(Tool[NoArgs]):
    """Records how many of its calls overlap."""

    name = "one_at_a_time"
    description = "Sleeps briefly, counting overlapping calls."
    Arguments = NoArgs
    max_concurrency = 1
    running = 0
    most: ClassVar[int] = 0

    async def call(self, args: NoArgs, ctx: CallContext) -> ToolResult:
        type(self).running += 1
        type(self).most = max(type(self).most, type(self).running)
        try:
            await asyncio.sleep(0.05)
        finally:
            type(self).running -= 1
        return ToolResult(cost=2.5)


@pytest.fixture
async def executor():
    registry = ToolRegistry([Echo(), Fail(), Sleep(), Counter(), OneAtATime(), Context()])
    ex = Executor(registry)
    await ex.start()
    yield ex
    await ex.stop()


async def test_a_successful_call_carries_content_ids_and_usage(executor):
    inv = invocation("echo", {"text": "ab", "times": 2}, session_id=None, trajectory_id="tr")
    obs = await executor.run(inv)
    assert obs.ok and obs.error is None
    assert (obs.tool, obs.call_id, obs.trajectory_id) == ("echo", inv.call_id, "tr")
    assert obs.content[0].text == "abab" and obs.data == {"length": 2}  # type: ignore[union-attr]
    assert obs.usage.cost == 1.0  # the tool's default cost
    assert obs.usage.run_ms >= 0 and obs.usage.queue_ms >= 0


async def test_unknown_tool_and_invalid_arguments_are_observations(executor):
    obs = await executor.run(invocation("nope"))
    assert not obs.ok and obs.error.kind is ErrorKind.not_found
    assert "context, counter, echo" in obs.error.hint
    obs = await executor.run(invocation("echo", {"text": 3, "times": 99}))
    assert obs.error.kind is ErrorKind.invalid_arguments
    assert "text: Input should be a valid string" in obs.error.detail
    assert "times: Input should be less than or equal to 10" in obs.error.detail
    assert obs.usage.run_ms == 0  # nothing ran


async def test_a_tool_error_keeps_its_diagnostic_and_a_crash_is_internal(executor):
    obs = await executor.run(invocation("fail", {"how": "diagnostic"}))
    error = obs.error
    assert (error.kind, error.message, error.detail, error.hint, error.retryable) == (
        ErrorKind.runtime_error,
        "division by zero",
        "line 1",
        "check the divisor",
        False,
    )
    obs = await executor.run(invocation("fail", {"how": "crash"}))
    assert obs.error.kind is ErrorKind.internal and obs.error.retryable
    assert obs.error.message == "the fail tool failed unexpectedly: RuntimeError"
    assert obs.error.detail == "boom"


async def test_the_deadline_counts_from_submission(executor):
    obs = await executor.run(invocation("sleep", {"seconds": 5}, timeout_s=0.2))
    assert obs.error.kind is ErrorKind.timeout
    assert obs.error.message == "the call did not finish within its 0.2 s timeout"
    assert 150 <= obs.usage.run_ms < 2000
    # time spent before the executor (queued on a stream) counts against the timeout
    late = invocation("sleep", {"seconds": 1}, timeout_s=1.5, submitted_at=time.time() - 1)
    obs = await executor.run(late)
    assert obs.error.kind is ErrorKind.timeout
    assert obs.usage.queue_ms >= 1000 and obs.usage.run_ms < 900
    # the tool sees the time it has left, not the whole timeout
    obs = await executor.run(invocation("context", timeout_s=3.0, submitted_at=time.time() - 1))
    assert obs.data["timeout_s"] == 3.0 and 1.5 < obs.data["remaining"] <= 2.0


async def test_max_concurrency_queues_calls_of_that_tool(executor):
    OneAtATime.most = 0
    calls = [executor.run(invocation("one_at_a_time")) for _ in range(4)]
    observations = await asyncio.gather(*calls, executor.run(invocation("echo", {"text": "x"})))
    assert all(o.ok for o in observations)
    assert OneAtATime.most == 1
    assert max(o.usage.queue_ms for o in observations[:4]) >= 100  # the last waited for 3
    assert observations[0].usage.cost == 2.5  # the result's cost over the tool's


async def test_session_state_lives_in_the_executor(executor):
    def add(n: int, session: str | None) -> Invocation:
        return invocation("counter", {"add": n}, session_id=session)

    assert (await executor.run(add(2, "s1"))).content[0].data == {"value": 2}
    assert (await executor.run(add(3, "s1"))).content[0].data == {"value": 5}
    await executor.states.fork("s1", "s2")
    assert (await executor.run(add(1, "s2"))).content[0].data == {"value": 6}
    assert (await executor.run(add(0, "s1"))).content[0].data == {"value": 5}
    obs = await executor.run(add(1, None))  # set_state needs a session
    assert obs.error.kind is ErrorKind.invalid_arguments
    assert obs.error.message == "this tool needs a session"
    assert len(executor.states) == 2
    await executor.stop()  # ends every session's state
    assert len(executor.states) == 0
