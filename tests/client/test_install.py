"""The light client installs into a trainer's environment on its own: ``pip install
./clients/python`` and the built wheel, each into a fresh virtualenv made with ``python3 -m
venv`` and pip (as a trainer would; dependencies from the package index), bring httpx and
pydantic and none of the services' libraries, ship ``py.typed``, and call a real gateway.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PYTHON, ROOT, free_port, wait_healthy

# What the services need and a trainer's environment must not get from the client.
HEAVY = {"toolfleet-core", "redis", "sqlalchemy", "psycopg", "prometheus-client", "fastapi"}

# Run by the venv's interpreter: a session, a call that keeps state, the typed observation.
PROBE = """
import json, sys
import toolfleet.protocol
from toolfleet.client import ToolfleetClient, __version__
from toolfleet.protocol import Observation

with ToolfleetClient(sys.argv[1]) as client:
    names = sorted(spec.name for spec in client.tools())
    with client.session() as session:
        session.call("counter", {})
        obs = session.call("counter", {})
assert isinstance(obs, Observation), type(obs)
print(json.dumps({"tools": names, "value": obs.content[0].data["value"], "version": __version__,
                  "protocol": toolfleet.protocol.__file__}))
"""


def _run(cmd: list[str], timeout_s: float = 600, **kwargs: object) -> str:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _venv(path: Path) -> Path:
    """A fresh virtualenv made as a trainer would (the system's python3, its pip)."""
    python3 = shutil.which("python3") or sys.executable
    _run([python3, "-m", "venv", str(path)])
    return path / "bin" / "python"


def _installed(python: Path) -> set[str]:
    out = _run([str(python), "-m", "pip", "list", "--format", "json"])
    return {p["name"].lower().replace("_", "-") for p in json.loads(out)}


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """A gateway process serving the test tools."""
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "--factory", "tests.helpers.tools:make_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout_s=90)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _check(python: Path, url: str, tmp_path: Path) -> None:
    installed = _installed(python)
    assert {"toolfleet-client", "httpx", "pydantic"} <= installed
    assert not installed & HEAVY, installed & HEAVY
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    )
    assert (site / "toolfleet/client/py.typed").is_file()
    assert (site / "toolfleet/protocol/py.typed").is_file()
    # run outside the repository, so nothing of the workspace can be imported by accident
    out = json.loads(_run([str(python), "-c", PROBE, url], cwd=tmp_path).strip())
    assert out["tools"] and "counter" in out["tools"]
    assert out["value"] == 2  # the session kept its state between the calls
    assert out["protocol"].startswith(str(site))
    # the command line: what needs only the client works, what needs the services says so
    toolfleet = python.parent / "toolfleet"
    assert _run([str(toolfleet), "version"]).strip() == out["version"]
    assert "counter" in _run([str(toolfleet), "tools", "--url", url])
    served = subprocess.run(
        [str(toolfleet), "serve"], capture_output=True, text=True, timeout=60, check=False
    )
    assert served.returncode == 2
    assert "needs toolfleet-gateway" in served.stderr


def test_pip_install_from_the_path(tmp_path: Path, gateway_url: str) -> None:
    python = _venv(tmp_path / "venv")
    _run([str(python), "-m", "pip", "install", "--quiet", str(ROOT / "clients/python")])
    _check(python, gateway_url, tmp_path)


def test_pip_install_the_built_wheel(tmp_path: Path, gateway_url: str) -> None:
    python = _venv(tmp_path / "venv")
    dist = tmp_path / "dist"  # built as the README says, with the venv's own pip
    clients = str(ROOT / "clients/python")
    _run([str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), clients])
    (wheel,) = dist.glob("toolfleet_client-*.whl")
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    _check(python, gateway_url, tmp_path)
