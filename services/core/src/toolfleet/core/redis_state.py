"""The state every gateway replica shares in distributed mode, in Redis: sessions, trajectory
bindings and TTLs, the usage ledger, idempotency records.

Each store implements the interface the embedded mode implements in memory
(:class:`~toolfleet.core.sessions.SessionStore`,
:class:`~toolfleet.core.ledger.UsageLedger`,
:class:`~toolfleet.core.idempotency.IdempotencyStore`), so the runtime is the same in both
modes, and any gateway answers any call, fork, files or media request, usage query or
release. Every operation on the hot path is one Lua script (one round trip, atomic): a
session's lookup and TTL renewal, a trajectory's session (opened there if it has none), a
booking, an idempotency record's start and its end. With the Redis dispatcher, a call's
session lookup and its record's start ride in the script that queues the call
(``SESSION_LUA`` and ``BEGIN_LUA`` are its parts, see ``redis_dispatch.CALL``), and the
worker books the answer in the transaction that sends it (:func:`queue_booking`): the shared
state adds no round trip to a call but an idempotency key's end.

Keys (``P`` is ``settings.redis_prefix``; ``T`` is ``<len(tenant)>:<tenant>``, so no two
tenant/id pairs share a key)::

    P:sess:<id>           hash: t tenant, ttl, c created, j trajectory, p parent, m metadata
    P:sessions            sorted set: session id -> expiry time (each call pushes it on)
    P:traj:T:<traj>       hash: s the trajectory's session, x its session that expired (told
                          once), m:<id> every session bound to it
    P:expired:<id>        tenant of a session that expired (kept max_session_ttl_s)
    P:unreleased          list: expired sessions whose tool state a gateway must release
    P:usage:T:<traj>      hash: <tool>|calls, |errors, |cost, |run_ms, |queue_ms
    P:idem:T:<key>        hash: f fingerprint, c call id, d deadline, o observation when done

Expiry is enforced once for the whole deployment: a sweep (any gateway, every
``session_sweep_s``) moves the sessions past their time to ``P:unreleased`` in one script
and pops them, so each is released by exactly one gateway, which tells the worker holding its
state. Keys of this module are Redis-standalone style (built inside the scripts): a Redis
Cluster would need them under one hash tag.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from toolfleet.core import streams
from toolfleet.core.errors import (
    IdempotencyConflictError,
    SessionExpiredError,
    SessionLimitError,
    SessionNotFoundError,
)
from toolfleet.core.idempotency import IdempotencyStore, Make
from toolfleet.core.ledger import Booking, UsageLedger, books
from toolfleet.core.protocol import (
    ErrorDiagnostic,
    ErrorKind,
    Observation,
    ToolUsage,
    TrajectoryUsage,
)
from toolfleet.core.sessions import Session, SessionStore, new_session_id
from toolfleet.core.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

POLL_S = 0.05  # how often a duplicate checks whether the first call finished
SWEEP_BATCH = 500

# Expire one session: drop it, remember it as expired (and, when it was its trajectory's
# session, tell the trajectory once), queue its tool state for release.
_EXPIRE_ONE = """
local function expire_one(P, id, keep)
  local sk = P .. ':sess:' .. id
  local f = redis.call('HMGET', sk, 't', 'j')
  redis.call('ZREM', P .. ':sessions', id)
  redis.call('DEL', sk)
  if f[1] then
    redis.call('SET', P .. ':expired:' .. id, f[1], 'EX', keep)
    if f[2] and f[2] ~= '' then
      local tk = P .. ':traj:' .. string.len(f[1]) .. ':' .. f[1] .. ':' .. f[2]
      redis.call('HDEL', tk, 'm:' .. id)
      if redis.call('HGET', tk, 's') == id then
        redis.call('HDEL', tk, 's')
        redis.call('HSET', tk, 'x', id)
      end
    end
  end
  redis.call('RPUSH', P .. ':unreleased', id)
