"""The Redis dispatcher directly, as tests/core/test_dispatch.py takes the in-process one:
with a worker running in this process, what it lists and reports comes from the worker's
heartbeats, and calls, forks and ends reach the worker that holds the session's state. (The
other tests of tests/distributed go through gateways and worker processes.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from toolfleet.core.redis_dispatch import RedisDispatcher
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.worker import Worker

from tests.helpers import invocation
from tests.helpers.cluster import Cluster
from tests.helpers.tools import CountingService, Echo, HiddenEcho


def value(obs: Any) -> int:
    assert obs.ok, obs.error
    return obs.content[0].data["value"]


@contextlib.asynccontextmanager
async def worker_running(cluster: Cluster, counting: CountingService) -> AsyncIterator[Worker]:
    """A worker serving echo, hidden_echo and the counting service's counter, in this
    process's event loop (cancelled at the end: its executor stops its services)."""
    registry = ToolRegistry([Echo(), HiddenEcho(), *counting.tools()])
    worker = Worker(cluster.settings(), registry, worker_id="w-direct")
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for_tools(dispatcher: RedisDispatcher, names: set[str]) -> None:
    """Until the dispatcher has heard the worker's heartbeat announce ``names``."""
    deadline = time.monotonic() + 15
    while not names <= {s.name for s in dispatcher.specs()}:
        assert time.monotonic() < deadline, [s.name for s in dispatcher.specs()]
        await asyncio.sleep(0.05)


async def test_redis_dispatcher(cluster: Cluster) -> None:
    counting = CountingService()
    dispatcher = RedisDispatcher(cluster.settings())
    async with worker_running(cluster, counting) as worker:
        await dispatcher.start()
        try:
            await wait_for_tools(dispatcher, {"counter", "echo"})
            assert [s.name for s in dispatcher.specs()] == ["counter", "echo"]
            assert dispatcher.has_tool("hidden_echo") and not dispatcher.has_tool("nope")
            assert counting.events == ["start"]  # the worker's executor started it
            status = dispatcher.status()
            assert status["counting"] == {"workers": [worker.id], "starts": 1}, status
            assert dispatcher.local_service("counting") is None  # its tools run elsewhere
            assert await dispatcher.readiness() is None

            add = invocation("counter", {"add": 4}, session_id="a")
            assert value(await dispatcher.dispatch(add)) == 4
            await dispatcher.fork_session("a", "b")
            assert value(await dispatcher.dispatch(invocation("counter", session_id="b"))) == 5
            await dispatcher.end_session("a")
            assert value(await dispatcher.dispatch(invocation("counter", session_id="a"))) == 1
            assert value(await dispatcher.dispatch(invocation("counter", session_id="b"))) == 6
            echoed = await dispatcher.dispatch(invocation("hidden_echo", {"text": "hi"}))
            assert echoed.ok, echoed.error
        finally:
            await dispatcher.stop()
    assert counting.events == ["start", "stop"]
