"""The in-process dispatcher directly: what it lists and reports, the services it runs, and
that calls, forks and ends reach the one executor and its session state; services start and
stop with it."""

from __future__ import annotations

from typing import Any

from toolfleet.core.dispatch import InProcessDispatcher
from toolfleet.core.registry import ToolRegistry

from tests.helpers import invocation
from tests.helpers.tools import CountingService, Echo, HiddenEcho


def value(obs: Any) -> int:
    assert obs.ok, obs.error
    return obs.content[0].data["value"]


async def test_in_process_dispatcher():
    counting = CountingService()
    dispatcher = InProcessDispatcher(ToolRegistry([Echo(), HiddenEcho(), *counting.tools()]))
    assert [s.name for s in dispatcher.specs()] == ["counter", "echo"]
    assert dispatcher.has_tool("hidden_echo") and not dispatcher.has_tool("nope")
    await dispatcher.start()
    assert counting.events == ["start"]
    assert dispatcher.status() == {"counting": {"starts": 1}}
    # a route may read the settings of a service whose tools run here
    assert dispatcher.local_service("counting") is counting
    assert dispatcher.local_service("nope") is None

    assert value(await dispatcher.dispatch(invocation("counter", {"add": 4}, session_id="a"))) == 4
    await dispatcher.fork_session("a", "b")
    assert value(await dispatcher.dispatch(invocation("counter", {"add": 1}, session_id="b"))) == 5
    await dispatcher.end_session("a")
    assert value(await dispatcher.dispatch(invocation("counter", session_id="a"))) == 1  # afresh
    obs = await dispatcher.dispatch(invocation("nope"))
    assert not obs.ok and obs.error.kind == "not_found"

    await dispatcher.stop()
    assert counting.events == ["start", "stop"]
    assert len(dispatcher.executor.states) == 0