end
local function touch(P, id, now)
  local sk = P .. ':sess:' .. id
  local f = redis.call('HMGET', sk, 't', 'ttl', 'c', 'j', 'p', 'm')
  local exp = now + tonumber(f[2])
  redis.call('ZADD', P .. ':sessions', exp, id)
  redis.call('EXPIRE', sk, math.ceil(tonumber(f[2])) + 3600)
  return {f[1], f[2], f[3], f[4], f[5], f[6], tostring(exp)}
end
local function create(P, id, tenant, ttl, now, traj, parent, meta, limit)
  if redis.call('ZCARD', P .. ':sessions') >= tonumber(limit) then return false end
  local sk = P .. ':sess:' .. id
  redis.call('HSET', sk, 't', tenant, 'ttl', ttl, 'c', now, 'j', traj, 'p', parent, 'm', meta)
  redis.call('EXPIRE', sk, math.ceil(tonumber(ttl)) + 3600)
  redis.call('ZADD', P .. ':sessions', now + tonumber(ttl), id)
  if traj ~= '' then
    local tk = P .. ':traj:' .. string.len(tenant) .. ':' .. tenant .. ':' .. traj
    if redis.call('HSETNX', tk, 's', id) == 1 then redis.call('HDEL', tk, 'x') end
    redis.call('HSET', tk, 'm:' .. id, 1)
  end
  return true
end
"""

# ARGV: P, id, tenant, ttl, now, traj, parent, meta, limit -> 1 | 0 (limit reached)
CREATE = (
    _EXPIRE_ONE
    + """
if create(ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8],
          ARGV[9]) then return 1 end
return 0
"""
)

# A call's session: by id (renewed when ``do_touch``), or the trajectory's (renewed; opened
# now when it has none, as ``newid`` with ``ttl``, unless ``limit`` sessions live). Each
# returns {'ok', id, tenant, ttl, created, traj, parent, meta, expiry} | {'expired', id} |
# {'missing', id} | {'limit', ''}.
_LOOKUP = """
local function session_by_id(P, tenant, id, now, do_touch, keep)
  local sk = P .. ':sess:' .. id
  if redis.call('HGET', sk, 't') ~= tenant then
    if redis.call('GET', P .. ':expired:' .. id) == tenant then return {'expired', id} end
    return {'missing', id}
  end
  local exp = redis.call('ZSCORE', P .. ':sessions', id)
  if not exp or tonumber(exp) < now then
    expire_one(P, id, keep)
    return {'expired', id}
  end
  if do_touch then return {'ok', id, unpack(touch(P, id, now))} end
  local f = redis.call('HMGET', sk, 't', 'ttl', 'c', 'j', 'p', 'm')
  return {'ok', id, f[1], f[2], f[3], f[4], f[5], f[6], exp}
end
local function session_of_trajectory(P, tenant, traj, now, keep, newid, ttl, limit)
  local tk = P .. ':traj:' .. string.len(tenant) .. ':' .. tenant .. ':' .. traj
  local id = redis.call('HGET', tk, 's')
  if id then
    local exp = redis.call('ZSCORE', P .. ':sessions', id)
    if exp and tonumber(exp) >= now then
      redis.call('EXPIRE', tk, keep)
      return {'ok', id, unpack(touch(P, id, now))}
    end
    if exp then expire_one(P, id, keep) else redis.call('HDEL', tk, 's') end
  end
  local gone = redis.call('HGET', tk, 'x')
  if gone then
    redis.call('HDEL', tk, 'x')
    return {'expired', gone}
  end
  if not create(P, newid, tenant, ttl, now, traj, '', '{}', limit) then return {'limit', ''} end
  redis.call('EXPIRE', tk, math.ceil(tonumber(keep)))
  return {'ok', newid, unpack(touch(P, newid, now))}
end
"""

# A call's session, from the ten arguments at ``a[first]`` (see ``SessionQuery.args``):
# P, now, keep, tenant, session id ('': by trajectory), trajectory, new id, ttl, limit, touch.
_RESOLVE = """
local function resolve(a, first)
  local P, now, keep, tenant = a[first], tonumber(a[first + 1]), a[first + 2], a[first + 3]
  if a[first + 4] ~= '' then
    return session_by_id(P, tenant, a[first + 4], now, a[first + 9] == '1', keep)
  end
  return session_of_trajectory(P, tenant, a[first + 5], now, keep, a[first + 6], a[first + 7],
                               a[first + 8])
