"""A tool worker: runs the calls of one or more services that gateways queue on Redis.

``toolfleet worker SERVICE…`` (or ``python -m toolfleet.core.worker SERVICE…``). The worker
reads its tools' streams and its own stream with one consumer group, runs each call on the
:class:`~toolfleet.core.executor.Executor` (the same one the embedded gateway uses) and
answers on the calling gateway's reply list, acknowledging the message in the same
transaction. Every heartbeat it says it is alive, renews its hold on the calls it runs,
reclaims calls that dead workers held (running those they never started, answering for
those they died running: no call runs twice), and answers for the sessions of dead workers.
SIGTERM drains: no new calls or sessions; the sessions it holds are served until they end or
``drain_grace_s`` passes; running calls finish; the rest is answered "state lost".

When its registry's tools change while it runs (an MCP upstream's tool list changed), the
worker reads the new tools' streams too and heartbeats at once: gateways serve the new table
from their next refresh, and a removed tool's name with the reason (``removed``), which
their unknown-tool error then gives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from typing import Any, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from toolfleet.core import logs, streams
from toolfleet.core.executor import Executor
from toolfleet.core.ledger import books
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, Invocation, Observation
from toolfleet.core.redis_state import queue_booking, usage_key
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.service import Service
from toolfleet.core.settings import WORKER_ORDINAL_ENV, Settings
from toolfleet.core.streams import GROUP, REDIS_DOWN, Keys, ToolInfo, WorkerInfo
from toolfleet.core.tool import Tool

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
ORDINAL_WAIT_S = 60.0  # how long a starting worker waits for Redis
HOUSEKEEPING_STEP_S = 5.0  # one round of heartbeat, renewals and reclaims at most
STOP_STEP_S = 10.0  # a Redis step of the drain (heartbeat, deregistering) at most
STOP_MARGIN_S = 60.0  # past drain_grace_s + drain_timeout_s, a draining worker exits anyway


class Worker:
    """One worker process's loop over Redis."""

    def __init__(
        self,
        settings: Settings,
        registry: ToolRegistry,
        worker_id: str | None = None,
        services: list[str] | None = None,
    ) -> None:
        if not settings.redis_url:
            raise ValueError("a worker needs settings.redis_url (TOOLFLEET_REDIS_URL)")
        self.settings = settings
        self.registry = registry
        self.executor = Executor(registry)
        self.keys = Keys(settings.redis_prefix)
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.own_stream = self.keys.worker(self.id)
        self.shared_streams = [self.keys.calls(t.name) for t in registry]
        # the services it was started for (listed even before they have tools), and its tools'
        self.services = sorted({*(services or ()), *(t.service for t in registry)})
        # what every heartbeat repeats unchanged: built once, and again when the tools change
        self._identity: WorkerInfo = {
            "services": self.services,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "tools": [],  # _describe_tools
            "books": True,  # gateways may resolve sessions as they queue (streams.read_entry)
        }
        self._announced = 0  # the registry version the announced tools describe
        self._describe_tools()
        self._retooled = asyncio.Event()  # the tools changed: heartbeat now
        registry.on_change(self._retooled.set)
        self.redis: Redis | None = None
        self._claim: Any = None
        self._running: dict[tuple[str, bytes], asyncio.Task[None]] = {}
        self._alive: set[str] = set()
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """Begin a graceful drain (what SIGTERM does). A drain that outlives its grace, its
        calls' timeout and a margin ends the process (something it awaits never answered:
        better a clear exit than a worker that heartbeats but never leaves)."""
        if not self._stopping.is_set():
            budget = self.settings.drain_grace_s + self.settings.drain_timeout_s + STOP_MARGIN_S
            asyncio.get_running_loop().call_later(budget, self._overdue, budget)
        self._stopping.set()
        self._slot_free.set()

    def _overdue(self, budget: float) -> None:
        log.error("worker %s: the drain did not end within %g s; exiting now", self.id, budget)
        logging.shutdown()
        os._exit(1)

    async def run(self) -> None:
        """Serve until :meth:`request_stop`, then drain."""
        self.redis = streams.connect(self.settings.redis_url or "")
        self._claim = self.redis.register_script(streams.CLAIM)
        await self.executor.start()
        # a tool's schema may depend on what its service found at start (the sandbox's
        # languages): announced as it is now
        self._describe_tools()
        self._touch_heartbeat_file()
        try:
            await self._create_groups()
            await self._heartbeat()
            log.info(
                "worker %s serving %s (tools: %s)",
                self.id,
                ", ".join(self.services),
                ", ".join(self.registry.names()),
            )
            housekeeping = asyncio.create_task(self._housekeeping(), name="worker-housekeeping")
            try:
                await self._consume()
            finally:
                housekeeping.cancel()
                await _bounded(housekeeping, STOP_STEP_S, "housekeeping's end")
            await self._drain()
        finally:
            await self.executor.stop()
            await _bounded(self.redis.aclose(), STOP_STEP_S, "closing the Redis client")

    def _describe_tools(self) -> None:
        """The tools as heartbeats announce them: their table, its digest (gateways read the
        table again when it changes) and the names no longer served, with why."""
        table: list[ToolInfo] = [
            {"spec": t.spec().model_dump(mode="json"), "hidden": t.hidden} for t in self.registry
        ]
        encoded = json.dumps(table, sort_keys=True).encode()
        self._identity["tools"] = table
        self._identity["tools_digest"] = hashlib.sha256(encoded).hexdigest()[:16]
        self._identity["removed"] = self.registry.removed_names()
        self._announced = self.registry.version

    async def _retool(self) -> bool:
        """When the registry's tools changed since they were announced: read the new tools'
        streams, and announce the new table (with the removed names) from the next heartbeat.
        True when they had changed."""
        if self._announced == self.registry.version:
            return False
        self._describe_tools()
        names = {t.name for t in self.registry}
        streams_now = [self.keys.calls(n) for n in sorted(names)]
        new = [s for s in streams_now if s not in self.shared_streams]
        # a removed tool's stream is no longer read: its calls wait for a worker serving it
        self.shared_streams = streams_now
        await self._create_groups(new)
        log.info("worker %s: tools changed, now %d", self.id, len(names))
        return True

    async def _create_groups(self, only: list[str] | None = None) -> None:
        assert self.redis is not None
        for stream in [*self.shared_streams, self.own_stream] if only is None else only:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _drain(self) -> None:
        """Finish running calls (up to ``drain_timeout_s``), leave, and answer what is still
        queued for this worker's sessions, whose state ends with it."""
        assert self.redis is not None
        running = list(self._running.values())
        if running:
            log.info("worker %s draining %d calls", self.id, len(running))
            _, late = await asyncio.wait(running, timeout=self.settings.drain_timeout_s)
            for task in late:  # left pending on their stream: another worker reclaims them
                task.cancel()
        try:
            if await _bounded(self.redis.zrem(self.keys.workers, self.id), STOP_STEP_S, "leaving"):
                await _bounded(self._answer_orphans(self.id, "stopped"), 4 * STOP_STEP_S,
                               "answering what was queued for its sessions")  # fmt: skip
        except REDIS_DOWN as exc:
            log.warning("worker %s could not deregister: %s", self.id, exc)

    # ------------------------------------------------------------------ reading

    async def _consume(self) -> None:
        """Read calls until SIGTERM; then, draining, only the calls of the sessions this
        worker holds, until it holds none or ``drain_grace_s`` passed."""
        assert self.redis is not None
        every: dict[Any, Any] = dict.fromkeys([*self.shared_streams, self.own_stream], ">")
        reading = self.shared_streams
        grace_until: float | None = None
        while True:
            await self._retool()
            if reading is not self.shared_streams:  # the tools changed
                reading = self.shared_streams
                every = dict.fromkeys([*reading, self.own_stream], ">")
            wanted, block = every, READ_BLOCK_MS
            if self._stopping.is_set():
                if grace_until is None:
                    grace_until = time.monotonic() + self.settings.drain_grace_s
                    log.info(
                        "worker %s draining: no new calls or sessions; serving the %d sessions "
                        "it holds for up to %g s",
                        self.id,
                        len(self.executor.states),
                        self.settings.drain_grace_s,
                    )
                    with contextlib.suppress(*REDIS_DOWN):
                        # gateways see "draining" now (bounded: the drain must go on)
                        await _bounded(self._heartbeat(), STOP_STEP_S, "the draining heartbeat")
                left = grace_until - time.monotonic()
                if left <= 0 or (not len(self.executor.states) and not self._running):
                    return
                wanted, block = {self.own_stream: ">"}, max(1, min(READ_BLOCK_MS, int(left * 1000)))
            free = self.settings.worker_concurrency - len(self._running)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                found = await self.redis.xreadgroup(GROUP, self.id, wanted, count=free, block=block)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                # Redis lost its data (restart without persistence), or this worker, silent
                # too long, was taken for dead and its stream deleted: make them again
                await self._create_groups()
                continue
            except REDIS_DOWN as exc:
                log.warning("worker %s: Redis is unreachable (%s)", self.id, exc)
                await asyncio.sleep(0.5)
                continue
            # the client answers bytes (no decoding): [(stream, [(id, fields)])]
            read = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], found or [])
            for stream, entries in read:
                for msg_id, fields in entries:
                    self._start(stream.decode(), msg_id, fields, deliveries=1)

    def _start(
        self, stream: str, msg_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        key = (stream, msg_id)
        if key in self._running:
            return
        task = asyncio.create_task(self._handle(stream, msg_id, fields, deliveries))
        self._running[key] = task

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(key, None)
            self._slot_free.set()

        task.add_done_callback(done)

    # ------------------------------------------------------------------ running

    async def _handle(
        self, stream: str, msg_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        assert self.redis is not None
        raw = fields.get(b"m", b"")
        try:
            msg = streams.read_entry(fields)
        except ValueError:
            await self._dead_letter(stream, msg_id, raw, deliveries, "malformed message")
            return
        call_id, op = str(msg["id"]), msg["op"]
        if deliveries > self.settings.max_deliveries:
            await self._dead_letter(stream, msg_id, raw, deliveries, "delivered too often", msg)
            return
        try:
            state, value = await self._claim(
                keys=[self.keys.result(call_id), self.keys.running(call_id)],
                args=[self.id, int(self.settings.max_timeout_s + 60)],
                client=self.redis,
            )
        except REDIS_DOWN as exc:
            log.warning("worker %s: cannot claim call %s (%s)", self.id, call_id, exc)
            return  # still pending: reclaimed and retried later
        if state == b"done":  # a copy of a finished call: answer with its first result
            await self._finish(stream, msg_id, msg, value, remember=False)
            return
        if state == b"running":
            holder = value.decode()
            if holder == self.id or holder in self._alive:
                await self._ack(stream, msg_id)  # a duplicate: the holder answers
                return
            # Its worker died while running it: never run a call twice (it may have had
            # effects, or be what killed the worker); answer, and keep it for operators.
            await self._dead_letter(
                stream, msg_id, raw, deliveries, f"its worker {holder} died while running it", msg
            )
            return
        if deliveries > 1:
            await self.redis.hincrby(self.keys.stats, "redeliveries", 1)
        payload, obs = await self._run(op, msg["body"])
        await self._finish(stream, msg_id, msg, payload.encode(), remember=True, booking=obs)

    async def _run(self, op: str, body: dict[str, Any]) -> tuple[str, Observation | None]:
        """Run one op; its reply payload (and a call's observation)."""
        if op == "call":
            inv = Invocation.model_validate(body)
            if time.time() > inv.submitted_at + inv.timeout_s:
                late = Observation.failure(
                    inv.tool,
                    inv.call_id,
                    ErrorDiagnostic(
                        kind=ErrorKind.timeout,
                        message=f"the call waited in the queue past its {inv.timeout_s:g} s "
                        "timeout and was not run",
                        hint="Send it again, or with a larger timeout_s when workers are busy.",
                        retryable=True,
                    ),
                    session_id=inv.session_id,
                    trajectory_id=inv.trajectory_id,
                )
                return late.model_dump_json(), late
            bound = logs.bind_call(inv)  # log lines name the call and its request
            started = time.perf_counter()
            try:
                obs = await self.executor.run(inv)
            finally:
                logs.unbind_call(bound)
            if self.settings.log_calls:
                logs.log_call(log, inv, obs, time.perf_counter() - started)
            return obs.model_dump_json(), obs
        try:
            if op == "fork":
                await self.executor.states.fork(str(body["source"]), str(body["target"]))
            elif op == "end":
                await self.executor.states.close(str(body["session"]))
            else:
                return json.dumps({"ok": False, "error": f"unknown op {op!r}"}), None
        except Exception as exc:
            log.exception("worker %s: %s failed", self.id, op)
            return json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}), None
        return json.dumps({"ok": True}), None

    async def _finish(
        self,
        stream: str,
        msg_id: bytes,
        msg: dict[str, Any],
        payload: bytes,
        remember: bool,
        booking: Observation | None = None,
    ) -> None:
        """Answer, remember the result, acknowledge and delete the message, and book the
        answer (``booking``) when the gateway asked (``book``): one transaction, retried
        through Redis blips until the caller would have given up. A call's first result is
        the only one booked (copies are answered with ``remember`` false)."""
        assert self.redis is not None
        call_id = str(msg["id"])
        usage = self._usage_key(msg, booking)
        replies = self.keys.replies(str(msg["reply"]))
        give_up = time.monotonic() + self.settings.reply_grace_s + 30
        while True:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    if remember:
                        pipe.set(
                            self.keys.result(call_id),
                            payload,
                            ex=max(1, int(self.settings.result_ttl_s)),
                        )
                    pipe.delete(self.keys.running(call_id))
                    pipe.rpush(replies, streams.reply(call_id, payload.decode()))
                    pipe.expire(replies, streams.REPLIES_TTL_S)
                    pipe.xack(stream, GROUP, msg_id)
                    pipe.xdel(stream, msg_id)
                    if usage and booking is not None:
                        queue_booking(pipe, usage, booking, int(msg["book"]))
                    await pipe.execute()
                return
            except REDIS_DOWN as exc:
                if time.monotonic() > give_up:
                    log.error("worker %s: could not answer call %s: %s", self.id, call_id, exc)
                    return
                await asyncio.sleep(0.2)

    def _usage_key(self, msg: dict[str, Any], obs: Observation | None) -> str:
        """The ledger that books ``obs`` ('' for none): when the gateway asked (``book``),
        the call has a trajectory, and the answer is one the ledger books."""
        if obs is None or "book" not in msg or not books(obs):
            return ""
        body = msg["body"]
        if not body.get("trajectory_id"):
            return ""
        return usage_key(self.keys.prefix, str(body["tenant"]), str(body["trajectory_id"]))

    async def _ack(self, stream: str, msg_id: bytes) -> None:
        assert self.redis is not None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream, GROUP, msg_id)
            pipe.xdel(stream, msg_id)
            await pipe.execute()

    async def _dead_letter(
        self,
        stream: str,
        msg_id: bytes,
        raw: bytes,
        deliveries: int,
        why: str,
        msg: dict[str, Any] | None = None,
    ) -> None:
        """Move a message to the dead letters and answer its caller, if it has one."""
        assert self.redis is not None
        log.error("worker %s: dead letter %s from %s: %s", self.id, msg_id, stream, why)
        await self.redis.xadd(
            self.keys.dead,
            {"m": raw, "stream": stream, "reason": why, "deliveries": deliveries},
            maxlen=10000,
            approximate=True,
        )
        await self.redis.hincrby(self.keys.stats, "dead_letters", 1)
        if msg is None:
            await self._ack(stream, msg_id)
            return
        payload = _lost_payload(
            msg,
            f"the call was given up: {why}",
            "Send it again; if it fails the same way, it may be what crashes the worker: "
            "change it.",
            retryable=True,
        )
        await self._finish(stream, msg_id, msg, payload.encode(), remember=True)

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # a heartbeat at once when tools change
                async with asyncio.timeout(self.settings.heartbeat_s):
                    await self._retooled.wait()
            self._retooled.clear()
            self._touch_heartbeat_file()
            try:
                # bounded: a Redis reply that never resumes its reader (seen after a Redis
                # restart) must not stop the heartbeats, or the worker is taken for dead
                await _bounded(self._housekeep(), HOUSEKEEPING_STEP_S, "housekeeping")
            except REDIS_DOWN as exc:
                log.warning("worker %s: Redis is unreachable (%s)", self.id, exc)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self._create_groups()

    async def _housekeep(self) -> None:
        await self._retool()
        await self._heartbeat()
        await self._renew()
        await self._reclaim()
        await self._reap_dead_workers()

    def _touch_heartbeat_file(self) -> None:
        """Show a liveness probe that the event loop runs (``worker_heartbeat_file``)."""
        path = self.settings.worker_heartbeat_file
        if path is not None:
            try:
                path.touch()
            except OSError as exc:
                log.warning("worker %s: cannot touch %s: %s", self.id, path, exc)

    async def _heartbeat(self) -> None:
        assert self.redis is not None
        info: WorkerInfo = {
            **self._identity,
            "draining": self._stopping.is_set(),  # gateways bind no new session to it
            "running": len(self._running),
            "status": self.registry.status(),
        }
        now = time.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers, {self.id: now})
            pipe.set(
                self.keys.worker_info(self.id),
                json.dumps(info),
                ex=max(30, int(10 * self.settings.heartbeat_s)),
            )
            pipe.zrangebyscore(self.keys.workers, now - self.settings.worker_dead_after_s, "+inf")
            *_, alive = await pipe.execute()
        self._alive = {w.decode() for w in alive}

    async def _renew(self) -> None:
        """Reset the idle time of the calls this worker runs, so nobody reclaims them."""
        assert self.redis is not None
        by_stream: dict[str, list[Any]] = {}  # message ids (bytes), as redis-py types them
        for stream, msg_id in list(self._running):
            if stream != self.own_stream:
                by_stream.setdefault(stream, []).append(msg_id)
        for stream, ids in by_stream.items():
            await self.redis.xclaim(stream, GROUP, self.id, 0, ids, justid=True)

    async def _reclaim(self) -> None:
        """Take over calls that a dead worker held (see :meth:`_handle` for what runs)."""
        assert self.redis is not None
        if self._stopping.is_set():
            return
        idle_ms = int(self.settings.claim_idle_s * 1000)
        for stream in self.shared_streams:
            free = self.settings.worker_concurrency - len(self._running)
            if free <= 0:
                return
            _, claimed, _deleted = await self.redis.xautoclaim(
                stream, GROUP, self.id, idle_ms, start_id="0-0", count=free
            )
            if not claimed:
                continue
            pending = await self.redis.xpending_range(
                stream,
                GROUP,
                claimed[0][0],
                claimed[-1][0],
                len(claimed) + len(self._running),
                consumername=self.id,
            )
            times = {p["message_id"]: p["times_delivered"] for p in pending}
            for msg_id, fields in claimed:
                if fields is None:  # deleted meanwhile
                    await self._ack(stream, msg_id)
                    continue
                log.warning("worker %s reclaimed %s from %s", self.id, msg_id, stream)
                self._start(stream, msg_id, fields, deliveries=int(times.get(msg_id, 2)))

    async def _reap_dead_workers(self) -> None:
        """Answer for the sessions of workers that died (their state is lost)."""
        assert self.redis is not None
        before = time.time() - self.settings.worker_dead_after_s
        found = await self.redis.zrangebyscore(self.keys.workers, "-inf", before)
        for raw in cast(list[bytes], found):
            dead = raw.decode()
            if not await self.redis.set(self.keys.reap_lock(dead), self.id, nx=True, ex=30):
                continue
            log.warning("worker %s: worker %s is dead; answering for its sessions", self.id, dead)
            await self.redis.zrem(self.keys.workers, dead)
            await self._answer_orphans(dead, "died")

    async def _answer_orphans(self, worker_id: str, how: str) -> None:
        """Answer every message left on a departed worker's own stream, then delete it."""
        assert self.redis is not None
        stream = self.keys.worker(worker_id)
        left = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(stream))
        for msg_id, fields in left:
            try:
                msg = streams.read_entry(fields)
            except ValueError:
                continue
            payload = _lost_payload(
                msg,
                f"the worker holding this session's state {how}; the state (variables, "
                "files) is lost",
                "Call again: the session starts afresh; re-create what you need first.",
                retryable=True,
            )
            await self._finish(stream, msg_id, msg, payload.encode(), remember=False)
        await self.redis.delete(stream, self.keys.worker_info(worker_id))


