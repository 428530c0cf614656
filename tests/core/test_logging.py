"""Structured logs: JSON lines (TOOLFLEET_LOG_FORMAT=json) naming the call, session,
trajectory and request; the request id travels gateway -> Redis -> worker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from toolfleet.core import Settings, logs
from toolfleet.core.protocol import Invocation

from tests.helpers import ROOT, free_port, gateway, invocation, wait_healthy
from tests.helpers.cluster import Cluster


@contextmanager
def captured(logger_name: str, log_format: str = "json") -> Iterator[io.StringIO]:
    """Records of one logger, formatted as the gateway formats them, into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.formatter(log_format, {"role": "test"}))
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def json_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def logged(**fields: object) -> Invocation:
    """An echo call with the ids the log lines must name."""
    ids = {"call_id": "c1", "tenant": "default", "session_id": "s1", "trajectory_id": "t1"}
    return invocation("echo", **{**ids, "request_id": "r1", **fields})


def test_json_lines_carry_the_ids_of_the_call_being_handled():
    with captured("toolfleet.test") as buffer:
        log = logging.getLogger("toolfleet.test")
        log.info("outside")
        token = logs.bind_call(logged())
        try:
            log.warning("inside %s", "a call")
        finally:
            logs.unbind_call(token)
    outside, inside = json_lines(buffer)
    assert outside["message"] == "outside" and "call_id" not in outside
    assert outside["level"] == "INFO" and outside["logger"] == "toolfleet.test"
    assert outside["role"] == "test" and "time" in outside and "ids" not in outside
    assert inside["message"] == "inside a call" and inside["level"] == "WARNING"
    assert {k: inside[k] for k in logs.CALL_FIELDS} == {
        "call_id": "c1",
        "tool": "echo",
        "session_id": "s1",
        "trajectory_id": "t1",
        "request_id": "r1",
    }


def test_text_lines_end_with_the_ids():
    with captured("toolfleet.test", "text") as buffer:
        token = logs.bind_call(logged(session_id=None))
        try:
            logging.getLogger("toolfleet.test").info("hello")
        finally:
            logs.unbind_call(token)
        rid = logs.request_id.set("req-9")
        try:
            logging.getLogger("toolfleet.test").info("in a request")
        finally:
            logs.request_id.reset(rid)
    first, second = buffer.getvalue().splitlines()
    assert first.endswith("INFO toolfleet.test: hello [call=c1 tool=echo trajectory=t1 request=r1]")
    assert second.endswith("in a request [request=req-9]")


def test_request_ids_from_clients_are_checked():
    assert logs.clean_request_id("abc-DEF_1.2:3/4+5=6@7") == "abc-DEF_1.2:3/4+5=6@7"
    for bad in ("", "x" * 129, "a b", "a\nb", "é", None):
        assert logs.clean_request_id(bad) is None


