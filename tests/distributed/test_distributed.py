"""Distributed mode for real: a gateway and worker processes over the Redis on this machine
(127.0.0.1:6379), each test under a key prefix of its own."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from pathlib import Path

from toolfleet.core import streams
from toolfleet.core.protocol import Invocation

from tests.helpers import call, new_session
from tests.helpers.cluster import Cluster


def runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_calls_reach_workers_and_spread_over_them(cluster: Cluster) -> None:
    cluster.start_worker()
    cluster.start_worker()
    cluster.wait_workers(2)
    async with cluster.gateway() as client:
        tools = {t["name"] for t in (await client.get("/v1/tools")).json()["tools"]}
        assert {"echo", "counter", "tally", "whoami"} <= tools
        obs = await call(client, "echo", {"text": "hi", "times": 2})
        assert obs["ok"] and obs["content"][0]["text"] == "hihi"
        bad = await call(client, "echo", {"text": 5})
        assert bad["error"]["kind"] == "invalid_arguments"
        # enough concurrent calls that both workers take some (each holds a call 50 ms)
        observations = await asyncio.gather(
            *(
                call(client, "tally", {"path": "/dev/null", "token": "t", "seconds": 0.05})
                for _ in range(40)
            )
        )
        assert all(o["ok"] for o in observations)
        assert len({o["data"]["pid"] for o in observations}) == 2
        ready = (await client.get("/readyz")).json()
        assert len(ready["services"]["test"]["workers"]) == 2
        metrics = (await client.get("/metrics")).text
        assert "toolfleet_reply_duration_seconds_count" in metrics
        assert 'toolfleet_workers{service="test"} 2.0' in metrics


async def test_session_calls_stay_on_their_worker_and_fork_lands_there(cluster: Cluster) -> None:
    for _ in range(3):
        cluster.start_worker()
    cluster.wait_workers(3)
    async with cluster.gateway() as client:
        sid = await new_session(client)
        pids = set()
        for expected in (2, 4, 6):
            obs = await call(client, "counter", {"add": 2}, session_id=sid)
            assert obs["content"][0]["data"]["value"] == expected
        for _ in range(5):
            obs = await call(client, "whoami", {}, session_id=sid)  # stateless tool: anywhere
            pids.add(obs["data"]["pid"])
        fork = (await client.post(f"/v1/sessions/{sid}/fork")).json()["session_id"]
        forked = await call(client, "counter", {"add": 1}, session_id=fork)
        assert forked["content"][0]["data"]["value"] == 7
        parent = await call(client, "counter", {"add": 1}, session_id=sid)
        assert parent["content"][0]["data"]["value"] == 7  # the branches are independent
        r = cluster.redis()
        bound = r.hgetall(f"{cluster.prefix}:session:{sid}")
        assert bound == r.hgetall(f"{cluster.prefix}:session:{fork}") != {}
        assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 200
        assert not r.exists(f"{cluster.prefix}:session:{sid}")
        # the fork lives on after its parent ends
        assert (await call(client, "counter", {"add": 1}, session_id=fork))["content"][0]["data"][
            "value"
        ] == 8


async def test_duplicate_messages_run_once_and_answer_with_the_first_result(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A copy of a call (a gateway retrying its enqueue through a blip, or a redelivery)
    gets the first run's result; the tool runs once."""
    cluster.start_worker()
    cluster.wait_workers(1)
    r = cluster.redis()
    tally = tmp_path / "tally"
    inv = Invocation(
        call_id=uuid.uuid4().hex,
        tool="tally",
        arguments={"path": str(tally), "token": "once", "seconds": 0.3},
        tenant="default",
        timeout_s=30,
        submitted_at=time.time(),
    )
    msg = streams.message("call", inv.call_id, "gw-test", inv.model_dump_json())
    stream = f"{cluster.prefix}:calls:tally"
    r.xadd(stream, {"m": msg})
    r.xadd(stream, {"m": msg})  # while the first copy runs
    replies_key = f"{cluster.prefix}:replies:gw-test"
    first = r.blpop([replies_key], timeout=50)
    assert first is not None
    r.xadd(stream, {"m": msg})  # after it finished
    second = r.blpop([replies_key], timeout=50)
    assert second is not None
    assert first[1] == second[1]
    assert json.loads(streams.parse_reply(first[1])[1])["ok"]
    time.sleep(0.5)
    assert runs(tally) == ["once"]
    assert r.llen(replies_key) == 0  # the copy sent during the run got no second answer
    assert r.xlen(stream) == 0  # every copy acknowledged and deleted


