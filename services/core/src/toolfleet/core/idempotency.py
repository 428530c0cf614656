"""Idempotency keys: a call sent again with the same key gets the first call's observation.

One interface, :class:`IdempotencyStore`: in this process's memory (embedded mode, here) or
in Redis, shared by every gateway replica (:mod:`toolfleet.core.redis_state`), so a retry
that lands on another gateway (the first one died) is answered, not run again.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from toolfleet.core.errors import IdempotencyConflictError
from toolfleet.core.ledger import Booking
from toolfleet.core.protocol import Observation

#: Runs the call (and books nothing: the store books its answer with the record's end, so a
#: call is booked once even when another gateway finishes it).
Make = Callable[[], Awaitable[Observation]]


def fingerprint(tool: str, arguments: dict[str, Any], session_id: str | None) -> str:
    """What a key's call is: the same key with another fingerprint is a conflict."""
    text = json.dumps([tool, arguments, session_id], sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class IdempotencyStore(abc.ABC):
    """Remembers observations by (tenant, key) for ``ttl_s``.

    A duplicate that arrives while the first call still runs waits for its result instead of
    running the tool a second time. A retryable failure is not remembered, so sending the call
    again with the same key retries it. The same key with a different call raises
    :class:`IdempotencyConflictError`.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s

    @abc.abstractmethod
    async def run(
        self,
        tenant: str,
        key: str,
        print_: str,
        call_id: str,
        deadline: float,
        make: Make,
        booking: Booking | None,
        tool: str = "",
    ) -> Observation:
        """The remembered observation for the key, or ``make``'s (remembered, and booked
        to ``booking`` once)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryIdempotencyStore(IdempotencyStore):
    """The keys of one process (embedded mode), at most ``max_entries``."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        super().__init__(ttl_s)
        self.max_entries = max_entries
        self._entries: OrderedDict[
            tuple[str, str], tuple[float, str, asyncio.Future[Observation]]
        ] = OrderedDict()

    async def run(
        self,
        tenant: str,
        key: str,
        print_: str,
        call_id: str,
        deadline: float,
        make: Make,
        booking: Booking | None,
        tool: str = "",
    ) -> Observation:
        now = time.monotonic()
        self._expire(now)
        entry = self._entries.get((tenant, key))
        if entry is not None:
            if entry[1] != print_:
                raise IdempotencyConflictError(key)
            return await asyncio.shield(entry[2])
        future: asyncio.Future[Observation] = asyncio.get_running_loop().create_future()
        self._entries[(tenant, key)] = (now + self.ttl_s, print_, future)
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
        if booking is not None:
            await booking.book(obs)
        future.set_result(obs)  # duplicates waiting now share it
        if obs.error is not None and obs.error.retryable:
            # A transient failure is not the call's answer: the next try with the key runs.
            self._entries.pop((tenant, key), None)
        return obs

    def _expire(self, now: float) -> None:
        """Drop the oldest entries while they are expired or the cache is over its size."""
        while self._entries:
            expires, _, future = next(iter(self._entries.values()))
            over = len(self._entries) > self.max_entries and future.done()
            if expires > now and not over:
                break
            self._entries.popitem(last=False)
