"""The SQLite worker processes (:mod:`sqlite_worker`) and how the service's threads use them.

A query borrows an idle worker (one that has its database open, when there is one), sends
one request and waits for the reply until the query's deadline plus a short grace. The
worker's progress handler stops an ordinary slow query by then; a worker still silent is
stuck in one VM step, so it is killed (SIGKILL) and a new one is started the next time the
pool has none idle. Either way only the query that overran waits: the others run in the
other workers. A call abandoned by the service (its own timeout) kills its worker too.

Replies are read with a size cap and parsed as JSON only: a worker is not trusted beyond
that. Workers end with the service: their stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from toolfleet.sql.sqlite_worker import HEADER, OPEN_DATABASES, encode_frame

log = logging.getLogger(__name__)

#: Past its query's deadline, how long a worker may take to answer before it is killed (its
#: progress handler answers within a millisecond unless one VM step runs on).
KILL_GRACE_S = 0.05
MAX_REPLY_BYTES = 64 << 20
START_TIMEOUT_S = 30.0
SPAWN = object()  # what _take answers when a new worker may be started


class WorkerFailed(Exception):
    """The worker did not answer: ``timed_out`` (killed past the deadline), killed on
    request (``abandoned``), or it died on its own (``status`` from waitpid)."""

    def __init__(self, message: str, *, timed_out: bool = False, abandoned: bool = False):
        super().__init__(message)
        self.timed_out = timed_out
        self.abandoned = abandoned


class PoolBusy(Exception):
    """No worker became free before the query's deadline."""


