"""Idempotency keys: a call sent again with the same key gets the first call's observation."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from toolfleet.core.protocol import Observation


class IdempotencyCache:
    """Remembers observations by (tenant, key) for ``ttl_s``, at most ``max_entries``.

    A duplicate that arrives while the first call still runs waits for its result instead of
    running the tool a second time. A retryable failure is not remembered, so sending the call
    again with the same key retries it.
    """

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[Observation]]]
        self._entries = OrderedDict()

    async def run(
        self, tenant: str, key: str, make: Callable[[], Awaitable[Observation]]
    ) -> Observation:
        """Return the remembered observation for the key, or run ``make`` and remember it."""
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get((tenant, key))
        if entry is not None:
            return await asyncio.shield(entry[1])
        future: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        self._entries[(tenant, key)] = (now + self.ttl_s, future)
        try:
            obs = await make()
        except BaseException as exc:
            # Nothing to remember: a later duplicate runs the call itself.
            self._entries.pop((tenant, key), None)
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no warning when nobody waits
            else:
                future.cancel()
            raise
        future.set_result(obs)  # duplicates waiting now share it
        if obs.error is not None and obs.error.retryable:
            # A transient failure is not the call's answer: the next try with the key runs.
            self._entries.pop((tenant, key), None)
        return obs

    def _expire(self, now: float) -> None:
        """Drop the oldest entries while they are expired or the cache is over its size."""
        while self._entries:
            expires, future = next(iter(self._entries.values()))
            over = len(self._entries) > self.max_entries and future.done()
            if expires > now and not over:
                break
            self._entries.popitem(last=False)
