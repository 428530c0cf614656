"""Probes, metrics, OpenAPI docs, settings and the shipped registry."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from toolfleet.core import Settings
from toolfleet.core.registry import ToolRegistry

from tests.helpers.tools import Echo


async def test_healthz_and_readyz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["tools"] >= 5


async def test_readyz_is_503_before_start():
    import httpx
    from toolfleet.gateway.app import create_app

    app = create_app(Settings(), registry=ToolRegistry())  # lifespan not run
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://g"
    ) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"


async def test_metrics_count_calls_by_tool_and_outcome(client):
    await client.post("/v1/tools/echo/call", json={"arguments": {"text": "x"}})
    await client.post("/v1/tools/echo/call", json={"arguments": {"text": "y"}})
    await client.post("/v1/tools/fail/call", json={"arguments": {}})
    await client.post("/v1/sessions")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'toolfleet_calls_total{outcome="ok",tool="echo"} 2.0' in text
    assert 'toolfleet_calls_total{outcome="runtime_error",tool="fail"} 1.0' in text
    assert 'toolfleet_call_duration_seconds_count{outcome="ok",tool="echo"} 2.0' in text
    assert 'toolfleet_call_duration_seconds_bucket{le="0.001",outcome="ok",tool="echo"}' in text
    assert "toolfleet_calls_in_flight 0.0" in text
    assert "toolfleet_sessions 1.0" in text


async def test_openapi_docs(client):
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/v1/tools",
        "/v1/tools/{name}/call",
        "/v1/calls",
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/fork",
        "/v1/trajectories/{trajectory_id}/usage",
        "/v1/trajectories/{trajectory_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    call = spec["paths"]["/v1/tools/{name}/call"]["post"]
    assert call["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Observation"
    )


def test_settings_from_env_and_toml(tmp_path, monkeypatch):
    config = tmp_path / "toolfleet.toml"
    config.write_text('port = 9001\nmax_in_flight = 7\n[api_keys]\nabc = "t1"\n')
    monkeypatch.setenv("TOOLFLEET_CONFIG", str(config))
    s = Settings()
    assert (s.port, s.max_in_flight, s.api_keys) == (9001, 7, {"abc": "t1"})
    monkeypatch.setenv("TOOLFLEET_MAX_IN_FLIGHT", "9")
    assert Settings().max_in_flight == 9  # the environment wins over the file


def test_settings_reject_bad_values(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLFLEET_MAX_IN_FLIGHT", "0")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("TOOLFLEET_MAX_IN_FLIGHT")
    with pytest.raises(FileNotFoundError):
        Settings(config_file=tmp_path / "missing.toml")
    (tmp_path / "typo.toml").write_text("prot = 1\n")
    with pytest.raises(ValidationError):
        Settings(config_file=tmp_path / "typo.toml")


def test_shipped_registry_has_no_test_tools():
    names = ToolRegistry.discover(Settings()).names()
    assert not {"echo", "noop", "sleep", "fail", "counter", "barrier", "picture"} & set(names)


def test_registry_refuses_duplicate_names():
    registry = ToolRegistry([Echo()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Echo())


def test_service_sections_of_the_config_file(tmp_path, monkeypatch):
    from toolfleet.sandbox.settings import SandboxSettings

    config = tmp_path / "toolfleet.toml"
    config.write_text("port = 9002\n[sandbox]\nmemory_mb = 300\npool_size = 1\n")
    monkeypatch.setenv("TOOLFLEET_CONFIG", str(config))
    assert Settings().port == 9002
    assert (SandboxSettings().memory_mb, SandboxSettings().pool_size) == (300, 1)
    monkeypatch.setenv("TOOLFLEET_SANDBOX_MEMORY_MB", "400")
    assert SandboxSettings().memory_mb == 400
