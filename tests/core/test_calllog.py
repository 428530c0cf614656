"""The call log, for real on SQLite and on this machine's PostgreSQL (127.0.0.1:5432, user
postgres; a database ``toolfleet_test`` made if missing, a schema of its own per test):
recording through the gateway, the digest, export to JSONL, replay against a gateway with a
diff, retention, back-pressure and a database that is down."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
import uvicorn
from toolfleet.core import Settings
from toolfleet.core.calllog import CallStore, calls, observation_digest
from toolfleet.core.calllog_cli import main as calls_main
from toolfleet.core.calllog_cli import parse_time
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.tool import CallContext, ToolResult

from tests.helpers import free_port, gateway
from tests.helpers.tools import Counter, Echo, EchoArgs, Fail

PG_ADMIN = os.environ.get("TOOLFLEET_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
PG_DB = "toolfleet_test"


def ensure_pg_database() -> None:
    """Create the test database unless it exists (idempotent, safe when racing)."""
    try:
        with psycopg.connect(f"{PG_ADMIN}/postgres", autocommit=True, connect_timeout=5) as c:
            if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).fetchone():
                return
            with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                c.execute(f'CREATE DATABASE "{PG_DB}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"the call log tests need PostgreSQL at {PG_ADMIN}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A call log database: a SQLite file, or a fresh schema in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calls.sqlite3'}"
        return
    ensure_pg_database()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_ADMIN}/{PG_DB}", autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    try:
        server = PG_ADMIN.split("://", 1)[1]
        yield f"postgresql+psycopg://{server}/{PG_DB}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(f"{PG_ADMIN}/{PG_DB}", autocommit=True) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


def logged(**overrides: object) -> dict[str, object]:
    """Gateway settings with the call log on, flushing fast."""
    return {"call_log": True, "call_log_flush_s": 0.02, **overrides}


async def flush(client) -> None:
    await client.app.state.runtime.call_log.flush()


def rows(url: str, **filters: object) -> list[dict]:
    store = CallStore(url)
    try:
        return list(store.query(**filters))
    finally:
        store.close()


def new_id(prefix: str = "traj") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- recording


async def test_every_call_is_recorded_with_its_ids_timing_and_digest(db_url):
    traj = new_id()
    async with gateway(**logged(call_log_url=db_url, call_log_observations=True)) as client:
        seen = []
        for tool, args in [
            ("echo", {"text": "hi", "times": 2}),
            ("counter", {"add": 5}),
            ("fail", {"how": "diagnostic"}),
            ("echo", {"text": 7}),  # invalid arguments: still a call
        ]:
            r = await client.post(
                f"/v1/tools/{tool}/call",
                json={"arguments": args, "trajectory_id": traj, "timeout_s": 9},
            )
            seen.append(r.json())
        batch = await client.post(
            "/v1/calls",
            json={"calls": [{"tool": "noop"}, {"tool": "counter", "trajectory_id": traj}]},
        )
        seen += batch.json()["observations"]
        await flush(client)

    found = rows(db_url, trajectory_id=traj)
    assert [r["tool"] for r in found] == ["echo", "counter", "fail", "echo", "counter"]
    by_id = {r["call_id"]: r for r in found}
    for obs in seen:
        if obs["trajectory_id"] != traj:
            continue
        record = by_id[obs["call_id"]]
        assert record["observation_sha256"] == observation_digest(obs)
        assert record["observation"] == obs
        assert record["session_id"] == obs["session_id"] and record["tenant"] == "default"
        assert record["ok"] is obs["ok"]
        assert record["queue_ms"] == obs["usage"]["queue_ms"]
        assert record["run_ms"] == obs["usage"]["run_ms"]
        assert record["total_ms"] >= record["run_ms"]
    first, _, failed, invalid, _ = found
    assert first["arguments"] == {"text": "hi", "times": 2} and first["timeout_s"] == 9
    assert first["cost"] == 1.0 and first["error_kind"] is None
    assert failed["error_kind"] == "runtime_error" and failed["error_message"] == "division by zero"
    assert invalid["error_kind"] == "invalid_arguments" and invalid["arguments"] == {"text": 7}
    when = datetime.fromisoformat(first["submitted_at"])
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60
    # the stateless noop of the batch, without trajectory, is recorded too
    noop = [r for r in rows(db_url, tool="noop")]
    assert len(noop) == 1 and noop[0]["trajectory_id"] is None and noop[0]["session_id"] is None


async def test_full_observations_are_optional(db_url):
    traj = new_id()
    async with gateway(**logged(call_log_url=db_url)) as client:
        r = await client.post(
            "/v1/tools/echo/call", json={"arguments": {"text": "x"}, "trajectory_id": traj}
        )
        await flush(client)
    (record,) = rows(db_url, trajectory_id=traj)
    assert record["observation"] is None
    assert record["observation_sha256"] == observation_digest(r.json())


def test_digest_covers_what_the_model_sees_not_ids_or_timing():
    a = {
        "ok": True,
        "tool": "echo",
        "call_id": "1",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"queue_ms": 1.0, "run_ms": 2.0, "cost": 1.0},
        "session_id": "s-1",
    }
    b = {**a, "call_id": "2", "usage": {"queue_ms": 9.0, "run_ms": 9.0, "cost": 0}}
    b["session_id"] = "s-2"
    assert observation_digest(a) == observation_digest(b)
    c = {**a, "content": [{"type": "text", "text": "hi!"}]}
    assert observation_digest(a) != observation_digest(c)
    assert observation_digest({**a, "truncated": True}) != observation_digest(a)
    assert re.fullmatch(r"[0-9a-f]{64}", observation_digest(a))


async def test_the_request_id_reaches_the_call_log(tmp_path):
    from httpx import ASGITransport, AsyncClient

    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    async with gateway(**logged(call_log_url=url)) as inner:
        transport = ASGITransport(app=inner.app)
        async with AsyncClient(transport=transport, base_url="http://gateway") as client:
            given = await client.post(
                "/v1/tools/noop/call", json={}, headers={"x-request-id": "req-42.a"}
            )
            made = await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}})
            bad = await client.post(
                "/v1/tools/noop/call", json={}, headers={"x-request-id": "no spaces\tor tabs"}
            )
        await flush(inner)
    assert given.headers["x-request-id"] == "req-42.a"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])  # replaced, not logged
    ids = {r["call_id"]: r["request_id"] for r in rows(url)}
    assert ids[given.json()["call_id"]] == "req-42.a"
    assert ids[made.json()["call_id"]] == made.headers["x-request-id"]
    assert ids[bad.json()["call_id"]] == bad.headers["x-request-id"]


async def test_a_full_queue_drops_calls_and_counts_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    # the writer takes at most a call or two, then waits 30 s for more: the queue (2) fills
    settings = {"call_log_queue": 2, "call_log_flush_s": 30}
    async with gateway(call_log=True, call_log_url=url, **settings) as client:
        for _ in range(10):
            assert (await client.post("/v1/tools/noop/call")).json()["ok"]
        text = (await client.get("/metrics")).text
        assert "toolfleet_call_log_queue 2.0" in text
        dropped = float(
            re.search(r'toolfleet_call_log_dropped_total\{reason="overflow"\} (\S+)', text)[1]
        )
        assert 6 <= dropped <= 8
    assert len(rows(url)) == 10 - dropped  # stopping writes what was queued


async def test_calls_go_on_while_the_database_is_down():
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    async with gateway(**logged(call_log_url=dead)) as client:
        for _ in range(3):
            assert (await client.post("/v1/tools/noop/call")).json()["ok"]
        await asyncio.sleep(0.1)
        text = (await client.get("/metrics")).text
        assert "toolfleet_call_log_up 0.0" in text
    # stopping gives up on the unreachable database and counts what it could not write
    assert 'toolfleet_call_log_dropped_total{reason="error"} 3.0' in (
        client.app.state.runtime.metrics.render().decode()
    )


# --------------------------------------------------------------------------- retention


async def test_retention_by_rows_and_by_age(db_url):
    async with gateway(**logged(call_log_url=db_url)) as client:
        for i in range(6):
            await client.post("/v1/tools/echo/call", json={"arguments": {"text": str(i)}})
        await flush(client)
    store = CallStore(db_url)
    try:
        assert store.count() == 6
        assert store.apply_retention(None, 4) == 2
        assert [r["arguments"]["text"] for r in store.query()] == ["2", "3", "4", "5"]
        old = datetime.now(UTC) - timedelta(days=3)
        with store.engine.begin() as conn:
            conn.execute(sa.update(calls).where(calls.c.tool == "echo").values(submitted_at=old))
            conn.execute(
                calls.insert(),
                [{**_row("new"), "submitted_at": datetime.now(UTC)}],
            )
        assert store.apply_retention(2 * 86400, None) == 4
        assert [r["call_id"] for r in store.query()] == ["new"]
    finally:
        store.close()


def _row(call_id: str) -> dict:
    return {
        "call_id": call_id,
        "tenant": "default",
        "tool": "noop",
        "timeout_s": 1.0,
        "arguments": "{}",
        "ok": True,
        "queue_ms": 0.0,
        "run_ms": 0.0,
        "total_ms": 0.0,
        "cost": 0.0,
        "truncated": False,
        "observation_sha256": "0" * 64,
    }


async def test_retention_runs_in_the_background(tmp_path):
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    settings = logged(call_log_url=url, call_log_max_rows=3, call_log_retention_s=0.05)
    async with gateway(**settings) as client:
        for _ in range(8):
            await client.post("/v1/tools/noop/call")
        await flush(client)
        for _ in range(100):
            if len(rows(url)) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(rows(url)) == 3
        assert "toolfleet_call_log_deleted_total 5.0" in (await client.get("/metrics")).text


# --------------------------------------------------------------------------- export


async def test_export_a_trajectory_and_a_time_range_to_jsonl(db_url, tmp_path, capsys):
    a, b = new_id("a"), new_id("b")
    async with gateway(**logged(call_log_url=db_url, call_log_observations=True)) as client:
        for traj in (a, b, a):
            await client.post(
                "/v1/tools/counter/call", json={"arguments": {"add": 1}, "trajectory_id": traj}
            )
        await flush(client)
    out = tmp_path / "a.jsonl"
    assert calls_main(["export", "--db", db_url, "--trajectory", a, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["trajectory_id"] for r in lines] == [a, a]
    assert [r["observation"]["content"][0]["data"]["value"] for r in lines] == [1, 2]
    assert "exported 2 calls" in capsys.readouterr().err

    # a time range, to standard output
    assert calls_main(["export", "--db", db_url, "--since", "10m", "--until", "2099-01-01"]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["trajectory_id"] for r in printed] == [a, b, a]
    assert calls_main(["export", "--db", db_url, "--until", "1h"]) == 0
    assert capsys.readouterr().out == ""


def test_times_are_iso_or_ages():
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("30m", now) == now - timedelta(minutes=30)
    assert parse_time("2026-11-26T10:00:00Z") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert parse_time("2026-11-26T10:00:00") == datetime(2026, 11, 26, 10, tzinfo=UTC)
    with pytest.raises(Exception, match="not a time"):
        parse_time("yesterday")


def test_settings_name_the_sqlite_file_by_default(tmp_path, monkeypatch, capsys):
    path = tmp_path / "deep" / "calls.sqlite3"
    monkeypatch.setenv("TOOLFLEET_CALL_LOG_PATH", str(path))
    assert Settings().call_log is False  # off unless asked for
    assert calls_main(["prune"]) == 0  # creates the file and table
    assert path.exists() and "deleted 0 calls, 0 left" in capsys.readouterr().out


# --------------------------------------------------------------------------- replay


class ReversingEcho(Echo):
    """The echo tool of a later release: it now answers reversed."""

    async def call(self, args: EchoArgs, ctx: CallContext) -> ToolResult:
        return ToolResult.text((args.text * args.times)[::-1], data={"length": len(args.text)})


@asynccontextmanager
async def http_server(app) -> AsyncIterator[str]:
    """Serve an (already started) app over real HTTP on 127.0.0.1."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def record_trajectory(db_url: str, observations: bool) -> str:
    traj = new_id()
    async with gateway(**logged(call_log_url=db_url, call_log_observations=observations)) as c:
        session = (await c.post("/v1/sessions", json={"trajectory_id": traj})).json()
        for tool, args, where in [
            ("echo", {"text": "abc"}, {"trajectory_id": traj}),
            ("counter", {"add": 2}, {"trajectory_id": traj}),
            ("counter", {"add": 3}, {"trajectory_id": traj}),
            ("counter", {"add": 10}, {"session_id": session["session_id"]}),
            ("fail", {}, {"trajectory_id": traj}),
        ]:
            r = await c.post(f"/v1/tools/{tool}/call", json={"arguments": args, **where})
            assert r.status_code == 200
        await flush(c)
    return traj