end
"""

#: The session functions every script that resolves a call's session needs.
SESSION_LUA = _EXPIRE_ONE + _LOOKUP + _RESOLVE

# ARGV: a session query -> a session (see _LOOKUP)
SESSION = SESSION_LUA + "return resolve(ARGV, 1)\n"

# ARGV: P, id -> {tenant, ttl, created, traj, parent, meta} | {} (none)
REMOVE = """
local P, id = ARGV[1], ARGV[2]
local sk = P .. ':sess:' .. id
local f = redis.call('HMGET', sk, 't', 'ttl', 'c', 'j', 'p', 'm')
if not f[1] then return {} end
redis.call('DEL', sk)
redis.call('ZREM', P .. ':sessions', id)
if f[4] and f[4] ~= '' then
  local tk = P .. ':traj:' .. string.len(f[1]) .. ':' .. f[1] .. ':' .. f[4]
  redis.call('HDEL', tk, 'm:' .. id)
  if redis.call('HGET', tk, 's') == id then redis.call('HDEL', tk, 's') end
end
return f
"""

# ARGV: P, now, keep, batch -> ids of expired sessions to release (each returned once)
SWEEP = (
    _EXPIRE_ONE
    + """
local P = ARGV[1]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':sessions', '-inf', ARGV[2],
                               'LIMIT', 0, tonumber(ARGV[4]))) do
  expire_one(P, id, ARGV[3])
end
local out = redis.call('LRANGE', P .. ':unreleased', 0, -1)
redis.call('DEL', P .. ':unreleased')
return out
"""
)

# Book one answer into a usage hash. ARGV from ``first``: tool, failed, cost, run_ms,
# queue_ms, how long to keep the ledger, input tokens, output tokens (a model tool's; the
# last two may be absent: a booking made before they were booked).
_BOOK = """
local function book(key, a, first)
  local t = a[first]
  redis.call('HINCRBY', key, t .. '|calls', 1)
  if a[first + 1] == '1' then redis.call('HINCRBY', key, t .. '|errors', 1) end
  if a[first + 2] ~= '0' then redis.call('HINCRBYFLOAT', key, t .. '|cost', a[first + 2]) end
  redis.call('HINCRBYFLOAT', key, t .. '|run_ms', a[first + 3])
  redis.call('HINCRBYFLOAT', key, t .. '|queue_ms', a[first + 4])
  for i, name in ipairs({'input_tokens', 'output_tokens'}) do
    local n = a[first + 5 + i]
    if n and n ~= '0' then redis.call('HINCRBY', key, t .. '|' .. name, n) end
  end
  redis.call('EXPIRE', key, a[first + 5])
end
"""

# KEYS: usage. ARGV: the booking
RECORD = _BOOK + "book(KEYS[1], ARGV, 1)\nreturn 1\n"

# Start an idempotency record (fingerprint ``f``, call id ``c``, deadline ``d``) unless it
# exists -> {'run', '', ''} | {'conflict', '', ''} | {'done', observation, ''} |
# {'running', call id, deadline}
BEGIN_LUA = """
local function begin(key, f, c, d, keep)
  local r = redis.call('HMGET', key, 'f', 'c', 'd', 'o')
  if not r[1] then
    redis.call('HSET', key, 'f', f, 'c', c, 'd', d)
    redis.call('EXPIRE', key, keep)
    return {'run', '', ''}
  end
  if r[1] ~= f then return {'conflict', '', ''} end
  if r[4] then return {'done', r[4], ''} end
  return {'running', r[2], r[3]}
