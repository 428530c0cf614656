"""When the client sends a request again, and how long it waits first.

Only two things are retried: HTTP answers that say "not now" (429 and 503, waiting at least
their ``Retry-After``) and observations whose diagnostic says ``retryable`` (a crashed tool,
a lost worker). Nothing else: a tool's ordinary failure is the model's to learn from, a 4xx is
the trainer's to fix, and a connection error may hide a call that did run.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Literal


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen (passed to :attr:`RetryPolicy.on_retry`)."""

    attempt: int
    """The attempt that failed (1 for the first request)."""
    delay_s: float
    """How long the client waits before the next attempt."""
    reason: Literal["status", "diagnostic"]
    """``status``: an HTTP 429/503 answer; ``diagnostic``: retryable observations."""
    method: str
    path: str
    status_code: int | None = None
    """The HTTP status, for ``status`` retries."""
    retry_after_s: float | None = None
    """The server's ``Retry-After``, when it sent one."""
    kinds: tuple[str, ...] = ()
    """The error kinds of the retryable observations, for ``diagnostic`` retries."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    ``max_attempts`` counts every request of one client call (the first one included), for
    both kinds of retry together; ``RetryPolicy.none()`` sends each request once. The delay
    before attempt ``n + 1`` is ``backoff_s * multiplier ** (n - 1)`` (capped at
    ``max_backoff_s``, spread by ``± jitter``), and never less than the server's
    ``Retry-After`` (capped at ``max_retry_after_s``; past that cap the client gives up and
    raises rather than wait longer than it was told it may).
    """

    max_attempts: int = 4
    backoff_s: float = 0.25
    multiplier: float = 2.0
    max_backoff_s: float = 10.0
    jitter: float = 0.2
    retry_statuses: frozenset[int] = frozenset({429, 503})
    retry_diagnostics: bool = True
    respect_retry_after: bool = True
    max_retry_after_s: float = 60.0
    on_retry: Callable[[RetryEvent], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoff_s and max_backoff_s must be >= 0, multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    @classmethod
    def none(cls) -> RetryPolicy:
        """Send every request once."""
        return cls(max_attempts=1)

    def backoff(self, attempt: int) -> float:
        """The backoff after failed attempt ``attempt`` (1-based), jitter included."""
        base = min(self.max_backoff_s, self.backoff_s * self.multiplier ** (attempt - 1))
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(0.0, base)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when the server asks for a wait
        longer than ``max_retry_after_s``."""
        wait = self.backoff(attempt)
        if retry_after is not None and self.respect_retry_after:
            if retry_after > self.max_retry_after_s:
                return None
            wait = max(wait, retry_after)
        return wait

    def should_retry_status(self, status_code: int, attempt: int) -> bool:
        """Whether an answer with ``status_code`` after attempt ``attempt`` is sent again."""
        return status_code in self.retry_statuses and attempt < self.max_attempts

    def retries_diagnostics(self, attempt: int) -> bool:
        """Whether retryable observations after attempt ``attempt`` are sent again."""
        return self.retry_diagnostics and attempt < self.max_attempts

    def notify(self, event: RetryEvent) -> None:
        """Tell :attr:`on_retry` (exceptions it raises propagate: a way to abort)."""
        if self.on_retry is not None:
            self.on_retry(event)
