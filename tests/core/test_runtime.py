"""The Runtime and the in-process dispatcher directly (no HTTP): lookups, sessions bound to
trajectories, the ledger, back-pressure, idempotency keys, timeouts, forks and expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from toolfleet.client.adapters import observation_text
from toolfleet.core import Settings
from toolfleet.core.dispatch import InProcessDispatcher
from toolfleet.core.errors import (
    IdempotencyConflictError,
    OverloadedError,
    SessionNotFoundError,
    TrajectoryNotFoundError,
    UnknownToolError,
)
from toolfleet.core.protocol import CallRequest, ErrorKind, SessionCreate, SessionFork, ToolCall
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.runtime import Runtime

from tests.helpers.cluster import REDIS_URL
from tests.helpers.tools import (
    Context,
    CounterState,
    CountingService,
    Echo,
    Fail,
    HiddenEcho,
    Sleep,
    Tally,
)


def registry() -> ToolRegistry:
    tools = [Echo(), Fail(), Sleep(), Context(), HiddenEcho(), Tally()]
    return ToolRegistry([*tools, *CountingService().tools()])


@pytest.fixture(params=["memory", "redis"])
async def make_runtime(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A started runtime over the in-process dispatcher, its sessions, ledger and
    idempotency records in memory (embedded) or in Redis (distributed: the same tests)."""
    made: list[Runtime] = []
    prefix = f"tftest-{uuid.uuid4().hex[:10]}"
    shared = request.param == "redis"

    async def make(**settings: Any) -> Runtime:
        if shared:
            settings = {"redis_url": REDIS_URL, "redis_prefix": prefix, **settings}
        rt = Runtime(Settings(**settings), InProcessDispatcher(registry()), shared_state=shared)
        await rt.start()
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.stop()
    if shared:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def add(n: int, **fields: Any) -> CallRequest:
    return CallRequest(arguments={"add": n}, **fields)


def value(obs: Any) -> int:
    return obs.content[0].data["value"]


async def test_the_dispatcher_lists_serves_and_reports(make_runtime):
    rt = await make_runtime()
    names = [s.name for s in rt.specs()]
    assert "hidden_echo" not in names and "echo" in names  # hidden: callable, not listed
    assert rt.has_tool("hidden_echo") and not rt.has_tool("nope")
    assert rt.status() == {"counting": {"starts": 1}}  # started once, by the runtime
    obs = await rt.call("t", "hidden_echo", CallRequest(arguments={"text": "x"}))
    assert obs.ok


async def test_what_the_caller_must_fix_raises(make_runtime):
    rt = await make_runtime()
    with pytest.raises(UnknownToolError) as unknown:
        await rt.call("t", "nope", CallRequest())
    assert "echo" in unknown.value.available and "hidden_echo" not in unknown.value.available
    with pytest.raises(SessionNotFoundError):
        await rt.call("t", "counter", add(1, session_id="s-missing"))
    session = await rt.create_session("t", SessionCreate())
    with pytest.raises(SessionNotFoundError):  # another tenant's session is not found
        await rt.call("other", "counter", add(1, session_id=session.session_id))
    with pytest.raises(TrajectoryNotFoundError):
        await rt.usage("t", "never")


async def test_a_trajectory_gets_a_session_and_a_ledger(make_runtime):
    rt = await make_runtime()
    assert value(await rt.call("t", "counter", add(2, trajectory_id="tr"))) == 2
    assert value(await rt.call("t", "counter", add(3, trajectory_id="tr"))) == 5  # same session
    await rt.call("t", "fail", CallRequest(trajectory_id="tr"))
    assert value(await rt.call("u", "counter", add(1, trajectory_id="tr"))) == 1  # per tenant
    usage = await rt.usage("t", "tr")
    assert (usage.total.calls, usage.total.errors) == (3, 1)
    assert usage.tools["counter"].calls == 2 and usage.tools["fail"].errors == 1
    final = await rt.release_trajectory("t", "tr")
    assert final.total.calls == 3
    assert await rt.session_count() == 1  # tenant u's remains
    with pytest.raises(TrajectoryNotFoundError):
        await rt.usage("t", "tr")
    # the released trajectory's state is gone: a new call starts afresh
    assert value(await rt.call("t", "counter", add(1, trajectory_id="tr"))) == 1