def _lost_payload(msg: dict[str, Any], message: str, hint: str, retryable: bool) -> str:
    """The reply to a message that will not run: a failed observation for a call, an error
    for a fork or end."""
    if msg["op"] != "call":
        return json.dumps({"ok": False, "error": message})
    body = msg["body"] if isinstance(msg["body"], dict) else {}
    diagnostic = ErrorDiagnostic(
        kind=ErrorKind.unavailable, message=message, hint=hint, retryable=retryable
    )
    return Observation.failure(
        str(body.get("tool", "")),
        str(msg["id"]),
        diagnostic,
        session_id=body.get("session_id"),
        trajectory_id=body.get("trajectory_id"),
    ).model_dump_json()


def load_tools(spec: str, settings: Settings) -> list[Tool[Any]]:
    """Tools from ``module:name``: a Service subclass (configured by ``settings``), or a
    function of the settings returning a Service or tools."""
    module, _, name = spec.partition(":")
    target: Any = getattr(importlib.import_module(module), name)
    if isinstance(target, type) and issubclass(target, Service):
        return target.configured(settings).tools()
    made = target(settings)
    return made.tools() if isinstance(made, Service) else list(made)


def main(argv: list[str] | None = None) -> int:
    """``toolfleet worker``: serve the named services' tools from Redis until SIGTERM."""
    parser = argparse.ArgumentParser(prog="toolfleet worker", description=main.__doc__)
    parser.add_argument("services", nargs="*", help="services to serve (default: all)")
    parser.add_argument(
        "--tools-from",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="also serve these tools: a Service class, or a function of the settings "
        "returning a Service or tools (plugins without an entry point)",
    )
    parser.add_argument("--id", help="worker id (default: host-pid-random)")
    parser.add_argument("--config", help="TOML settings file (or TOOLFLEET_CONFIG)")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"config_file": args.config} if args.config else {}
    if args.services:
        overrides["services"] = args.services
    settings = Settings(**overrides)
    logs.configure_logging(settings, "worker")
    if not settings.redis_url:
        print("toolfleet worker needs TOOLFLEET_REDIS_URL", file=sys.stderr)
        return 2
    if WORKER_ORDINAL_ENV not in os.environ:
        os.environ[WORKER_ORDINAL_ENV] = str(_ordinal(settings))
    plugins_only = args.tools_from and not args.services
    registry = ToolRegistry() if plugins_only else ToolRegistry.discover(settings)
    for spec in args.tools_from:
        for tool in load_tools(spec, settings):
            registry.register(tool)
    if not len(registry):
        print(f"no tools to serve for {args.services or 'any service'}", file=sys.stderr)
    worker = Worker(settings, registry, args.id, services=args.services)
    logs.configure_logging(settings, "worker", worker_id=worker.id)
    return asyncio.run(_serve(worker))