async def test_replay_against_the_same_gateway_answers_the_same(db_url, capsys):
    traj = await record_trajectory(db_url, observations=False)
    async with gateway() as client, http_server(client.app) as url:
        code = await asyncio.to_thread(calls_main, ["replay", traj, "--db", db_url, "--url", url])
        assert len(client.app.state.runtime.sessions) == 0  # the replay released its own
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"replaying 5 calls of trajectory {traj}" in out
    assert "5 calls: 5 same, 0 different, 0 failed" in out


async def test_replay_against_a_changed_gateway_shows_a_diff(db_url, capsys):
    traj = await record_trajectory(db_url, observations=True)
    tools = ToolRegistry([ReversingEcho(), Counter(), Fail()])
    async with gateway(tools) as client, http_server(client.app) as url:
        code = await asyncio.to_thread(
            calls_main, ["replay", traj, "--db", db_url, "--url", url, "--as", "again"]
        )
        assert await client.app.state.runtime.sessions.of_trajectory("default", "again") == []
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert re.match(r"\s+1 echo\s+DIFFERENT", lines[1])
    assert '-      "text": "abc",' in out and '+      "text": "cba",' in out
    assert [line.split()[-1] for line in lines if re.match(r"\s+\d ", line)] == [
        "DIFFERENT",
        "same",
        "same",
        "same",
        "same",
    ]
    assert "5 calls: 4 same, 1 different, 0 failed" in out


