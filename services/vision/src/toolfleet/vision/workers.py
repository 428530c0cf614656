"""The threads that decode and encode, so the event loop never does.

At most ``workers`` jobs run at once; a job waits for a free thread no longer than its call's
deadline. A job whose call timed out keeps its thread until it notices (long loops check the
deadline), and its thread counts as busy until then, so the bound holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError

T = TypeVar("T")


class WorkPool:
    """A bounded pool of threads for CPU-heavy work."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.busy = 0
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Create the threads' executor (in the event loop that will use it)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="tf-vision")
            self._slots = asyncio.Semaphore(self.workers)

    def stop(self) -> None:
        """Drop queued jobs; running ones finish on their own."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._slots = None

    async def run(self, deadline: float, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in a thread; raises a retryable ``timeout`` ToolError when no
        thread frees up before ``deadline`` (time.monotonic())."""
        if self._executor is None or self._slots is None:
            raise ToolError(ErrorKind.unavailable, "the vision service is not started")
        slots, loop = self._slots, asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await slots.acquire()
        except TimeoutError:
            raise ToolError(
                ErrorKind.timeout,
                f"every one of the vision service's {self.workers} threads stayed busy until "
                "the call's deadline",
                hint="Send the call again later, or with a larger timeout_s.",
                retryable=True,
            ) from None
        self.busy += 1

        def release(_: Future[T]) -> None:
            def free() -> None:
                self.busy -= 1
                slots.release()

            with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to bound
                loop.call_soon_threadsafe(free)

        try:
            future = self._executor.submit(fn, *args)
        except BaseException:
            self.busy -= 1
            slots.release()
            raise
        future.add_done_callback(release)
        return await asyncio.wrap_future(future)