def _ordinal(settings: Settings) -> int:
    """This worker's ordinal: a counter in Redis, one step per worker started (a worker
    started while Redis restarts waits for it, up to ORDINAL_WAIT_S)."""
    client = SyncRedis.from_url(settings.redis_url or "", socket_connect_timeout=5)
    give_up = time.monotonic() + ORDINAL_WAIT_S
    try:
        while True:
            try:
                return int(client.incr(Keys(settings.redis_prefix).ordinal)) - 1
            except REDIS_DOWN:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.5)
    finally:
        client.close()


async def _bounded(aw: Any, seconds: float, what: str) -> bool:
    """Await ``aw`` for at most ``seconds``; past that, cancel it without waiting for it (a
    Redis reply that never resumes its reader can make cancellation wait forever too) and
    go on. True when it finished (its exception, if any, raised)."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("worker: %s did not finish within %g s; going on", what, seconds)
        return False
    if not task.cancelled():
        task.result()
    return True


async def _serve(worker: Worker) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    await worker.run()
    stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in stray:
        task.cancel()
    if stray and not await _bounded(asyncio.gather(*stray, return_exceptions=True), STOP_STEP_S,
                                    "cancelling what was left"):  # fmt: skip
        logging.shutdown()  # done with the drain: do not let a stuck task hold the exit
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
