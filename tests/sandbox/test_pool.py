"""The kernel pool keeps at most its size ready, however many refill tasks run at once (the
counts ``/readyz`` shows: ``pool_ready`` never above ``pool_size``)."""

from __future__ import annotations

import asyncio
from typing import Any

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
