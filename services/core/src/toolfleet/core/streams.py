"""What travels over Redis in distributed mode: key names, messages, replies, scripts.

Layout (``P`` is ``settings.redis_prefix``)::

    P:calls:<tool>        stream, one per tool, consumer group "workers": stateless calls
    P:worker:<id>         stream, one per worker: calls of sessions it holds, forks, ends
    P:workers             sorted set: worker id -> time of its last heartbeat
    P:worker-info:<id>    JSON: the worker's services, tool specs and status
    P:session:<id>        hash: service -> id of the worker holding the session's state
    P:replies:<gateway>   list: replies to one gateway process ("<call id>\\n<payload>")
    P:result:<call id>    a finished call's reply payload, for redelivered copies
    P:running:<call id>   id of the worker running the call
    P:gateway:<id>        a gateway's liveness marker (gone after Redis lost its data)
    P:dead                stream of dead letters
    P:stats               hash of counters (redeliveries, dead_letters)
    P:worker-ordinal      counter: each worker started takes the next number

A message on a stream has the field ``m``: a JSON object with ``op`` (call, fork, end),
``id`` (the call id), ``reply`` (the gateway to answer) and the op's fields. A call whose
session the gateway resolved in the script that queued it has ``s`` (its session), ``j`` (its
trajectory) and ``b`` (the worker books the answer; the ledger's keep) beside it
(:func:`read_entry`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

GROUP = "workers"
REPLIES_TTL_S = 300  # a reply list outlives its silent gateway by this much


class ToolInfo(TypedDict):
    """A tool as a worker's heartbeat describes it."""

    spec: dict[str, Any]  # the tool's ToolSpec, as JSON
    hidden: bool  # callable, not listed for models


class WorkerInfo(TypedDict):
    """What a worker's heartbeat says of it (``P:worker-info:<id>``)."""

    services: list[str]  # the services it was started for
    pid: int
    host: str
    tools: list[ToolInfo]
    running: NotRequired[int]  # calls it runs now
    status: NotRequired[dict[str, Any]]  # each service's status (``Service.status``)
    draining: NotRequired[bool]  # stopping: takes no new calls or sessions (worker drain)
    books: NotRequired[bool]  # reads a call's session from its entry, books answers (read_entry)
    removed: NotRequired[dict[str, str]]  # tools it served before and no longer: why
    tools_digest: NotRequired[str]  # changes with ``tools`` (gateways read them again then)


@dataclass(frozen=True)
class Keys:
    """Redis key names of one deployment."""

    prefix: str

    def calls(self, tool: str) -> str:
        return f"{self.prefix}:calls:{tool}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    def worker_info(self, worker_id: str) -> str:
        return f"{self.prefix}:worker-info:{worker_id}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def replies(self, gateway_id: str) -> str:
        return f"{self.prefix}:replies:{gateway_id}"

    def result(self, call_id: str) -> str:
        return f"{self.prefix}:result:{call_id}"

    def running(self, call_id: str) -> str:
        return f"{self.prefix}:running:{call_id}"

    def gateway(self, gateway_id: str) -> str:
        return f"{self.prefix}:gateway:{gateway_id}"

    def reap_lock(self, worker_id: str) -> str:
        return f"{self.prefix}:reap:{worker_id}"

    @property
    def ordinal(self) -> str:
        return f"{self.prefix}:worker-ordinal"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"


def message(op: str, call_id: str, reply_to: str, body: str) -> str:
    """A stream message; ``body`` is the JSON text of the op's object (e.g. an Invocation)."""
    return f'{{"op":"{op}","id":"{call_id}","reply":"{reply_to}","body":{body}}}'


def parse_message(raw: bytes | str) -> dict[str, Any]:
    """The message's fields (``op``, ``id``, ``reply``, ``body``)."""
    msg = json.loads(raw)
    if not isinstance(msg, dict) or not {"op", "id", "reply", "body"} <= msg.keys():
        raise ValueError("not a toolfleet stream message")
    return msg


def read_entry(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """The message of a stream entry, with what the gateway's script added beside it: the
    call's session (``s``) and trajectory (``j``), set in the invocation, and ``book``, how
    long to keep the trajectory's ledger when the worker books the answer (``b``)."""
    msg = parse_message(fields.get(b"m", b""))
    body = msg["body"]
    if msg["op"] == "call" and isinstance(body, dict):
        if b"s" in fields:
            body["session_id"] = fields[b"s"].decode()
        if b"j" in fields:
            body["trajectory_id"] = fields[b"j"].decode()
        if b"b" in fields:
            msg["book"] = int(fields[b"b"])
    return msg


def reply(call_id: str, payload: str) -> str:
    """A reply: the call id, a newline, the payload (an Observation's or a control op's JSON)."""
    return f"{call_id}\n{payload}"


def parse_reply(raw: bytes) -> tuple[str, bytes]:
    """``(call id, payload)`` of a reply."""
    call_id, _, payload = raw.partition(b"\n")
    return call_id.decode(), payload


# Enqueue with back-pressure, atomically: refuse when the stream holds ``max_backlog``
# messages (acknowledged ones are deleted, so its length is what is queued or running), and
# refuse a worker's stream when the worker's last heartbeat is older than ``dead_before``.
ENQUEUE = """
if ARGV[3] ~= '' then
  local beat = redis.call('ZSCORE', KEYS[2], ARGV[3])
  if not beat or tonumber(beat) < tonumber(ARGV[4]) then return -1 end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
return 1
"""

# Before running a call: its remembered result, or a claim on running it.
# Returns {'done', payload} | {'run', ''} | {'running', holder}.
CLAIM = """
local done = redis.call('GET', KEYS[1])
if done then return {'done', done} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then return {'run', ''} end
return {'running', redis.call('GET', KEYS[2]) or ''}
"""


def connect(url: str) -> Redis:
    """A client that retries a command through short network blips and Redis restarts
    (about 3 s in all) before raising ``ConnectionError``."""
    return Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=30,
        max_connections=512,
    )


#: Errors that mean "Redis is not reachable right now".
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