async def test_replay_from_an_export_file_with_digests_only(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    traj = await record_trajectory(db_url, observations=False)
    export = tmp_path / "traj.jsonl"
    assert calls_main(["export", "--db", db_url, "--trajectory", traj, "--out", str(export)]) == 0
    tools = ToolRegistry([ReversingEcho(), Counter(), Fail()])
    async with gateway(tools) as client, http_server(client.app) as url:
        code = await asyncio.to_thread(
            calls_main, ["replay", traj, "--from", str(export), "--url", url]
        )
    out = capsys.readouterr().out
    assert code == 1
    assert "recorded digest" in out and "(full observation not kept)" in out
    assert '"text": "cba"' in out


async def test_replay_reports_calls_the_gateway_refuses(tmp_path, capsys):
    db_url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    traj = await record_trajectory(db_url, observations=False)
    async with gateway(ToolRegistry([Counter()])) as client, http_server(client.app) as url:
        code = await asyncio.to_thread(calls_main, ["replay", traj, "--db", db_url, "--url", url])
    out = capsys.readouterr().out
    assert code == 1
    assert "echo             FAILED  HTTP 404" in out
    assert "5 calls: 3 same, 0 different, 2 failed" in out
    assert calls_main(["replay", "nothing-recorded", "--db", db_url]) == 2
