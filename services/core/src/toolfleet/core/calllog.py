"""The call log: every call the gateway runs, in a SQL database, for audit, export and replay.

One table, ``toolfleet_calls``, one row per call that ran (a duplicate answered from an
idempotency key is not a new call): its ids (call, request, tenant, session, trajectory), tool,
arguments, outcome (``ok``, error kind and message), timing (queue, run and total ms), cost,
and the observation's digest (:func:`observation_digest`), plus the whole observation when
``call_log_observations`` is on. SQLAlchemy Core, so the same code writes SQLite (the default,
``call_log_path``) and PostgreSQL (``call_log_url``, production).

Writes stay off the hot path: :meth:`CallLog.record` only puts the call on a bounded asyncio
queue (a full queue drops it and counts it in ``toolfleet_call_log_dropped_total``); a
background task takes the queue in batches and inserts each batch in a worker thread.
Retention (``call_log_max_age_s``, ``call_log_max_rows``) is applied every
``call_log_retention_s``. :class:`CallStore` is the synchronous side the CLI
(``toolfleet calls``, :mod:`toolfleet.core.calllog_cli`) reads and exports with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram
from toolfleet.core.metrics import Metrics
from toolfleet.core.protocol import Invocation, Observation
from toolfleet.core.settings import Settings

log = logging.getLogger(__name__)

#: What an observation's digest covers: what the model sees, not ids or timing.
DIGEST_FIELDS = ("ok", "content", "data", "error", "truncated")
ID_CHARS = 512  # longer ids are cut (they are indexed)
MESSAGE_CHARS = 2000
STOP_TIMEOUT_S = 30.0
RETRY_S = (0.5, 1.0, 2.0, 5.0)
ROWS_PER_SLICE = 50  # rows made between two turns of the event loop (about 0.5 ms)

metadata = sa.MetaData()

calls = sa.Table(
    "toolfleet_calls",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    ),  # insertion order
    sa.Column("call_id", sa.String(64), nullable=False),
    sa.Column("request_id", sa.String(128)),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("tenant", sa.String(ID_CHARS), nullable=False),
    sa.Column("tool", sa.String(ID_CHARS), nullable=False),
    sa.Column("session_id", sa.String(ID_CHARS)),
    sa.Column("trajectory_id", sa.String(ID_CHARS)),
    sa.Column("timeout_s", sa.Float, nullable=False),
    sa.Column("arguments", sa.Text, nullable=False),  # canonical JSON
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("error_message", sa.Text),
    sa.Column("queue_ms", sa.Float, nullable=False),
    sa.Column("run_ms", sa.Float, nullable=False),
    sa.Column("total_ms", sa.Float, nullable=False),  # as the gateway saw it (transport too)
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("truncated", sa.Boolean, nullable=False),
    sa.Column("observation_sha256", sa.String(64), nullable=False),
    sa.Column("observation", sa.Text),  # JSON, when call_log_observations
    sa.Index("ix_toolfleet_calls_call_id", "call_id"),
    sa.Index("ix_toolfleet_calls_submitted_at", "submitted_at"),
    sa.Index("ix_toolfleet_calls_trajectory", "trajectory_id", "tenant", "id"),
)


# --------------------------------------------------------------------------- digests


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def observation_view(obs: Observation | dict[str, Any]) -> dict[str, Any]:
    """The part of an observation the model sees (:data:`DIGEST_FIELDS`), as JSON data;
    a dict is read as an observation's JSON first, so both sides normalise alike."""
    if isinstance(obs, dict):
        obs = Observation.model_validate(obs)
    return obs.model_dump(mode="json", include=set(DIGEST_FIELDS))


