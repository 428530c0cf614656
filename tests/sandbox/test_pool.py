"""The kernel pool keeps at most its size ready, however many refill tasks run at once (the
counts ``/readyz`` shows: ``pool_ready`` never above ``pool_size``); a pool and a family's
requests stop when they are cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from toolfleet.box import wire
from toolfleet.sandbox.backend import FamilyChannel, SandboxUnavailableError
from toolfleet.sandbox.pool import KernelPool


class SlowFamily:
    async def spawn(self) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # parallel refills overlap while spawning
        return {"kernel": 1, "pid": 1, "workspace": "/tmp"}

    async def close(self) -> None:
        pass


class FakeBackend:
    parallelism = 3

    async def new_family(self, light: bool = False) -> SlowFamily:
        return SlowFamily()


async def test_parallel_refills_never_pass_the_pool_size() -> None:
    pool = KernelPool(FakeBackend(), size=4)  # type: ignore[arg-type]
    await pool.start()
    try:
        seen = []
        for _ in range(40):
            await asyncio.sleep(0.01)
            seen.append(pool.ready)
        assert max(seen) == 4, seen
    finally:
        for task in pool._refills:
            task.cancel()
        await asyncio.gather(*pool._refills, return_exceptions=True)


@contextlib.asynccontextmanager
async def family_channel() -> AsyncIterator[tuple[FamilyChannel, socket.socket]]:
    """A family channel, and the supervisor's end of it (played by the test)."""
    ours, theirs = socket.socketpair()
    channel = FamilyChannel(ours)
    try:
        yield channel, theirs
    finally:
        channel.close()
        theirs.close()


async def asked(channel: FamilyChannel, *msgs: dict[str, Any]) -> list[asyncio.Future[Any]]:
    """Requests sent (each waiting for its reply)."""
    requests = [asyncio.ensure_future(channel.request(msg, 30)) for msg in msgs]
    while len(channel._waiting) < len(msgs):
        await asyncio.sleep(0)
    return requests


async def test_a_request_cancelled_as_its_reply_comes_is_cancelled() -> None:
    """A family request whose caller is cancelled in the very turn its reply arrives raises
    CancelledError (``asyncio.wait_for`` on Python 3.11 returned the reply and lost the
    cancellation: a pool's refill, cancelled by ``stop()`` mid-spawn, then waited forever and
    the service's shutdown hung)."""
    async with family_channel() as (channel, _):
        (request,) = await asked(channel, {"op": "ping"})
        (future,) = channel._waiting.values()
        future.set_result({"ok": True})  # the reply and the cancellation in one turn
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request


async def test_replies_reach_their_requests_however_the_bytes_arrive() -> None:
    """The supervisor answers out of order, and a reply may come in pieces (or two in one
    read): each request gets its own reply."""
    async with family_channel() as (channel, theirs):
        first, second = await asked(channel, {"op": "ping", "n": 1}, {"op": "ping", "n": 2})
        theirs.setblocking(True)
        sent = [await asyncio.to_thread(wire.recv, theirs) for _ in range(2)]
        ids = {msg["n"]: msg["id"] for msg, _ in sent}
        big = "x" * 300_000  # more than one read of the channel
        stream = wire.encode({"id": ids[2], "v": big}) + wire.encode({"id": ids[1], "v": 1})
        for at in range(0, len(stream), 70_001):
            theirs.sendall(stream[at : at + 70_001])
            await asyncio.sleep(0)
        assert (await first)["v"] == 1
        assert (await second)["v"] == big


async def test_a_broken_reply_fails_every_waiting_request() -> None:
    """A frame that is not a JSON object ends the channel: the requests waiting on it fail
    at once (none waits for its timeout), and later ones are refused."""
    async with family_channel() as (channel, theirs):
        (waiting,) = await asked(channel, {"op": "ping"})
        theirs.sendall(wire.HEADER.pack(2) + b"[]")
        with pytest.raises(SandboxUnavailableError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(SandboxUnavailableError):
            await channel.request({"op": "ping"}, 30)