async def test_gateway_logs_each_call_with_its_ids_and_errors_name_their_call():

    with captured("toolfleet.core") as buffer:
        async with gateway(log_calls=True) as inner:
            transport = httpx.ASGITransport(app=inner.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
                ok = await client.post(
                    "/v1/tools/counter/call",
                    json={"arguments": {}, "trajectory_id": "traj-log"},
                    headers={"x-request-id": "req-log-1"},
                )
                crash = await client.post(
                    "/v1/tools/fail/call",
                    json={"arguments": {"how": "crash"}},
                    headers={"x-request-id": "req-log-2"},
                )
    lines = json_lines(buffer)
    calls = [line for line in lines if line["message"].startswith("call ")]
    counter = next(line for line in calls if line["tool"] == "counter")
    assert counter["call_id"] == ok.json()["call_id"]
    assert counter["session_id"] == ok.json()["session_id"]
    assert counter["trajectory_id"] == "traj-log" and counter["request_id"] == "req-log-1"
    assert counter["outcome"] == "ok" and counter["ms"] >= 0 and counter["tenant"] == "default"
    failed = next(line for line in calls if line["tool"] == "fail")
    assert failed["outcome"] == "internal"
    # the executor's own error line, written inside the call, names it too
    error = next(line for line in lines if line["level"] == "ERROR")
    assert error["call_id"] == crash.json()["call_id"] and error["request_id"] == "req-log-2"
    assert "RuntimeError: boom" in error["exc_info"]


def test_toolfleet_serve_writes_json_lines(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TOOLFLEET_PORT": str(port),
        "TOOLFLEET_LOG_FORMAT": "json",
        "TOOLFLEET_LOG_CALLS": "true",
    }
    code = "from toolfleet.gateway.server import serve; from tests.helpers.tools import make_app; "
    code += "serve(app=make_app())"
    stderr = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        r = httpx.post(
            f"{url}/v1/tools/echo/call",
            json={"arguments": {"text": "hi"}},
            headers={"x-request-id": "from-curl"},
        )
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    stderr.seek(0)
    lines = [json.loads(line) for line in stderr.read().splitlines() if line.strip()]
    assert all(line["role"] == "gateway" for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's too
    call = next(line for line in lines if line["message"].startswith("call echo ok"))
    assert call.get("request_id") == "from-curl"
    assert call["call_id"] == r.json()["call_id"]


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    return make_cluster(log_format="json", log_calls=True)


async def test_the_request_id_travels_to_the_worker_and_its_logs(cluster: Cluster) -> None:

    cluster.start_worker()
    cluster.wait_workers(1)
    async with cluster.gateway() as inner:
        transport = httpx.ASGITransport(app=inner.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
            r = await client.post(
                "/v1/tools/counter/call",
                json={"arguments": {"add": 1}, "trajectory_id": "traj-w"},
                headers={"x-request-id": "req-to-worker"},
            )
    obs = r.json()
    assert obs["ok"], obs
    line = None
    for _ in range(100):
        found = [
            json.loads(x)
            for x in cluster.worker_log(0).splitlines()
            if x.startswith("{") and '"req-to-worker"' in x
        ]
        if found:
            line = found[0]
            break
        await asyncio.sleep(0.05)
    assert line is not None, cluster.worker_log(0)[-2000:]
    assert line["role"] == "worker" and line["worker_id"] == f"w0-{cluster.prefix}"
    assert line["call_id"] == obs["call_id"] and line["session_id"] == obs["session_id"]
    assert line["trajectory_id"] == "traj-w" and line["message"].startswith("call counter ok")


def test_settings_refuse_unknown_log_formats():
    with pytest.raises(ValueError):
        Settings(log_format="xml")


# --------------------------------------------------------------------------- metrics


def registered_metrics(tmp_path) -> set[str]:
    """Every metric family a gateway registers (with the call log on)."""
    from toolfleet.core.dispatch import InProcessDispatcher
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.core.runtime import Runtime

    settings = Settings(call_log=True, call_log_path=tmp_path / "calls.sqlite3")
    runtime = Runtime(settings, InProcessDispatcher(ToolRegistry()))
    return {m.name for m in runtime.metrics.registry.collect()}


def test_every_metric_is_documented_in_one_place(tmp_path):
    doc = (ROOT / "docs" / "metrics.md").read_text()
    names = registered_metrics(tmp_path)
    assert len(names) > 15
    missing = [n for n in sorted(names) if f"`{n}`" not in doc]
    assert missing == [], f"add them to docs/metrics.md: {missing}"


def test_the_dashboard_queries_only_metrics_that_exist(tmp_path):
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "toolfleet.json").read_text())
    names = registered_metrics(tmp_path)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) > 20
    used = set()
    for expr in exprs:
        for metric in re.findall(r"toolfleet_[a-z_]+", expr):
            used.add(re.sub(r"_(total|bucket|count|sum)$", "", metric))
    assert used - names == set()
    for needed in (
        "toolfleet_call_duration_seconds",
        "toolfleet_calls",
        "toolfleet_queue_depth",
        "toolfleet_sessions",
        "toolfleet_service_status",
    ):
        assert needed in used
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))


async def test_service_status_gauges_sum_each_services_numbers():
    from toolfleet.core.dispatch import InProcessDispatcher
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.core.service import Service
    from toolfleet.core.service_metrics import ServiceStatusCollector

    from tests.helpers.tools import Echo

    class Pooled(Service):
        name = "test"

        def tools(self):
            return [Echo(self)]

        def status(self):
            return {"backend": "x", "pool_ready": 3, "pool_size": 4, "jailed": True}

    class Remote(InProcessDispatcher):
        def worker_status(self):
            ok = {"pool_ready": 1, "pool_size": 4, "jailed": False, "note": "text"}
            return {
                "w1": {"status": {"sandbox": ok}, "running": 2},
                "w2": {"status": {"sandbox": {**ok, "pool_ready": 4}}, "running": 5},
            }

    embedded = ServiceStatusCollector(InProcessDispatcher(ToolRegistry(Pooled().tools())))
    (status, running) = list(embedded.collect())
    found = {tuple(s.labels.values()): s.value for s in status.samples}
    assert found == {
        ("test", "jailed"): 1.0,
        ("test", "pool_ready"): 3.0,
        ("test", "pool_size"): 4.0,
    }
    assert running.samples == []
    (status, running) = list(ServiceStatusCollector(Remote(ToolRegistry())).collect())
    found = {tuple(s.labels.values()): s.value for s in status.samples}
    assert found == {
        ("sandbox", "jailed"): 0.0,
        ("sandbox", "pool_ready"): 5.0,
        ("sandbox", "pool_size"): 8.0,
    }
    assert {s.labels["worker"]: s.value for s in running.samples} == {"w1": 2.0, "w2": 5.0}
    async with gateway() as client:
        assert "# TYPE toolfleet_service_status gauge" in (await client.get("/metrics")).text
