"""End to end through real processes: ``toolfleet serve`` and the ``toolfleet`` CLI."""

from __future__ import annotations

import json
import signal
import subprocess

import httpx
import pytest
from toolfleet.client.cli import main
from toolfleet.core import __version__

from tests.helpers import PYTHON, ROOT, free_port, wait_healthy


@pytest.fixture
def test_tools_url(live_server) -> str:
    """A uvicorn process serving the test-only tools."""
    port = free_port()
    return live_server(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "tests.helpers.tools:make_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        port,
    )


def test_serve_runs_the_embedded_gateway(live_server):
    port = free_port()
    url = live_server([PYTHON, "-m", "toolfleet.client.cli", "serve", "--port", str(port)], port)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    tools = httpx.get(f"{url}/v1/tools").json()["tools"]
    assert not {"echo", "noop"} & {t["name"] for t in tools}  # only real tools are shipped
    assert httpx.get(f"{url}/docs").status_code == 200


def test_serve_reads_config_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    config = tmp_path / "toolfleet.toml"
    config.write_text(f"port = {port}\nmax_in_flight = 3\n")
    proc = subprocess.Popen(
        [PYTHON, "-m", "toolfleet.client.cli", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal as Unix tools should
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
        log = proc.stderr.read()
        assert b"Application shutdown complete" in log
        assert b"Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_cli_lists_tools(test_tools_url, capsys):
    assert main(["tools", "--url", test_tools_url]) == 0
    out = capsys.readouterr().out
    assert "echo" in out and "Sends the text back." in out
    assert main(["tools", "--url", test_tools_url, "--format", "openai"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert {e["type"] for e in entries} == {"function"}
    assert "echo" in {e["function"]["name"] for e in entries}


def test_cli_calls_a_tool(test_tools_url, capsys):
    assert main(["call", "echo", "--url", test_tools_url, "--json", '{"text": "hi"}']) == 0
    obs = json.loads(capsys.readouterr().out)
    assert obs["ok"] is True and obs["content"][0]["text"] == "hi"


def test_cli_call_keeps_session_state(test_tools_url, capsys):
    args = ["call", "counter", "--url", test_tools_url, "--trajectory", "cli-t"]
    main([*args, "--json", '{"add": 2}'])
    main([*args, "--json", '{"add": 3}'])
    outputs = capsys.readouterr().out
    assert '"value": 5' in outputs


def test_cli_failures_exit_nonzero(test_tools_url, capsys):
    assert main(["call", "fail", "--url", test_tools_url]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "runtime_error"
    assert main(["call", "nope", "--url", test_tools_url]) == 1
    assert "unknown tool 'nope'" in capsys.readouterr().err
    assert main(["call", "echo", "--url", test_tools_url, "--json", "{not json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["call", "echo", "--url", test_tools_url, "--json", "[1]"]) == 2


def test_cli_unreachable_gateway(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["tools", "--url", url]) == 1
    assert "cannot reach the gateway" in capsys.readouterr().err