def observation_digest(obs: Observation | dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of :func:`observation_view`: equal for two calls
    whose observations the model cannot tell apart (call ids, sessions and timing aside)."""
    return hashlib.sha256(canonical_json(observation_view(obs)).encode()).hexdigest()


# --------------------------------------------------------------------------- the store


def database_url(settings: Settings) -> str:
    """The call log's SQLAlchemy URL: ``call_log_url``, else the SQLite file."""
    if settings.call_log_url:
        return settings.call_log_url
    return f"sqlite:///{Path(settings.call_log_path).expanduser().resolve()}"


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``. ``postgresql://`` means psycopg 3 (the driver installed);
    SQLite files get WAL (readers do not block the writer) and their directory is made."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(conn: Any, _: Any) -> None:
        cursor = conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _cut(value: str | None, chars: int = ID_CHARS) -> str | None:
    return None if value is None else value[:chars]


def row_of(inv_json: str, obs_json: str, seconds: float, full: bool) -> dict[str, Any]:
    """The table row of one finished call, from the JSON of its invocation and observation."""
    inv = json.loads(inv_json)
    obs = json.loads(obs_json)
    error = obs.get("error") or {}
    usage = obs.get("usage") or {}
    view = {key: obs.get(key) for key in DIGEST_FIELDS}
    return {
        "call_id": inv["call_id"][:64],
        "request_id": _cut(inv.get("request_id"), 128),
        "submitted_at": datetime.fromtimestamp(inv["submitted_at"], UTC),
        "tenant": _cut(inv["tenant"]),
        "tool": _cut(inv["tool"]),
        "session_id": _cut(inv.get("session_id")),
        "trajectory_id": _cut(inv.get("trajectory_id")),
        "timeout_s": inv["timeout_s"],
        "arguments": canonical_json(inv["arguments"]),
        "ok": bool(obs["ok"]),
        "error_kind": error.get("kind"),
        "error_message": None if not error else str(error.get("message", ""))[:MESSAGE_CHARS],
        "queue_ms": float(usage.get("queue_ms", 0.0)),
        "run_ms": float(usage.get("run_ms", 0.0)),
        "total_ms": seconds * 1000.0,
        "cost": float(usage.get("cost", 0.0)),
        "truncated": bool(obs.get("truncated", False)),
        "observation_sha256": hashlib.sha256(canonical_json(view).encode()).hexdigest(),
        "observation": obs_json if full else None,
    }


def record_of(row: Any) -> dict[str, Any]:
    """A stored row as a JSON-ready dict (one line of an export)."""
    found = dict(row._mapping)
    found.pop("id", None)
    when = found["submitted_at"]
    if when.tzinfo is None:  # SQLite keeps no zone: it was written in UTC
        when = when.replace(tzinfo=UTC)
    found["submitted_at"] = when.isoformat()
    found["arguments"] = json.loads(found["arguments"])
    found["observation"] = (
        None if found["observation"] is None else json.loads(found["observation"])
    )
    return found


class CallStore:
    """The call log's table in one database (synchronous: call it from a thread or a CLI)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def create(self) -> None:
        """Create the table and its indexes if they are missing."""
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(calls.insert(), rows)

    def query(
        self,
        *,
        trajectory_id: str | None = None,
        tenant: str | None = None,
        tool: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Calls in the order they were recorded, filtered; each as :func:`record_of`."""
        stmt = sa.select(calls).order_by(calls.c.id)
        if trajectory_id is not None:
            stmt = stmt.where(calls.c.trajectory_id == trajectory_id)
        if tenant is not None:
            stmt = stmt.where(calls.c.tenant == tenant)
        if tool is not None:
            stmt = stmt.where(calls.c.tool == tool)
        if since is not None:
            stmt = stmt.where(calls.c.submitted_at >= _utc(since))
        if until is not None:
            stmt = stmt.where(calls.c.submitted_at < _utc(until))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=1000).execute(stmt):
                yield record_of(row)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(calls)).scalar_one())

    def apply_retention(self, max_age_s: float | None, max_rows: int | None) -> int:
        """Delete calls older than ``max_age_s`` and all but the newest ``max_rows``; returns
        how many were deleted."""
        deleted = 0
        with self.engine.begin() as conn:
            if max_age_s is not None:
                cutoff = datetime.now(UTC) - timedelta(seconds=max_age_s)
                deleted += conn.execute(
                    calls.delete().where(calls.c.submitted_at < _utc(cutoff))
                ).rowcount
            if max_rows is not None:
                keep_from = conn.execute(
                    sa.select(calls.c.id).order_by(calls.c.id.desc()).offset(max_rows).limit(1)
                ).scalar()
                if keep_from is not None:
                    deleted += conn.execute(calls.delete().where(calls.c.id <= keep_from)).rowcount
        return deleted