async def test_expired_calls_are_not_run_late(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_worker(worker_concurrency=1)
    cluster.wait_workers(1)
    tally = tmp_path / "tally"
    async with cluster.gateway() as client:
        busy = asyncio.create_task(
            call(client, "tally", {"path": str(tally), "token": "busy", "seconds": 1.5})
        )
        await asyncio.sleep(0.3)
        late = await call(client, "tally", {"path": str(tally), "token": "late"}, timeout_s=0.5)
        assert (await busy)["ok"]
    assert late["ok"] is False
    assert late["error"]["kind"] == "timeout"
    assert "not run" in late["error"]["message"]
    assert late["error"]["retryable"] is True
    await asyncio.sleep(0.3)
    assert runs(tally) == ["busy"]


async def test_backlog_past_the_limit_is_refused_with_429(cluster: Cluster) -> None:
    cluster.start_worker(worker_concurrency=1)
    cluster.wait_workers(1)
    async with cluster.gateway(max_backlog=2, retry_after_s=2) as client:
        held = [
            asyncio.create_task(
                call(client, "tally", {"path": "/dev/null", "token": "x", "seconds": 1})
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.2)
        r = await client.post(
            "/v1/tools/tally/call", json={"arguments": {"path": "/dev/null", "token": "y"}}
        )
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["code"] == "overloaded"
        batch = await client.post(
            "/v1/calls",
            json={"calls": [{"tool": "tally", "arguments": {"path": "/dev/null", "token": "z"}}]},
        )
        assert batch.json()["observations"][0]["error"]["kind"] == "rate_limited"
        assert all(o["ok"] for o in await asyncio.gather(*held))
        # the backlog drained: calls are taken again
        assert (await call(client, "echo", {"text": "again"}))["ok"]


async def test_a_dead_workers_sessions_are_reported_lost_and_its_calls_never_run_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker()
    cluster.wait_workers(1)
    tally = tmp_path / "tally"
    async with cluster.gateway() as client:
        sid = await new_session(client)
        assert (await call(client, "counter", {"add": 5}, session_id=sid))["ok"]
        doomed = asyncio.create_task(
            call(client, "tally", {"path": str(tally), "token": "doomed", "seconds": 2})
        )
        await asyncio.sleep(0.5)  # the only worker runs it
        cluster.kill_worker(0)
        cluster.start_worker()
        obs = await doomed  # reclaimed by the new worker, which answers instead of re-running
        assert obs["ok"] is False
        assert obs["error"]["kind"] == "unavailable" and obs["error"]["retryable"]
        assert "died while running it" in obs["error"]["message"]
        lost = await call(client, "counter", {"add": 1}, session_id=sid)
        assert lost["ok"] is False
        assert lost["error"]["kind"] == "unavailable" and lost["error"]["retryable"]
        assert "state" in lost["error"]["message"]
        fresh = await call(client, "counter", {"add": 1}, session_id=sid)
        assert fresh["ok"] and "data" in fresh["content"][0], fresh
        assert fresh["content"][0]["data"]["value"] == 1  # a new start on a live worker
    await asyncio.sleep(2.5)  # past the killed call's sleep: it never completed anywhere
    assert runs(tally) == []
    r = cluster.redis()
    assert len(r.xrange(f"{cluster.prefix}:dead")) == 1


def queue_ghost_call(cluster: Cluster, tally: Path, ghosts: list[str]) -> str:
    """Queue a tally call that workers ``ghosts`` (which never heartbeat) took in turn and
    never started: as if each died right after reading it."""
    r = cluster.redis()
    stream = f"{cluster.prefix}:calls:tally"
    r.xgroup_create(stream, streams.GROUP, id="0", mkstream=True)
    inv = Invocation(
        call_id=uuid.uuid4().hex,
        tool="tally",
        arguments={"path": str(tally), "token": "ghosted"},
        tenant="default",
        timeout_s=60,
        submitted_at=time.time(),
    )
    r.xadd(stream, {"m": streams.message("call", inv.call_id, "gw-test", inv.model_dump_json())})
    r.xreadgroup(streams.GROUP, ghosts[0], {stream: ">"}, count=1)
    for ghost in ghosts[1:]:
        r.xclaim(stream, streams.GROUP, ghost, 0, [r.xrange(stream)[0][0]])
    return stream


async def test_calls_a_dead_worker_never_started_are_run_by_another(
    cluster: Cluster, tmp_path: Path
) -> None:
    tally = tmp_path / "tally"
    stream = queue_ghost_call(cluster, tally, ["ghost-1"])
    cluster.start_worker()
    r = cluster.redis()
    reply = r.blpop([f"{cluster.prefix}:replies:gw-test"], timeout=50)
    assert reply is not None
    assert json.loads(streams.parse_reply(reply[1])[1])["ok"]
    assert runs(tally) == ["ghosted"]
    assert int(r.hget(f"{cluster.prefix}:stats", "redeliveries")) == 1
    assert r.xlen(stream) == 0


async def test_calls_that_keep_failing_delivery_go_to_the_dead_letters(
    cluster: Cluster, tmp_path: Path
) -> None:
    tally = tmp_path / "tally"
    stream = queue_ghost_call(cluster, tally, ["ghost-1", "ghost-2"])
    cluster.start_worker(max_deliveries=2)
    r = cluster.redis()
    reply = r.blpop([f"{cluster.prefix}:replies:gw-test"], timeout=50)
    assert reply is not None
    obs = json.loads(streams.parse_reply(reply[1])[1])
    assert obs["ok"] is False and "given up" in obs["error"]["message"]
    dead = r.xrange(f"{cluster.prefix}:dead")
    assert len(dead) == 1 and dead[0][1][b"deliveries"] == b"3"
    assert runs(tally) == []
    assert r.xlen(stream) == 0


async def test_sigterm_drains_running_calls_then_ends_the_sessions(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.start_worker(drain_grace_s=0)
    cluster.wait_workers(1)
    tally = tmp_path / "tally"
    async with cluster.gateway() as client:
        sid = await new_session(client)
        assert (await call(client, "counter", {"add": 1}, session_id=sid))["ok"]
        running = asyncio.create_task(
            call(client, "tally", {"path": str(tally), "token": "drained", "seconds": 1})
        )
        await asyncio.sleep(0.3)
        cluster.kill_worker(0, signal.SIGTERM)
        assert (await running)["ok"]
        assert await asyncio.to_thread(cluster.workers[0].wait, 300) == 0
        assert "drain" in cluster.worker_log(0)
        lost = await call(client, "counter", {"add": 1}, session_id=sid)
        assert lost["error"]["kind"] == "unavailable"
    assert runs(tally) == ["drained"]
    r = cluster.redis()
    assert r.zcard(f"{cluster.prefix}:workers") == 0


async def test_a_draining_worker_serves_its_sessions_for_the_grace_then_says_lost(
    cluster: Cluster,
) -> None:
    cluster.start_worker(drain_grace_s=4)
    cluster.wait_workers(1)
    async with cluster.gateway() as client:
        held = await new_session(client)
        assert (await call(client, "counter", {"add": 1}, session_id=held))["ok"]
        cluster.start_worker()
        cluster.wait_workers(2)
        cluster.kill_worker(0, signal.SIGTERM)
        await asyncio.sleep(1.0)  # its heartbeat says "draining"
        # its session is still served, during the grace
        obs = await call(client, "counter", {"add": 1}, session_id=held)
        assert obs["content"][0]["data"] == {"value": 2}
        # a new session goes to the other worker
        fresh = await new_session(client)
        assert (await call(client, "counter", {"add": 1}, session_id=fresh))["ok"]
        r = cluster.redis()
        assert (
            r.hget(f"{cluster.prefix}:session:{fresh}", "test") == f"w1-{cluster.prefix}".encode()
        )
        assert await asyncio.to_thread(cluster.workers[0].wait, 300) == 0
        lost = await call(client, "counter", {"add": 1}, session_id=held)
        assert lost["error"]["kind"] == "unavailable" and "lost" in lost["error"]["message"]
        again = await call(client, "counter", {"add": 1}, session_id=fresh)
        assert again["content"][0]["data"] == {"value": 2}


async def test_ready_only_with_a_live_worker_per_service_and_calls_fail_fast_without(
    cluster: Cluster,
) -> None:
    async with cluster.gateway(wait_tools=False) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503 and "no worker" in r.json()["error"]["message"]
        cluster.start_worker(drain_grace_s=0)
        cluster.wait_workers(1)
        for _ in range(600):  # a loaded machine: the heartbeat may take its time
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/readyz")).status_code == 200
        cluster.kill_worker(0, signal.SIGTERM)
        assert await asyncio.to_thread(cluster.workers[0].wait, 300) == 0
        for _ in range(600):  # the gateway learns the worker left
            r = await client.get("/readyz")
            if r.status_code == 503:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 503 and "test" in r.json()["error"]["message"]
        started = time.monotonic()
        obs = await call(client, "echo", {"text": "x"}, timeout_s=60)
        assert time.monotonic() - started < 30  # answered at once, not after its timeout
        assert obs["error"]["kind"] == "unavailable"
        assert "no live worker serves the test service" in obs["error"]["message"]
        assert "timeout_s" not in obs["error"]["hint"]


async def test_sandbox_worker_runs_python_sessions_files_and_forks(cluster: Cluster) -> None:
    """The real sandbox service in a worker process (local backend, jailed kernels)."""
    cluster.start_worker("sandbox", sandbox_uid_base=250_000, sandbox_pool_size=1)
    cluster.wait_workers(1, timeout_s=120)
    async with cluster.gateway() as client:
        stateless = await call(client, "python", {"code": "print(1+1)"})
        assert stateless["ok"] and stateless["data"]["stdout"] == "2\n"
        sid = await new_session(client)
        r = await client.put(f"/v1/sessions/{sid}/files/data.txt", content=b"41")
        assert r.status_code == 200, r.text
        code = "x = int(open('data.txt').read())"
        assert (await call(client, "python", {"code": code}, session_id=sid))["ok"]
        fork = (await client.post(f"/v1/sessions/{sid}/fork")).json()["session_id"]
        obs = await call(client, "python", {"code": "x + 1"}, session_id=fork)
        assert obs["data"]["result"] == "42"
        bash = await call(client, "bash", {"command": "cat data.txt"}, session_id=fork)
        assert bash["data"]["stdout"] == "41"
        listed = (await client.get(f"/v1/sessions/{fork}/files")).json()
        assert "data.txt" in json.dumps(listed)
        ready = (await client.get("/readyz")).json()
        assert ready["services"]["sandbox"]["backend"] == "local"


async def test_any_gateway_serves_a_trajectory_and_its_ledger_counts_each_answer_once(
    cluster: Cluster,
) -> None:
    """Two gateways, one worker: a trajectory's calls alternate between the gateways and
    its state carries on; the ledger (read from either) counts each answer once: a
    failure as an error, an idempotency key sent again (to the other gateway) not again, a
    session's expiry notice not at all."""
    cluster.start_worker()
    cluster.wait_workers(1)
    async with cluster.gateway() as a, cluster.gateway() as b:
        values = []
        for n in range(4):
            obs = await call((a, b)[n % 2], "counter", {"add": 1}, trajectory_id="tr")
            assert obs["trajectory_id"] == "tr"
            values.append(obs["content"][0]["data"]["value"])
        assert values == [1, 2, 3, 4]
        sid = obs["session_id"]
        assert sid
        failed = await call(a, "fail", {}, trajectory_id="tr")
        assert failed["error"]["kind"] == "runtime_error"
        keyed = {"trajectory_id": "tr", "idempotency_key": "k1"}
        first = await call(a, "counter", {"add": 10}, **keyed)
        again = await call(b, "counter", {"add": 10}, **keyed)
        assert first["content"][0]["data"]["value"] == 14
        assert again["call_id"] == first["call_id"] and again["content"] == first["content"]
        other = {"arguments": {"add": 2}, **keyed}
        assert (await b.post("/v1/tools/counter/call", json=other)).status_code == 409
        # by session id: the trajectory's session, booked to its trajectory
        by_id = await call(b, "counter", {"add": 1}, session_id=sid)
        assert by_id["content"][0]["data"]["value"] == 15 and by_id["trajectory_id"] == "tr"
        for client in (a, b):
            usage = (await client.get("/v1/trajectories/tr/usage")).json()
            assert usage["tools"]["counter"]["calls"] == 6
            assert (usage["total"]["calls"], usage["total"]["errors"]) == (7, 1)
        nowhere = {"arguments": {"add": 1}, "session_id": "s-never-opened"}
        assert (await a.post("/v1/tools/counter/call", json=nowhere)).status_code == 404
        # an expired session: said once (not run, not booked), then a fresh session
        r = await a.post("/v1/sessions", json={"trajectory_id": "short", "ttl_s": 2})
        assert r.status_code == 201, r.text
        assert (await call(b, "counter", {"add": 5}, trajectory_id="short"))["ok"]
        await asyncio.sleep(4)  # idle past its TTL
        expired = await call(a, "counter", {"add": 1}, trajectory_id="short")
        assert expired["error"]["kind"] == "session_expired"
        fresh = await call(b, "counter", {"add": 1}, trajectory_id="short")
        assert fresh["content"][0]["data"]["value"] == 1
        usage = (await a.get("/v1/trajectories/short/usage")).json()
        assert (usage["total"]["calls"], usage["total"]["errors"]) == (2, 0)
