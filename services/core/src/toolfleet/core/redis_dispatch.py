"""The Redis Streams dispatcher: the gateway's side of distributed mode.

A call goes onto its tool's stream, or, when it belongs to a session whose state a worker
holds, onto that worker's own stream. One reader task per gateway process drains the
gateway's reply list and resolves the waiting calls by id. What workers serve (their tools
and liveness) is read from Redis every heartbeat. See :mod:`toolfleet.core.streams` for the
keys and :mod:`toolfleet.core.worker` for the other side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from toolfleet.core import streams
from toolfleet.core.dispatch import Dispatcher
from toolfleet.core.errors import DispatchError, OverloadedError
from toolfleet.core.metrics import Metrics
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, Invocation, Observation, ToolSpec
from toolfleet.core.redis_state import BEGIN_LUA, SESSION_LUA, RecordTakenError, SessionQuery
from toolfleet.core.sessions import Session
from toolfleet.core.settings import Settings
from toolfleet.core.streams import REDIS_DOWN, Keys, WorkerInfo

log = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 60.0  # fork and end of a session's state
BLPOP_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class RemoteTool:
    """A tool that live workers serve, as their heartbeats describe it."""

    spec: ToolSpec
    hidden: bool  # callable, not listed for models

    @property
    def stateful(self) -> bool:
        """Its calls go to the worker holding their session's state."""
        return self.spec.stateful