def _utc(when: datetime) -> datetime:
    """An aware UTC time (naive times are taken as UTC); SQLite compares them as text, so
    they are written the way the rows were."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when


# --------------------------------------------------------------------------- the recorder


class CallLogMetrics:
    """The call log's metrics, in the runtime's registry."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.written = Counter(
            "toolfleet_call_log_written", "Calls written to the call log.", registry=registry
        )
        self.dropped = Counter(
            "toolfleet_call_log_dropped",
            "Calls not written to the call log, by reason (overflow: its queue was full; "
            "error: the database refused them).",
            ["reason"],
            registry=registry,
        )
        self.deleted = Counter(
            "toolfleet_call_log_deleted",
            "Calls deleted from the call log by retention.",
            registry=registry,
        )
        self.queued = Gauge(
            "toolfleet_call_log_queue", "Calls waiting to be written.", registry=registry
        )
        self.up = Gauge(
            "toolfleet_call_log_up",
            "1 when the call log's last write succeeded, 0 while its database fails.",
            registry=registry,
        )
        self.write_duration = Histogram(
            "toolfleet_call_log_write_seconds",
            "Time to write one batch of calls.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        for reason in ("overflow", "error"):
            self.dropped.labels(reason)


_STOP = object()


class CallLog:
    """Records calls in the background (see the module's docstring)."""

    def __init__(self, settings: Settings, metrics: Metrics, url: str | None = None) -> None:
        self.settings = settings
        self.store = CallStore(url or database_url(settings))
        self.full = settings.call_log_observations
        self.batch_size = settings.call_log_batch
        self.flush_s = settings.call_log_flush_s
        self.metrics = CallLogMetrics(metrics)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.call_log_queue)
        self.metrics.queued.set_function(self._queue.qsize)
        self._tasks: list[asyncio.Task[None]] = []
        self._created = False
        self._closing = False
        self._stopping = asyncio.Event()  # cuts the writer's waits short

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> CallLog | None:
        """The call log the settings ask for (None when ``call_log`` is off)."""
        return cls(settings, metrics) if settings.call_log else None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the table (or keep trying in the background) and start writing."""
        await self._ensure_table()
        self._tasks = [
            asyncio.create_task(self._writer(), name="toolfleet-call-log"),
            asyncio.create_task(self._retention(), name="toolfleet-call-log-retention"),
        ]
        log.info("call log: %s", self.store.engine.url.render_as_string(hide_password=True))

    async def stop(self) -> None:
        """Write what is queued (up to a time limit), then close the database."""
        self._closing = True
        self._stopping.set()
        writer, retention = self._tasks or (None, None)
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        if writer is not None:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(_STOP)  # wakes a writer waiting on an empty queue
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):  # not wait_for: see _pause
                    await writer
            except TimeoutError:
                lost = self._queue.qsize()
                log.error("call log: stopped with %d calls unwritten", lost)
                self.metrics.dropped.labels("error").inc(lost)
        await asyncio.to_thread(self.store.close)

    # ------------------------------------------------------------------ recording

    def record(self, inv: Invocation, obs: Observation, seconds: float) -> None:
        """Queue one finished call (never blocks; drops and counts when the queue is full)."""
        if self._queue.full():
            self.metrics.dropped.labels("overflow").inc()
            return
        # JSON text, not the models: queued strings are no work for the garbage collector,
        # while hundreds of queued models made its full collections stall the event loop
        self._queue.put_nowait((inv.model_dump_json(), obs.model_dump_json(), seconds))

    async def flush(self) -> None:
        """Wait until every call recorded so far is written or dropped (tests, shutdown)."""
        await self._queue.join()

    def _take(self, batch: list[Any]) -> tuple[int, bool]:
        """Move queued calls into ``batch`` (up to the batch size); how many items were
        taken, and whether a stop marker was among them."""
        taken, stop = 0, False
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            taken += 1
            if item is _STOP:
                stop = True
            else:
                batch.append(item)
        return taken, stop

    async def _writer(self) -> None:
        while not (self._closing and self._queue.empty()):
            first = await self._queue.get()
            batch: list[Any] = []
            taken, stop = (1, True) if first is _STOP else (1, False)
            if first is not _STOP:
                batch.append(first)
            try:
                more, stop_seen = self._take(batch)
                taken, stop = taken + more, stop or stop_seen
                if not stop and not self._closing and len(batch) < self.batch_size:
                    await self._pause(self.flush_s)  # gather more for one insert
                    more, stop = self._take(batch)
                    taken += more
                if batch:
                    await self._write(batch)
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    async def _write(self, batch: list[tuple[str, str, float]]) -> None:
        """Insert a batch, retrying while the database is unreachable; rows the database
        refuses are dropped one by one (and counted)."""
        rows = await self._rows(batch)
        for attempt, pause in enumerate((*RETRY_S, None)):
            started = time.perf_counter()
            try:
                await self._ensure_table()
                await asyncio.to_thread(self.store.insert, rows)
            except sa.exc.OperationalError as exc:  # unreachable, locked: try again
                self.metrics.up.set(0)
                if pause is None or (self._closing and attempt >= 1):
                    log.error("call log: dropping %d calls: %s", len(rows), _short(exc))
                    self.metrics.dropped.labels("error").inc(len(rows))
                    return
                log.warning("call log: write failed (%s); retrying", _short(exc))
                await self._pause(pause)
                continue
            except sa.exc.SQLAlchemyError as exc:  # a row it will never take
                log.error("call log: batch refused (%s); writing row by row", _short(exc))
                await self._write_one_by_one(rows)
                return
            self.metrics.write_duration.observe(time.perf_counter() - started)
            self.metrics.written.inc(len(rows))
            self.metrics.up.set(1)
            return

    async def _rows(self, batch: list[tuple[str, str, float]]) -> list[dict[str, Any]]:
        """The rows of a batch, made on the event loop a slice at a time (between requests):
        made in a thread they would hold the GIL against the loop for longer."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(batch), ROWS_PER_SLICE):
            rows += [row_of(*item, self.full) for item in batch[start : start + ROWS_PER_SLICE]]
            await asyncio.sleep(0)
        return rows

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the log is stopping."""
        # not asyncio.wait_for: on Python 3.11 a cancellation arriving as the wait ends
        # is lost, and a stop cancelling this task would wait on it forever
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _write_one_by_one(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            try:
                await asyncio.to_thread(self.store.insert, [row])
            except sa.exc.SQLAlchemyError as exc:
                log.error("call log: call %s refused: %s", row["call_id"], _short(exc))
                self.metrics.dropped.labels("error").inc()
            else:
                self.metrics.written.inc()

    async def _ensure_table(self) -> None:
        if self._created:
            return
        try:
            await asyncio.to_thread(self.store.create)
        except sa.exc.SQLAlchemyError as exc:
            self.metrics.up.set(0)
            log.error("call log: cannot create its table yet: %s", _short(exc))
            return
        self._created = True
        self.metrics.up.set(1)

    async def _retention(self) -> None:
        max_age, max_rows = self.settings.call_log_max_age_s, self.settings.call_log_max_rows
        if max_age is None and max_rows is None:
            return
        while True:
            try:
                if self._created:
                    deleted = await asyncio.to_thread(self.store.apply_retention, max_age, max_rows)
                    if deleted:
                        self.metrics.deleted.inc(deleted)
                        log.info("call log: retention deleted %d calls", deleted)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("call log: retention failed: %s", _short(exc))
            await asyncio.sleep(self.settings.call_log_retention_s)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