end
"""

# ARGV: record, fingerprint, call id, deadline, keep
BEGIN = BEGIN_LUA + "return begin(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n"

# End a record, and book its answer in the same step, so a call is booked once whichever
# gateway ends it. KEYS: record, usage. ARGV: call id, observation ('' forgets the record),
# keep, '1' to book, then the booking -> 1 | 0 (not ours, or already ended)
FINISH = (
    _BOOK
    + """
if redis.call('HGET', KEYS[1], 'c') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'o') == 1 then return 0 end
if ARGV[4] == '1' then book(KEYS[2], ARGV, 5) end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'o', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
)


def _scoped(tenant: str, name: str) -> str:
    return f"{len(tenant)}:{tenant}:{name}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class RedisState:
    """The three shared stores of a gateway, on one Redis client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: Redis = streams.connect(settings.redis_url or "")
        self.sessions = RedisSessionStore(self)
        self.ledger = RedisUsageLedger(self)
        self.idempotency = RedisIdempotencyStore(self)
        self._closed = False

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix

    async def close(self) -> None:
        """Close the client (once, whichever store asks first)."""
        if not self._closed:
            self._closed = True
            await self.redis.aclose()


class RedisSessionStore(SessionStore):
    """Sessions, trajectory bindings and TTLs in Redis."""

    def __init__(self, state: RedisState) -> None:
        s = state.settings
        super().__init__(s.session_ttl_s, s.max_session_ttl_s, s.max_sessions)
        self.state = state
        r = state.redis
        self._create = r.register_script(CREATE)
        self._session = r.register_script(SESSION)
        self._remove = r.register_script(REMOVE)
        self._sweep = r.register_script(SWEEP)

    @property
    def keep(self) -> int:
        """How long an expiry is remembered (and an idle trajectory binding kept)."""
        return max(1, int(self.max_ttl_s))

    async def count(self) -> int:
        return int(await self.state.redis.zcard(f"{self.state.prefix}:sessions"))

    async def create(
        self,
        tenant: str,
        *,
        ttl_s: float | None = None,
        metadata: dict[str, Any] | None = None,
        trajectory_id: str | None = None,
        parent_id: str | None = None,
    ) -> Session:
        session = Session(
            session_id=new_session_id(),
            tenant=tenant,
            ttl_s=self._ttl(ttl_s),
            trajectory_id=trajectory_id,
            parent_id=parent_id,
            metadata=dict(metadata or {}),
        )
        made = await self._create(
            args=[
                self.state.prefix,
                session.session_id,
                tenant,
                repr(session.ttl_s),
                repr(session.created_at),
                trajectory_id or "",
                parent_id or "",
                json.dumps(session.metadata),
                self.max_sessions,
            ],
            client=self.state.redis,
        )
        if not made:
            raise SessionLimitError(f"session limit reached ({self.max_sessions} live sessions)")
        if trajectory_id is not None:
            await self.state.redis.expire(
                f"{self.state.prefix}:traj:{_scoped(tenant, trajectory_id)}", self.keep
            )
        return session

    def query(
        self,
        tenant: str,
        session_id: str | None,
        trajectory_id: str | None,
        *,
        touch: bool = True,
    ) -> SessionQuery:
        """The lookup of a call's session: by id when given, else the trajectory's."""
        return SessionQuery(self, tenant, session_id, trajectory_id, touch)

    async def get(self, tenant: str, session_id: str, *, touch: bool = True) -> Session:
        return await self.query(tenant, session_id, None, touch=touch).run()

    async def for_trajectory(self, tenant: str, trajectory_id: str) -> Session:
        return await self.query(tenant, None, trajectory_id).run()

    async def remove(self, session_id: str) -> Session | None:
        found = await self._remove(args=[self.state.prefix, session_id], client=self.state.redis)
        if not found:
            return None
        return _session(session_id, [*found, "0"])

    async def of_trajectory(self, tenant: str, trajectory_id: str) -> list[str]:
        fields = await self.state.redis.hkeys(
            f"{self.state.prefix}:traj:{_scoped(tenant, trajectory_id)}"
        )
        return sorted(f[2:] for f in map(_text, fields) if f.startswith("m:"))

    async def forget_trajectory(self, tenant: str, trajectory_id: str) -> None:
        await self.state.redis.delete(f"{self.state.prefix}:traj:{_scoped(tenant, trajectory_id)}")

    async def take_expired(self) -> list[str]:
        found = await self._sweep(
            args=[self.state.prefix, repr(time.time()), self.keep, SWEEP_BATCH],
            client=self.state.redis,
        )
        return [_text(x) for x in found]

    async def close(self) -> None:
        await self.state.close()


def _session(session_id: str, f: list[Any]) -> Session:
    """A session from the fields the scripts return: tenant, ttl, created, trajectory,
    parent, metadata, expiry."""
    tenant, ttl, created, traj, parent, meta, expires = (_text(x) for x in f)
    return Session(
        session_id=session_id,
        tenant=tenant,
        ttl_s=float(ttl),
        created_at=float(created),
        expires_at=float(expires) or float(created) + float(ttl),
        trajectory_id=traj or None,
        parent_id=parent or None,
        metadata=json.loads(meta or "{}"),
    )


@dataclass(frozen=True)
class SessionQuery:
    """A call's session as its request names it (an id, else a trajectory), resolved by the
    ``SESSION`` script, or inside the script that queues the call (``redis_dispatch``), so
    that resolving it costs no round trip of its own."""

    store: RedisSessionStore
    tenant: str
    session_id: str | None
    trajectory_id: str | None
    touch: bool = True

    @property
    def keep(self) -> int:
        """How long an expiry, an idle trajectory binding and a ledger are kept."""
        return self.store.keep

    def args(self) -> list[Any]:
        """The script arguments (read by ``resolve`` in ``SESSION_LUA``)."""
        store = self.store
        return [
            store.state.prefix,
            repr(time.time()),
            store.keep,
            self.tenant,
            self.session_id or "",
            self.trajectory_id or "",
            new_session_id(),
            repr(store.default_ttl_s),
            store.max_sessions,
            "1" if self.touch else "0",
        ]

    def resolved(self, found: list[Any]) -> Session:
        """The session a script answered (see ``_LOOKUP``), or the error it means."""
        what, session_id = _text(found[0]), _text(found[1])
        if what == "expired":
            by_trajectory = self.session_id is None
            raise SessionExpiredError(
                session_id, trajectory_id=self.trajectory_id if by_trajectory else None
            )
        if what == "limit":
            limit = self.store.max_sessions
            raise SessionLimitError(f"session limit reached ({limit} live sessions)")
        if what != "ok":
            raise SessionNotFoundError(session_id)
        return _session(session_id, found[2:])

    async def run(self) -> Session:
        """Resolve the session on its own (one round trip)."""
        found = await self.store._session(args=self.args(), client=self.store.state.redis)
        return self.resolved(found)


class RedisUsageLedger(UsageLedger):
    """Per-trajectory usage in Redis hashes (kept ``max_session_ttl_s`` after the last
    booking, or until the trajectory is released)."""

    FIELDS = ("calls", "errors", "cost", "run_ms", "queue_ms", "input_tokens", "output_tokens")
    COUNTS = ("calls", "errors", "input_tokens", "output_tokens")  # integers

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self._record = state.redis.register_script(RECORD)

    def key(self, tenant: str, trajectory_id: str) -> str:
        """The trajectory's usage hash."""
        return usage_key(self.state.prefix, tenant, trajectory_id)

    def booking_args(self, obs: Observation) -> list[Any]:
        """The script arguments that book ``obs`` (see ``_BOOK``)."""
        return [
            obs.tool,
            "0" if obs.ok else "1",
            repr(obs.usage.cost) if obs.usage.cost else "0",
            repr(obs.usage.run_ms),
            repr(obs.usage.queue_ms),
            max(1, int(self.state.settings.max_session_ttl_s)),
            obs.usage.input_tokens,
            obs.usage.output_tokens,
        ]

    async def record(self, tenant: str, trajectory_id: str, obs: Observation) -> None:
        await self._record(
            keys=[self.key(tenant, trajectory_id)],
            args=self.booking_args(obs),
            client=self.state.redis,
        )

    async def touch(self, tenant: str, trajectory_id: str) -> None:
        key = self.key(tenant, trajectory_id)
        async with self.state.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "_", 0)
            pipe.expire(key, max(1, int(self.state.settings.max_session_ttl_s)))
            await pipe.execute()

    async def get(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        fields = await self.state.redis.hgetall(self.key(tenant, trajectory_id))
        return _usage(trajectory_id, fields) if fields else None

    async def pop(self, tenant: str, trajectory_id: str) -> TrajectoryUsage | None:
        key = self.key(tenant, trajectory_id)
        async with self.state.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            fields, _ = await pipe.execute()
        return _usage(trajectory_id, fields) if fields else None

    async def close(self) -> None:
        await self.state.close()


def usage_key(prefix: str, tenant: str, trajectory_id: str) -> str:
    """A trajectory's usage hash (``P:usage:T:<traj>``)."""
    return f"{prefix}:usage:{_scoped(tenant, trajectory_id)}"


def queue_booking(pipe: Pipeline, key: str, obs: Observation, keep: int) -> None:
    """Queue on ``pipe`` (a transaction) the commands that book ``obs`` into the usage hash
    ``key``: what ``_BOOK`` does, for a worker that books the answer in the transaction that
    sends it."""
    tool = obs.tool
    pipe.hincrby(key, f"{tool}|calls", 1)
    if not obs.ok:
        pipe.hincrby(key, f"{tool}|errors", 1)
    if obs.usage.cost:
        pipe.hincrbyfloat(key, f"{tool}|cost", obs.usage.cost)
    pipe.hincrbyfloat(key, f"{tool}|run_ms", obs.usage.run_ms)
    pipe.hincrbyfloat(key, f"{tool}|queue_ms", obs.usage.queue_ms)
    if obs.usage.input_tokens:
        pipe.hincrby(key, f"{tool}|input_tokens", obs.usage.input_tokens)
    if obs.usage.output_tokens:
        pipe.hincrby(key, f"{tool}|output_tokens", obs.usage.output_tokens)
    pipe.expire(key, keep)


def _usage(trajectory_id: str, fields: dict[Any, Any]) -> TrajectoryUsage:
    book = TrajectoryUsage(trajectory_id=trajectory_id)
    for raw, value in fields.items():
        tool, _, name = _text(raw).rpartition("|")
        if not tool or name not in RedisUsageLedger.FIELDS:
            continue  # "_": the trajectory is known, nothing booked yet
        usage = book.tools.setdefault(tool, ToolUsage())
        number = float(_text(value))
        setattr(usage, name, int(number) if name in RedisUsageLedger.COUNTS else number)
    for usage in book.tools.values():
        for name in RedisUsageLedger.FIELDS:
            setattr(book.total, name, getattr(book.total, name) + getattr(usage, name))
    return book


class RecordTakenError(Exception):
    """The idempotency record a call's script was to start was there: ``found`` is what
    ``begin`` answered (conflict, done or running)."""

    def __init__(self, found: list[Any]) -> None:
        super().__init__(_text(found[0]))
        self.found = found


class RedisIdempotencyStore(IdempotencyStore):
    """Idempotency records in Redis: a retry that lands on another gateway gets the first
    call's observation; if the gateway that ran it died before answering, the retry collects
    the worker's result (``P:result:<call id>``) and books it. A record's end books its
    answer in the same script, so whichever gateway ends it, the call is booked once."""

    def __init__(self, state: RedisState) -> None:
        super().__init__(state.settings.idempotency_ttl_s)
        self.state = state
        self._begin = state.redis.register_script(BEGIN)
        self._finish = state.redis.register_script(FINISH)

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
        *,
        begins: bool = False,
    ) -> Observation:
        """With ``begins``, ``make`` starts the record itself (the arguments of
        :meth:`record` in its script), and raises :class:`RecordTakenError` when the record
        was there."""
        record = self._key(tenant, key)
        keep = self._keep
        while True:
            if begins:  # ``make`` starts the record, in the script that queues the call
                try:
                    return await self._run(record, call_id, keep, make, booking)
                except RecordTakenError as taken:
                    found = taken.found
            else:
                found = await self._begin(
                    args=self.record(tenant, key, print_, call_id, deadline),
                    client=self.state.redis,
                )
            what = _text(found[0])
            if what == "conflict":
                raise IdempotencyConflictError(key)
            if what == "done":
                return Observation.model_validate_json(found[1])
            if what == "run":
                return await self._run(record, call_id, keep, make, booking)
            obs = await self._collect(
                record, _text(found[1]), float(_text(found[2])), booking, tool
            )
            if obs is not None:
                return obs
            # the record was dropped (a retryable failure, or its gateway gave up): start over

    def _key(self, tenant: str, key: str) -> str:
        return f"{self.state.prefix}:idem:{_scoped(tenant, key)}"

    @property
    def _keep(self) -> int:
        return max(1, int(self.ttl_s))

    def record(
        self, tenant: str, key: str, print_: str, call_id: str, deadline: float
    ) -> list[Any]:
        """The arguments that start the key's record for this call (``begin`` in
        ``BEGIN_LUA``)."""
        return [self._key(tenant, key), print_, call_id, repr(deadline), self._keep]

    async def _run(
        self, record: str, call_id: str, keep: int, make: Make, booking: Booking | None
    ) -> Observation:
        try:
            obs = await make()
        except RecordTakenError:
            raise  # not this call's record: nothing to end
        except BaseException:
            await asyncio.shield(self._end(record, call_id, None, keep, None))
            raise
        await self._end(record, call_id, obs, keep, booking)
        return obs

    async def _end(
        self,
        record: str,
        call_id: str,
        obs: Observation | None,
        keep: int,
        booking: Booking | None,
    ) -> int:
        """End the record (remember ``obs``; forget it when None or a retryable failure) and
        book ``obs``, in one script; 0 when the record was not this call's any more."""
        remembered = ""
        if obs is not None and not (obs.error is not None and obs.error.retryable):
            remembered = obs.model_dump_json()
        args: list[Any] = [call_id, remembered, keep, "0"]
        usage = record
        if obs is not None and booking is not None and books(obs):
            ledger = booking.ledger
            assert isinstance(ledger, RedisUsageLedger)
            usage = ledger.key(booking.tenant, booking.trajectory_id)
            args = [call_id, remembered, keep, "1", *ledger.booking_args(obs)]
        return int(await self._finish(keys=[record, usage], args=args, client=self.state.redis))

    async def _collect(
        self, record: str, call_id: str, deadline: float, booking: Booking | None, tool: str
    ) -> Observation | None:
        """Wait for the first call (``call_id``) to finish: its remembered observation, or
        the worker's result when the gateway that sent it is gone (booked here, once); None
        when the record went away. Past the call's deadline with no result, the call never
        ran (a worker refuses a call past its deadline): forget it and say so."""
        r = self.state.redis
        result_key = f"{self.state.prefix}:result:{call_id}"
        give_up = deadline + self.state.settings.reply_grace_s + 1.0
        keep = self._keep
        while True:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hmget(record, ["c", "o"])
                pipe.get(result_key)
                (holder, done), result = await pipe.execute()
            if done is not None:
                return Observation.model_validate_json(done)
            if _text(holder) != call_id:
                return None
            if result is not None:
                obs = Observation.model_validate_json(result)
                if await self._end(record, call_id, obs, keep, booking):
                    return obs
                continue  # another gateway ended it first: take its answer

            if time.time() > give_up:
                await self._end(record, call_id, None, keep, None)
                return Observation.failure(
                    tool,
                    call_id,
                    ErrorDiagnostic(
                        kind=ErrorKind.unavailable,
                        message="the gateway that took this call first stopped before it "
                        "ran; it was not run",
                        hint="Send the call again (same idempotency key).",
                        retryable=True,
                    ),
                )
            await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        await self.state.close()