async def test_fork_and_delete_carry_the_tool_state(make_runtime):
    rt = await make_runtime()
    parent = await rt.create_session("t", SessionCreate(metadata={"task": 7}))
    await rt.call("t", "counter", add(10, session_id=parent.session_id))
    child = await rt.fork_session("t", parent.session_id, SessionFork(trajectory_id="branch"))
    assert child.parent_id == parent.session_id and child.metadata == {"task": 7}
    assert value(await rt.call("t", "counter", add(1, session_id=child.session_id))) == 11
    assert value(await rt.call("t", "counter", add(0, session_id=parent.session_id))) == 10
    closed = len(CounterState.closed)
    await rt.delete_session("t", child.session_id)
    assert len(CounterState.closed) == closed + 1  # its counter was closed
    with pytest.raises(SessionNotFoundError):
        await rt.get_session("t", child.session_id)
    assert (
        await rt.usage("t", "branch")
    ).total.calls == 1  # its calls were booked to its trajectory


async def test_back_pressure_refuses_beyond_the_limit(make_runtime):
    rt = await make_runtime(max_in_flight=2, retry_after_s=3)
    running = [
        asyncio.create_task(rt.call("t", "sleep", CallRequest(arguments={"seconds": 0.3})))
        for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    assert rt.in_flight == 2
    with pytest.raises(OverloadedError) as refused:
        await rt.call("t", "echo", CallRequest(arguments={"text": "x"}))
    assert refused.value.retry_after_s == 3
    # in a batch, each call is admitted or not as a whole before any runs
    with pytest.raises(OverloadedError):
        await rt.batch("t", [ToolCall(tool="echo", arguments={"text": "x"})])
    assert all(o.ok for o in await asyncio.gather(*running))
    assert rt.in_flight == 0
    rejected = rt.metrics.rejected.labels("overload")._value.get()
    assert rejected == 2


async def test_a_batch_answers_every_call_in_order(make_runtime):
    rt = await make_runtime()
    calls = [
        ToolCall(tool="echo", arguments={"text": "a"}),
        ToolCall(tool="nope"),
        ToolCall(tool="counter", arguments={"add": 1}, session_id="s-missing"),
        ToolCall(tool="echo", arguments={"text": "b"}),
    ]
    observations = await rt.batch("t", calls)
    assert [o.ok for o in observations] == [True, False, False, True]
    assert observations[1].error.kind is ErrorKind.not_found
    assert "no tool named 'nope'" in observations[1].error.message
    assert observations[2].error.kind is ErrorKind.not_found
    assert observations[2].session_id == "s-missing"


async def test_an_idempotency_key_runs_the_call_once(make_runtime, tmp_path):
    rt = await make_runtime()
    tally = tmp_path / "tally"
    request = CallRequest(arguments={"path": str(tally), "token": "x"}, idempotency_key="k1")
    first, again = await asyncio.gather(
        rt.call("t", "tally", request), rt.call("t", "tally", request)
    )
    assert first.call_id == again.call_id
    assert tally.read_text() == "x\n"  # ran once
    other = await rt.call("u", "tally", request)  # keys are per tenant
    assert other.call_id != first.call_id
    assert tally.read_text() == "x\nx\n"


async def test_timeouts_default_and_are_capped(make_runtime):
    rt = await make_runtime(default_timeout_s=7, max_timeout_s=20)
    assert (await rt.call("t", "context", CallRequest())).data["timeout_s"] == 7
    capped = await rt.call("t", "context", CallRequest(timeout_s=600))
    assert capped.data["timeout_s"] == 20


async def test_idle_sessions_expire_and_release_their_state(make_runtime):
    rt = await make_runtime(session_sweep_s=0.05)
    session = await rt.create_session("t", SessionCreate(ttl_s=0.2))
    await rt.call("t", "counter", add(1, session_id=session.session_id))
    closed = len(CounterState.closed)
    for _ in range(40):
        if await rt.session_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert await rt.session_count() == 0
    assert len(CounterState.closed) == closed + 1
    # a call in it is told the session expired (not run, not booked)
    expired = await rt.call("t", "counter", add(1, session_id=session.session_id))
    assert expired.error.kind is ErrorKind.session_expired and not expired.error.retryable
    with pytest.raises(SessionNotFoundError):  # describing it: 404 like any ended session
        await rt.get_session("t", session.session_id)


async def test_an_expired_trajectory_session_is_said_once_not_replaced_silently(make_runtime):
    rt = await make_runtime(session_sweep_s=0.05, session_ttl_s=0.3)
    assert value(await rt.call("t", "counter", add(5, trajectory_id="tr"))) == 5
    await asyncio.sleep(0.6)  # idle past the TTL: swept, its state released
    obs = await rt.call("t", "counter", add(1, trajectory_id="tr"))
    assert not obs.ok and obs.error.kind is ErrorKind.session_expired
    assert obs.error.retryable is False and obs.data["restarted"] is True
    assert "expired" in obs.error.message and "lost" in obs.error.message
    # the model sees it as text too, once, as every failure is said
    assert [p.text for p in obs.content] == [
        f"Error (session_expired): {obs.error.message}\nHint: {obs.error.hint}"
    ]
    assert observation_text(obs).count(obs.error.hint) == 1  # a trainer's rendering
    usage = await rt.usage("t", "tr")
    assert (usage.total.calls, usage.total.errors) == (1, 0)  # not booked against the model
    # told once: the next call runs in a fresh session
    assert value(await rt.call("t", "counter", add(1, trajectory_id="tr"))) == 1


async def test_an_expired_session_not_swept_yet_is_reported_too(make_runtime):
    rt = await make_runtime(session_sweep_s=3600, session_ttl_s=0.2)
    await rt.call("t", "counter", add(5, trajectory_id="tr"))
    await asyncio.sleep(0.4)  # no sweep ran: the lookup itself sees the TTL passed
    obs = await rt.call("t", "counter", add(1, trajectory_id="tr"))
    assert obs.error.kind is ErrorKind.session_expired
    assert value(await rt.call("t", "counter", add(1, trajectory_id="tr"))) == 1


async def test_a_session_opened_for_a_trajectory_is_the_trajectorys_session(make_runtime):
    rt = await make_runtime()
    opened = await rt.create_session("t", SessionCreate(trajectory_id="tr"))
    await rt.call("t", "counter", add(4, session_id=opened.session_id))
    obs = await rt.call("t", "counter", add(1, trajectory_id="tr"))
    assert obs.session_id == opened.session_id and value(obs) == 5
    # a second session named for the trajectory does not take over: calls name it
    other = await rt.create_session("t", SessionCreate(trajectory_id="tr"))
    assert (await rt.call("t", "counter", add(1, trajectory_id="tr"))).session_id == (
        opened.session_id
    )
    both = sorted([opened.session_id, other.session_id])
    assert await rt.sessions.of_trajectory("t", "tr") == both
    # a fork into a new trajectory is that trajectory's session
    fork = await rt.fork_session("t", opened.session_id, SessionFork(trajectory_id="b"))
    obs = await rt.call("t", "counter", add(1, trajectory_id="b"))
    assert obs.session_id == fork.session_id and value(obs) == 7


async def test_an_idempotency_key_with_other_arguments_is_a_conflict(make_runtime, tmp_path):
    rt = await make_runtime()
    tally = tmp_path / "tally"
    first = await rt.call(
        "t", "tally", CallRequest(arguments={"path": str(tally), "token": "x"}, idempotency_key="k")
    )
    again = await rt.call(
        "t", "tally", CallRequest(arguments={"path": str(tally), "token": "x"}, idempotency_key="k")
    )
    assert again.call_id == first.call_id
    with pytest.raises(IdempotencyConflictError):
        await rt.call(
            "t",
            "tally",
            CallRequest(arguments={"path": str(tally), "token": "y"}, idempotency_key="k"),
        )
    [obs] = await rt.batch(
        "t",
        [ToolCall(tool="echo", arguments={"text": "z"}, idempotency_key="k")],
    )
    assert obs.error.kind is ErrorKind.invalid_arguments and "idempotency" in obs.error.message
    assert tally.read_text() == "x\n"