class _Undeliverable(Exception):
    """The call could not be handed to a worker; carries the diagnostic to answer with."""

    def __init__(self, diagnostic: ErrorDiagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class _WorkerGone(_Undeliverable):
    """The worker a session is bound to is no longer alive."""


def _unavailable(message: str, hint: str = "Send the call again.") -> _Undeliverable:
    return _Undeliverable(
        ErrorDiagnostic(kind=ErrorKind.unavailable, message=message, hint=hint, retryable=True)
    )


SESSION_LOST = (
    "the worker holding this session's state stopped; the state (variables, files) is lost",
    "Call again: the session starts afresh; re-create what you need first.",
)


# A call in a session, in one round trip: resolve the session (``SESSION_LUA``: by id,
# renewed, or the trajectory's, opened if it has none), start the call's idempotency record
# if it has a key (``BEGIN_LUA``), bind a stateful tool's session to a worker (``choice``
# when unbound), refuse a dead worker's or a full stream, and queue the message with the
# session's id (``s``), trajectory (``j``) and, when the worker books the answer, how long to
# keep the ledger (``b``) as fields of their own: the worker puts them in the invocation.
# ARGV: a session query (ten, see ``SessionQuery.args``), then service ('': stateless),
# choice, dead before, max backlog, the tool's stream, message, book ('' or the ledger's
# keep), binding TTL, and the record's five (``RedisIdempotencyStore.record``) if any
#   -> {what, worker, x, y, session...}: what is queued, full, gone, noworker, session (no
#      session: see the session part), or the record's answer (conflict, done, running:
#      x, y as ``begin`` says)
CALL = (
    SESSION_LUA
    + BEGIN_LUA
    + """
local s = resolve(ARGV, 1)
if s[1] ~= 'ok' then return {'session', '', '', '', unpack(s)} end
if ARGV[19] then
  local r = begin(ARGV[19], ARGV[20], ARGV[21], ARGV[22], ARGV[23])
  if r[1] ~= 'run' then return {r[1], '', r[2], r[3], unpack(s)} end
end
local P, id, service = ARGV[1], s[2], ARGV[11]
local traj = ARGV[6]
if traj == '' then traj = s[6] or '' end
local worker, stream = '', ARGV[15]
if service ~= '' then
  local bk = P .. ':session:' .. id
  worker = redis.call('HGET', bk, service)
  if not worker then
    if ARGV[12] == '' then return {'noworker', '', '', '', unpack(s)} end
    worker = ARGV[12]
    redis.call('HSET', bk, service, worker)
    redis.call('EXPIRE', bk, ARGV[18])
  end
  local beat = redis.call('ZSCORE', P .. ':workers', worker)
  if not beat or tonumber(beat) < tonumber(ARGV[13]) then
    redis.call('HDEL', bk, service)
    return {'gone', worker, '', '', unpack(s)}
  end
  stream = P .. ':worker:' .. worker
end
if redis.call('XLEN', stream) >= tonumber(ARGV[14]) then
  return {'full', worker, '', '', unpack(s)}
end
local fields = {'m', ARGV[16], 's', id}
if traj ~= '' then
  fields[5], fields[6] = 'j', traj
  if ARGV[17] ~= '' then fields[7], fields[8] = 'b', ARGV[17] end
end
redis.call('XADD', stream, '*', unpack(fields))
return {'queued', worker, '', '', unpack(s)}
"""
)


class RedisDispatcher(Dispatcher):
    """Sends calls to tool workers over Redis Streams."""

    def __init__(self, settings: Settings) -> None:
        if not settings.redis_url:
            raise ValueError("the Redis dispatcher needs settings.redis_url")
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.id = uuid.uuid4().hex[:16]
        self.redis: Redis | None = None
        self.metrics: Metrics | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._tools: dict[str, RemoteTool] = {}  # by name
        self._tables: tuple[tuple[str, str], ...] = ()  # (worker, its table's digest) read
        self._alive: dict[str, WorkerInfo] = {}  # worker id -> its last heartbeat
        self._bindings: dict[tuple[str, str], str] = {}  # (session, service) -> worker id
        self._load: Counter[str] = Counter()  # worker id -> its sessions in _bindings
        self._booking: set[str] = set()  # services whose live workers all book answers
        self._tasks: list[asyncio.Task[None]] = []
        self._enqueue: Any = None
        self._call: Any = None
        self._closing = False
        self._seen_services: set[str] = set(settings.services or ())  # must have a worker
        self._refreshed = 0.0  # monotonic time of the last read of the live workers

    # ------------------------------------------------------------------ lifecycle

    def use_metrics(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def start(self) -> None:
        self.redis = streams.connect(self.settings.redis_url or "")
        self._enqueue = self.redis.register_script(streams.ENQUEUE)
        self._call = self.redis.register_script(CALL)
        await self.redis.set(self.keys.gateway(self.id), 1, ex=self._marker_ttl())
        await self._refresh()
        await self._measure()
        self._tasks = [
            asyncio.create_task(self._read_replies(), name="toolfleet-replies"),
            asyncio.create_task(self._housekeeping(), name="toolfleet-redis-housekeeping"),
        ]
        log.info(
            "distributed mode: gateway %s on %s, workers: %s",
            self.id,
            self.settings.redis_url,
            ", ".join(sorted(self._alive)) or "(none yet)",
        )

    async def stop(self) -> None:
        # The tasks leave at their next turn: cancelling a blocked BLPOP (or a command in
        # flight) can leave redis-py's connection hanging.
        self._closing = True
        turn = max(BLPOP_TIMEOUT_S, self.settings.heartbeat_s) * 3
        _, late = await asyncio.wait(self._tasks, timeout=turn) if self._tasks else ((), ())
        for task in late:
            task.cancel()
        self._fail_pending("the gateway is stopping")
        if self.redis is not None:
            with contextlib.suppress(*REDIS_DOWN):
                await self.redis.delete(self.keys.replies(self.id), self.keys.gateway(self.id))
            await self.redis.aclose()

    def _marker_ttl(self) -> int:
        return max(30, int(self.settings.heartbeat_s * 10))

    # ------------------------------------------------------------------ tools

    def specs(self) -> list[ToolSpec]:
        return [t.spec for _, t in sorted(self._tools.items()) if not t.hidden]

    def has_tool(self, name: str) -> bool:
        return name in self._tools

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for worker_id, info in sorted(self._alive.items()):
            for service in info.get("services", []):
                entry = found.setdefault(service, {"workers": []})
                entry["workers"].append(worker_id)
                entry.update(info.get("status", {}).get(service) or {})
        return found

    async def readiness(self) -> str | None:
        """Not ready while Redis does not answer, no worker is alive, or a configured service
        (``settings.services``, else every service a worker ever announced) has no live
        worker."""
        if self.redis is None:
            return "not started"
        try:
            async with asyncio.timeout(2.0):
                await self.redis.ping()
        except (TimeoutError, *REDIS_DOWN) as exc:
            return f"Redis at {self.settings.redis_url} does not answer ({exc or 'timeout'})"
        live = self._live_services()
        missing = sorted(self._seen_services - live)
        if missing:
            return f"no live worker for service(s): {', '.join(missing)}"
        if not live:
            return "no worker is alive (none registered yet, or all left)"
        return None

    def _live_services(self) -> set[str]:
        """Services with a live worker that takes new calls (not draining)."""
        return {
            s
            for info in self._alive.values()
            if not info.get("draining")
            for s in info.get("services", [])
        }

    def worker_status(self) -> dict[str, dict[str, Any]]:
        """Each live worker's last heartbeat (its services, running calls, each service's
        status), for the service metrics."""
        return {worker_id: dict(info) for worker_id, info in self._alive.items()}

    # ------------------------------------------------------------------ calls

    async def dispatch(self, inv: Invocation) -> Observation:
        ids = {"session_id": inv.session_id, "trajectory_id": inv.trajectory_id}
        tool = self._tools.get(inv.tool)
        stream, worker_id, service = self.keys.calls(inv.tool), "", ""
        try:
            if tool is not None:
                await self._check_live(tool.spec.service)
            if tool is not None and tool.stateful and inv.session_id is not None:
                service = tool.spec.service
                worker_id = await self._worker_for(inv.session_id, service)
                stream = self.keys.worker(worker_id)
            deadline = inv.submitted_at + inv.timeout_s
            try:
                payload = await self._send(
                    "call", inv.call_id, stream, inv.model_dump_json(), deadline, worker_id
                )
            except _WorkerGone:  # the session's worker is gone: the next call starts afresh
                self._forget_binding(inv.session_id or "", service, worker_id)
                await self._drop_binding(inv.session_id or "", service)
                raise _unavailable(*SESSION_LOST) from None
        except _Undeliverable as exc:
            return Observation.failure(inv.tool, inv.call_id, exc.diagnostic, **ids)
        return Observation.model_validate_json(payload)

    def books_answers(self, tool: str) -> bool:
        """Whether :meth:`dispatch_in_session` may carry ``tool``'s calls: every live worker
        of its service resolves a call's session from its message and books the answer in the
        transaction that sends it (workers announce it; older ones do neither)."""
        found = self._tools.get(tool)
        return found is not None and found.spec.service in self._booking

    async def dispatch_in_session(
        self,
        inv: Invocation,
        query: SessionQuery,
        *,
        book: bool,
        record: list[Any] | None = None,
    ) -> Observation:
        """Dispatch a call whose session ``query`` names, resolving (and renewing, or
        opening) the session in the same script that queues the call: one round trip. With
        ``book``, the worker books the answer to the trajectory's ledger; with ``record``,
        the script starts the call's idempotency record too. Raises what the session store
        raises (expired, not found, limit), and :class:`RecordTakenError` when the record
        was there (the call is not queued)."""
        ids = {"session_id": inv.session_id, "trajectory_id": inv.trajectory_id}
        tool = self._tools[inv.tool]
        service = tool.spec.service if tool.stateful else ""
        session: list[Session] = []

        async def enqueue() -> None:
            assert self.redis is not None
            found = await self._call(
                args=[
                    *query.args(),
                    service,
                    self._least_bound(service) if service else "",
                    self._dead_before(),
                    self.settings.max_backlog,
                    self.keys.calls(inv.tool),
                    streams.message("call", inv.call_id, self.id, inv.model_dump_json()),
                    query.keep if book else "",
                    int(self.settings.max_session_ttl_s),
                    *(record or ()),
                ],
                client=self.redis,
            )
            what, worker_id = found[0].decode(), found[1].decode()
            session.append(query.resolved(found[4:]))  # raises when there is none
            sid = session[0].session_id
            if what in ("conflict", "done", "running"):
                raise RecordTakenError([what, found[2], found[3]])
            if what == "noworker":
                raise _unavailable(f"no {service} worker is running")
            if what == "gone":  # the session's worker is gone: the next call starts afresh
                self._forget_binding(sid, service, worker_id)
                raise _unavailable(*SESSION_LOST)
            if service:
                self._bind(sid, service, worker_id)
            stream = self.keys.worker(worker_id) if service else self.keys.calls(inv.tool)
            self._check_queued(1 if what == "queued" else 0, stream, worker_id)

        try:
            await self._check_live(tool.spec.service)
            payload = await self._exchange(inv.call_id, inv.submitted_at + inv.timeout_s, enqueue)
        except _Undeliverable as exc:
            if session:
                ids["session_id"] = session[0].session_id
                ids["trajectory_id"] = inv.trajectory_id or session[0].trajectory_id
            return Observation.failure(inv.tool, inv.call_id, exc.diagnostic, **ids)
        return Observation.model_validate_json(payload)

    async def _check_live(self, service: str) -> None:
        """Fail fast when no live worker serves ``service`` (read afresh once, so a worker
        that just started is seen): the call would only wait out its deadline."""
        if service in self._live_services():
            return
        if time.monotonic() - self._refreshed > 0.2:
            with contextlib.suppress(*REDIS_DOWN):
                await self._refresh()
        if service not in self._live_services():
            raise _unavailable(
                f"no live worker serves the {service} service (none started, or all stopped); "
                "the call was not run",
                "Send the call again once a worker is back (/readyz lists the live workers).",
            )

    async def _send(
        self, op: str, call_id: str, stream: str, body: str, deadline: float, worker_id: str
    ) -> bytes:
        """Queue one message on ``stream`` and wait for its reply payload."""

        async def enqueue() -> None:
            assert self.redis is not None
            queued = await self._enqueue(
                keys=[stream, self.keys.workers],
                args=[
                    self.settings.max_backlog,
                    streams.message(op, call_id, self.id, body),
                    worker_id,
                    self._dead_before(),
                ],
                client=self.redis,
            )
            self._check_queued(queued, stream, worker_id)

        return await self._exchange(call_id, deadline, enqueue)

    def _dead_before(self) -> float:
        """A worker whose last heartbeat is older than this is taken for dead."""
        return time.time() - self.settings.worker_dead_after_s

    def _check_queued(self, queued: int, stream: str, worker_id: str) -> None:
        """Raise unless the enqueue script queued the message (1): 0 the queue is full, -1
        the worker is gone."""
        if queued == 0:
            raise OverloadedError(
                f"{self.settings.max_backlog} calls queued for {stream.rsplit(':', 1)[-1]}",
                self.settings.retry_after_s,
            )
        if queued == -1:
            raise _WorkerGone(_unavailable(f"worker {worker_id} is gone").diagnostic)

    async def _exchange(
        self, call_id: str, deadline: float, enqueue: Callable[[], Awaitable[None]]
    ) -> bytes:
        """Run ``enqueue`` (one round trip that queues the message) and wait for the reply
        payload (until ``deadline`` + grace); waiting is set up first, so no reply is missed."""
        assert self.redis is not None
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        sent = time.perf_counter()
        try:
            try:
                await enqueue()
            except REDIS_DOWN as exc:
                raise _unavailable(
                    f"the call could not be queued: Redis is unreachable ({exc})"
                ) from None
            wait = deadline + self.settings.reply_grace_s - time.time()
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    payload = await future
            except TimeoutError:
                raise _unavailable(
                    "no worker answered before the call's deadline (workers busy, stopped or "
                    "unreachable)",
                    "Send the call again; if workers are busy, with a longer timeout_s.",
                ) from None
            if self.metrics is not None:
                self.metrics.reply_duration.observe(time.perf_counter() - sent)
            return payload
        finally:
            self._pending.pop(call_id, None)

    async def _read_replies(self) -> None:
        """Drain this gateway's reply list, resolving waiting calls by id."""
        assert self.redis is not None
        key = self.keys.replies(self.id)
        while not self._closing:
            try:
                item = await self.redis.blpop([key], timeout=BLPOP_TIMEOUT_S)
                if item is None:
                    continue
                self._resolve(cast(bytes, item[1]))  # the client answers bytes (no decoding)
                for raw in cast(list[bytes], await self.redis.lpop(key, 256) or ()):
                    self._resolve(raw)
            except REDIS_DOWN as exc:
                log.warning("reading replies from Redis failed (%s); retrying", exc)
                await asyncio.sleep(0.5)

    def _resolve(self, raw: bytes) -> None:
        call_id, payload = streams.parse_reply(raw)
        future = self._pending.get(call_id)
        if future is not None and not future.done():
            future.set_result(payload)

    def _fail_pending(self, why: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_unavailable(why))

    # ------------------------------------------------------------------ sessions

    async def _worker_for(self, session_id: str, service: str) -> str:
        """The live worker holding the session's state for ``service``, bound now if none."""
        assert self.redis is not None
        bound = self._bindings.get((session_id, service))
        if bound is not None and bound in self._alive:
            return bound
        key = self.keys.session(session_id)
        try:
            bound = cast(bytes, await self.redis.hget(key, service) or b"").decode() or None
            if bound is None:
                choice = self._least_bound(service)
                if not choice:
                    raise _unavailable(f"no {service} worker is running")
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hsetnx(key, service, choice)
                    pipe.hget(key, service)
                    pipe.expire(key, int(self.settings.max_session_ttl_s))
                    _, winner, _ = await pipe.execute()
                bound = winner.decode()
        except REDIS_DOWN as exc:
            raise _unavailable(f"Redis is unreachable ({exc})") from None
        self._bind(session_id, service, bound)
        return bound

    def _least_bound(self, service: str) -> str:
        """The live, not draining ``service`` worker holding the fewest sessions this gateway
        bound ('' when there is none): where a new session's state goes."""
        candidates = [
            w
            for w, info in self._alive.items()
            if service in info.get("services", []) and not info.get("draining")
        ]
        if not candidates:
            return ""
        return min(candidates, key=lambda w: (self._load[w], w))

    def _bind(self, session_id: str, service: str, worker_id: str) -> None:
        """Remember where the session's state for ``service`` is (and count it)."""
        self._unbind(session_id, service)
        self._bindings[(session_id, service)] = worker_id
        self._load[worker_id] += 1

    def _unbind(self, session_id: str, service: str) -> None:
        worker_id = self._bindings.pop((session_id, service), None)
        if worker_id is not None:
            self._load[worker_id] -= 1

    def _forget_binding(self, session_id: str, service: str, worker_id: str) -> None:
        if self._bindings.get((session_id, service)) == worker_id:
            self._unbind(session_id, service)

    async def _drop_binding(self, session_id: str, service: str) -> None:
        assert self.redis is not None
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.hdel(self.keys.session(session_id), service)

    async def _session_workers(self, session_id: str) -> dict[str, str]:
        assert self.redis is not None
        try:
            found = await self.redis.hgetall(self.keys.session(session_id))
        except REDIS_DOWN as exc:
            raise DispatchError(f"Redis is unreachable ({exc})") from exc
        return {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], found).items()}

    async def _control(self, op: str, worker_id: str, body: dict[str, Any]) -> None:
        """Run a fork or end on a worker; raise :class:`DispatchError` if it fails."""
        try:
            payload = await self._send(
                op,
                uuid.uuid4().hex,
                self.keys.worker(worker_id),
                json.dumps(body),
                time.time() + CONTROL_TIMEOUT_S,
                worker_id,
            )
        except (_Undeliverable, OverloadedError) as exc:
            raise DispatchError(f"{op} on worker {worker_id} failed: {exc}") from exc
        answer = json.loads(payload)
        if not answer.get("ok"):
            raise DispatchError(f"{op} on worker {worker_id} failed: {answer.get('error')}")

    async def fork_session(self, source_id: str, new_id: str) -> None:
        assert self.redis is not None
        bound = await self._session_workers(source_id)
        for service, worker_id in bound.items():
            if worker_id not in self._alive:
                raise DispatchError(
                    f"the {service} worker holding session {source_id} stopped; its state is "
                    "lost and cannot be forked"
                )
            await self._control("fork", worker_id, {"source": source_id, "target": new_id})
        if bound:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.session(new_id), mapping={k: v for k, v in bound.items()})
                pipe.expire(self.keys.session(new_id), int(self.settings.max_session_ttl_s))
                await pipe.execute()
            for service, worker_id in bound.items():
                self._bind(new_id, service, worker_id)

    async def end_session(self, session_id: str) -> None:
        assert self.redis is not None
        bound = await self._session_workers(session_id)
        with contextlib.suppress(*REDIS_DOWN):
            await self.redis.delete(self.keys.session(session_id))
        for service, worker_id in bound.items():
            self._unbind(session_id, service)
            if worker_id in self._alive:
                await self._control("end", worker_id, {"session": session_id})

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.settings.heartbeat_s)
            if self._closing:
                return
            try:
                await self._keep_marker()
                await self._refresh()
                await self._measure()
            except REDIS_DOWN as exc:
                log.warning("Redis is unreachable (%s)", exc)

    async def _keep_marker(self) -> None:
        """Renew this gateway's marker; when it is gone, Redis restarted and lost what was
        queued: answer the waiting calls now instead of at their deadlines."""
        assert self.redis is not None
        marker = self.keys.gateway(self.id)
        if not await self.redis.set(marker, 1, ex=self._marker_ttl(), xx=True):
            if self._pending:
                log.warning("Redis lost its data: failing %d waiting calls", len(self._pending))
            self._fail_pending("Redis restarted and lost the queued call")
            await self.redis.set(marker, 1, ex=self._marker_ttl())

    async def _refresh(self) -> None:
        """Read which workers are alive and what tools they serve."""
        assert self.redis is not None
        since = time.time() - self.settings.worker_dead_after_s
        found = await self.redis.zrangebyscore(self.keys.workers, since, "+inf")
        worker_ids = [w.decode() for w in cast(list[bytes], found)]
        infos = (
            await self.redis.mget([self.keys.worker_info(w) for w in worker_ids])
            if worker_ids
            else []
        )
        alive: dict[str, WorkerInfo] = {}
        for worker_id, raw in zip(worker_ids, infos, strict=True):
            if raw is not None:
                alive[worker_id] = json.loads(raw)
        self._tools = self._tool_table(alive)
        self._alive = alive
        self._refreshed = time.monotonic()
        self._seen_services |= self._live_services()
        gone = [k for k, w in self._bindings.items() if w not in alive]
        for session_id, service in gone:
            self._unbind(session_id, service)
        for worker_id in [w for w in self._load if w not in alive]:
            del self._load[worker_id]
        # a service's calls ride with their session's lookup only while every live worker of
        # it books answers (a worker of an older version does not: see dispatch_in_session)
        by_service: dict[str, list[bool]] = {}
        for info in alive.values():
            for service in info.get("services", []):
                by_service.setdefault(service, []).append(bool(info.get("books")))
        self._booking = {s for s, books in by_service.items() if all(books)}

    def _tool_table(self, alive: dict[str, WorkerInfo]) -> dict[str, RemoteTool]:
        """The tools the live workers announce (a tool's spec as the first announcing worker
        has it; a worker may announce a changed table, see :mod:`toolfleet.core.worker`),
        read again only when a worker came, left or announced another table. A service with
        no live worker keeps the tools it had: their calls answer that no worker serves
        them, not that they do not exist."""
        key = tuple(sorted((w, info.get("tools_digest", "")) for w, info in alive.items()))
        if key == self._tables:
            return self._tools
        self._tables = key
        found: dict[str, RemoteTool] = {}
        for info in alive.values():
            for announced in info.get("tools", []):
                if announced["spec"]["name"] not in found:
                    spec = ToolSpec.model_validate(announced["spec"])
                    found[spec.name] = RemoteTool(spec, announced.get("hidden", False))
        served = {s for info in alive.values() for s in info.get("services", [])}
        for name, known in self._tools.items():
            if name not in found and known.spec.service not in served:
                found[name] = known
        return found

    def removed(self, name: str) -> str | None:
        if name in self._tools:
            return None
        for info in self._alive.values():
            why = info.get("removed", {}).get(name)
            if why:
                return why
        return None

    async def _measure(self) -> None:
        if self.metrics is None or self.redis is None:
            return
        names = sorted(self._tools)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.xlen(self.keys.calls(name))
                pipe.xrange(self.keys.calls(name), count=1)
            pipe.hmget(self.keys.stats, ["redeliveries", "dead_letters"])
            results = await pipe.execute()
        now_ms = time.time() * 1000
        for i, name in enumerate(names):
            depth, oldest = results[2 * i], results[2 * i + 1]
            self.metrics.queue_depth.labels(name).set(depth)
            age = (now_ms - int(oldest[0][0].split(b"-")[0])) / 1000 if oldest else 0.0
            self.metrics.queue_age.labels(name).set(max(0.0, age))
        redeliveries, dead = results[-1]
        self.metrics.redeliveries.set(int(redeliveries or 0))
        self.metrics.dead_letters.set(int(dead or 0))
        for service, entry in self.status().items():
            self.metrics.workers.labels(service).set(len(entry["workers"]))