class SqliteWorkerProcess:
    """One worker process and the databases it has open (as far as the pool knows)."""

    def __init__(self, memory_mb: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolfleet.sql.sqlite_worker", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # a terminal's signals are for the service
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        self.opened: dict[str, None] = {}  # paths, least recently used first
        self.forget: list[str] = []  # paths to close with the next request
        self.killed = False

    def request(self, message: dict[str, Any], wait_until: float) -> dict[str, Any]:
        """Send one request and wait (blocking) until ``wait_until`` for the reply; raises
        :class:`WorkerFailed` (the worker is then dead or must be discarded)."""
        try:
            self._write(self._frame(message))
            size = self._size(self._read(HEADER.size, wait_until))
            return self._reply(message, self._read(size, wait_until))
        except (OSError, ValueError) as exc:
            raise self._failure(f"the SQLite worker failed: {exc}") from None

    async def request_async(self, message: dict[str, Any], wait_until: float) -> dict[str, Any]:
        """:meth:`request` on the event loop (the reply is read when the pipe is readable):
        no thread between the call and the worker."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes] = loop.create_future()
        received = bytearray()

        def readable() -> None:
            try:
                chunk = os.read(self._out, 1 << 16)
                if not chunk:
                    raise self._failure("the SQLite worker ended")
                received.extend(chunk)
                if len(received) >= HEADER.size:
                    size = self._size(bytes(received[: HEADER.size]))
                    if len(received) >= HEADER.size + size:
                        done.set_result(bytes(received[HEADER.size :]))
            except (OSError, ValueError, WorkerFailed) as exc:
                if not done.done():
                    done.set_exception(exc)
            if done.done():
                loop.remove_reader(self._out)

        try:
            # the worker is idle, reading its stdin: even a 1 MB query is taken at once
            self._write(self._frame(message))
            loop.add_reader(self._out, readable)
            try:
                async with asyncio.timeout(max(0.0, wait_until - time.monotonic())):
                    body = await done
            except TimeoutError:
                self.kill()
                raise WorkerFailed(
                    "the query did not stop at its deadline", timed_out=True
                ) from None
            finally:
                loop.remove_reader(self._out)
            return self._reply(message, body)
        except (OSError, ValueError) as exc:
            raise self._failure(f"the SQLite worker failed: {exc}") from None

    def _frame(self, message: dict[str, Any]) -> bytes:
        if self.forget:
            message = {**message, "forget": self.forget}
            for path in self.forget:
                self.opened.pop(path, None)
            self.forget = []
        return encode_frame(message)

    def _size(self, header: bytes) -> int:
        size = HEADER.unpack(header)[0]
        if size > MAX_REPLY_BYTES:
            self.kill()
            raise WorkerFailed(f"the SQLite worker sent a reply of {size} bytes")
        return size

    def _reply(self, message: dict[str, Any], body: bytes) -> dict[str, Any]:
        reply = json.loads(body)
        if not isinstance(reply, dict):
            self.kill()
            raise WorkerFailed("the SQLite worker sent a reply that is not an object")
        path = message.get("path")
        if path is not None:
            self.opened.pop(path, None)
            self.opened[path] = None
            while len(self.opened) > OPEN_DATABASES:  # as the worker's own LRU
                del self.opened[next(iter(self.opened))]
        return reply

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view) :]

    def _read(self, size: int, wait_until: float) -> bytes:
        chunks, got = [], 0
        poller = select.poll()
        poller.register(self._out, select.POLLIN | select.POLLHUP | select.POLLERR)
        while got < size:
            remaining = wait_until - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                self.kill()
                raise WorkerFailed("the query did not stop at its deadline", timed_out=True)
            chunk = os.read(self._out, size - got)
            if not chunk:
                raise self._failure("the SQLite worker ended")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _failure(self, message: str) -> WorkerFailed:
        if self.killed:
            return WorkerFailed("the call was abandoned", abandoned=True)
        self.kill()
        status = self.proc.returncode
        return WorkerFailed(f"{message} (exit status {status})")

    def kill(self) -> None:
        """Kill the worker now (thread-safe; the pool reaps it)."""
        self.killed = True
        with contextlib.suppress(OSError):
            self.proc.kill()

    def reap(self) -> None:
        """Wait for the killed process and close its pipes."""
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class SqlitePool:
    """Up to ``size`` worker processes, started on demand and replaced when killed."""

    def __init__(self, size: int, memory_mb: int) -> None:
        self.size = size
        self.memory_mb = memory_mb
        self._idle: list[SqliteWorkerProcess] = []
        self._all: set[SqliteWorkerProcess] = set()
        self._starting = 0
        self._cond = threading.Condition()
        self._closed = False
        self.started = 0  # processes started, replacements included
        self.killed = 0  # processes ended: past a deadline, abandoned, dead or too big

    def start(self) -> None:
        """Start every worker now, and wait until each answers (tens of milliseconds)."""
        with self._cond:
            self._closed = False
        workers = [self._spawn() for _ in range(self.size - len(self._all))]
        for worker in workers:  # started together, so their imports overlap
            worker.request({"op": "ping"}, time.monotonic() + START_TIMEOUT_S)
        with self._cond:
            self._idle.extend(workers)
            self._cond.notify_all()

    def _spawn(self) -> SqliteWorkerProcess:
        worker = SqliteWorkerProcess(self.memory_mb)
        with self._cond:
            self._all.add(worker)
            self.started += 1
        return worker

    def acquire(self, path: str | None, deadline: float) -> SqliteWorkerProcess:
        """An idle worker (preferably one that has ``path`` open), a new one when fewer than
        ``size`` exist, else wait; :class:`PoolBusy` past ``deadline``."""
        with self._cond:
            while True:
                found = self._take(path)
                if found is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolBusy(f"all {self.size} SQLite workers stayed busy")
                self._cond.wait(remaining)
        return self._spawn_reserved() if found is SPAWN else found  # type: ignore[return-value]

    def acquire_nowait(self, path: str | None) -> SqliteWorkerProcess | None:
        """Like :meth:`acquire`, but None instead of waiting."""
        with self._cond:
            found = self._take(path)
        if found is None:
            return None
        return self._spawn_reserved() if found is SPAWN else found  # type: ignore[return-value]

    def _take(self, path: str | None) -> SqliteWorkerProcess | object | None:
        """Under the lock: an idle worker, SPAWN (a new one may be started), or None."""
        if self._closed:
            raise PoolBusy("the SQLite workers are stopped")
        if self._idle:
            for i in range(len(self._idle) - 1, -1, -1):
                if path in self._idle[i].opened:
                    return self._idle.pop(i)
            return self._idle.pop()
        if len(self._all) + self._starting < self.size:
            self._starting += 1
            return SPAWN
        return None

    def _spawn_reserved(self) -> SqliteWorkerProcess:
        try:
            return self._spawn()
        finally:
            with self._cond:
                self._starting -= 1

    def release(self, worker: SqliteWorkerProcess) -> None:
        """Give a worker back after a reply."""
        with self._cond:
            if not self._closed and not worker.killed:
                self._idle.append(worker)
                self._cond.notify()
                return
        self.discard(worker)

    def discard(self, worker: SqliteWorkerProcess) -> None:
        """End a worker that timed out, was abandoned, died, or holds too much memory: it is
        killed now, reaped and replaced in a background thread (never delaying an answer)."""
        worker.kill()
        with self._cond:
            if worker not in self._all:
                return
            self._all.discard(worker)
            self.killed += 1
            replace = not self._closed and len(self._all) + self._starting < self.size
            if replace:
                self._starting += 1
            self._cond.notify()
        threading.Thread(target=self._reap_and_replace, args=(worker, replace), daemon=True).start()

    def _reap_and_replace(self, worker: SqliteWorkerProcess, replace: bool) -> None:
        worker.reap()
        if not replace:
            return
        fresh = None
        try:
            fresh = self._spawn_reserved()
            fresh.request({"op": "ping"}, time.monotonic() + START_TIMEOUT_S)
        except (OSError, WorkerFailed):
            log.exception("starting a SQLite worker failed")  # the next acquire tries again
            if fresh is not None:
                fresh.reap()
                with self._cond:
                    self._all.discard(fresh)
            return
        self.release(fresh)

    def request(
        self, path: str | None, message: dict[str, Any], deadline: float, bind: Any = None
    ) -> dict[str, Any]:
        """Send ``message`` to a worker; its reply. ``bind(kill)`` (then ``bind(None)``)
        lets the caller's interrupt kill the worker while it runs."""
        worker = self.acquire(path, deadline)
        if bind is not None:
            bind(worker.kill)
        try:
            reply = worker.request(message, deadline + KILL_GRACE_S)
        except BaseException:
            if bind is not None:
                bind(None)
            self.discard(worker)
            raise
        if bind is not None:
            bind(None)
        if reply.get("recycle"):
            self.discard(worker)
        else:
            self.release(worker)
        return reply

    async def request_async(
        self, path: str | None, message: dict[str, Any], deadline: float
    ) -> dict[str, Any]:
        """:meth:`request` from the event loop; a call abandoned meanwhile (cancelled) kills
        its worker."""
        worker = self.acquire_nowait(path)
        if worker is None:  # every worker busy: wait in a thread, not on the loop
            worker = await asyncio.to_thread(self.acquire, path, deadline)
        try:
            reply = await worker.request_async(message, deadline + KILL_GRACE_S)
        except BaseException:
            self.discard(worker)
            raise
        if reply.get("recycle"):
            self.discard(worker)
        else:
            self.release(worker)
        return reply

    def forget(self, path: str) -> None:
        """Have every worker close ``path`` (with its next request)."""
        with self._cond:
            for worker in self._all:
                if path in worker.opened:
                    worker.forget.append(path)

    def close(self) -> None:
        """Kill every worker (busy ones are killed too: the service is stopping)."""
        with self._cond:
            self._closed = True
            workers, self._idle = list(self._all), []
            self._all.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.reap()

    def status(self) -> dict[str, Any]:
        """What operators see in /readyz."""
        with self._cond:
            return {
                "sqlite_workers": self.size,
                "sqlite_workers_running": len(self._all),
                "sqlite_workers_idle": len(self._idle),
                "sqlite_workers_started": self.started,
                "sqlite_workers_killed": self.killed,
            }
