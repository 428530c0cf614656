"""Drop-in routes for trainers written against other tool servers, with requests shaped as
those projects' own clients send them, against the real sandbox:

- SandboxFusion ``POST /run_code`` (as verl's sandbox_fusion utilities and the
  ``sandbox_fusion`` SDK send it: code, language, compile/run timeouts, memory_limit_MB,
  stdin, files as base64, fetch_files).

verl-tool's ``POST /get_observation`` is tested in tests/compat/test_verl_tool.py."""

from __future__ import annotations

import base64

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    settings = SandboxSettings(pool_size=2, light_pool_size=2, memory_mb=256, uid_base=240_000)
    async with gateway(ToolRegistry(tools_for(settings))) as c:
        yield c


def sandbox_fusion_request(code: str, **overrides: object) -> dict:
    """The body verl's call_sandbox_api sends."""
    return {
        "code": code,
        "stdin": None,
        "compile_timeout": 10,
        "run_timeout": 10,
        "memory_limit_MB": 1024,
        "language": "python",
        "files": {},
        "fetch_files": [],
        **overrides,
    }


async def test_run_code_success_with_stdin_files_and_fetch(client) -> None:
    code = (
        "import sys\n"
        "name = sys.stdin.readline().strip()\n"
        "print('hello', name, open('data/in.txt').read())\n"
        "open('out.txt', 'w').write(name.upper())\n"
    )
    r = await client.post(
        "/run_code",
        json=sandbox_fusion_request(
            code,
            stdin="ada\n",
            files={"data/in.txt": base64.b64encode(b"42").decode()},
            fetch_files=["out.txt", "missing.txt"],
        ),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "status",
        "message",
        "compile_result",
        "run_result",
        "executor_pod_name",
        "files",
    }
    assert body["status"] == "Success"
    run = body["run_result"]
    assert set(run) == {"status", "execution_time", "return_code", "stdout", "stderr"}
    assert run["status"] == "Finished" and run["return_code"] == 0
    assert run["stdout"] == "hello ada 42\n"
    assert base64.b64decode(body["files"]["out.txt"]) == b"ADA"
    assert "missing.txt" not in body["files"]


async def test_run_code_names_the_fields_it_does_not_read(client) -> None:
    """Ignored as SandboxFusion ignores them, but said: a misspelt limit is not silent."""
    read = sandbox_fusion_request("print(1)", memory_limit_MB=128)  # under this cap
    plain = (await client.post("/run_code", json=read)).json()
    assert plain["status"] == "Success" and plain["message"] == ""  # verl's body: all read
    body = {**read, "run_timout": 1, "extra": {"a": 1}}
    answer = (await client.post("/run_code", json=body)).json()
    assert answer["status"] == "Success" and answer["run_result"]["stdout"] == "1\n"
    assert (
        answer["message"] == "fields not read (ignored, as SandboxFusion does): extra, run_timout"
    )


async def test_run_code_failures_in_sandbox_fusion_terms(client) -> None:
    crashed = (await client.post("/run_code", json=sandbox_fusion_request("1/0"))).json()
    assert crashed["status"] == "Failed"
    assert crashed["run_result"]["return_code"] == 1
    assert "ZeroDivisionError" in crashed["run_result"]["stderr"]

    slow = (
        await client.post(
            "/run_code", json=sandbox_fusion_request("while True: pass", run_timeout=1)
        )
    ).json()
    assert slow["status"] == "Failed"
    assert slow["run_result"]["status"] == "TimeLimitExceeded"
    assert slow["run_result"]["return_code"] is None

    hungry = (
        await client.post(
            "/run_code",
            json=sandbox_fusion_request("x = bytearray(400 << 20)", memory_limit_MB=128),
        )
    ).json()
    assert hungry["status"] == "Failed"
    assert "MemoryError" in hungry["run_result"]["stderr"]

    shell = (
        await client.post(
            "/run_code", json=sandbox_fusion_request("echo $((6*7)); exit 2", language="bash")
        )
    ).json()
    assert shell["run_result"]["stdout"] == "42\n" and shell["run_result"]["return_code"] == 2

    # a language of SandboxFusion's that this sandbox does not run: its SandboxError
    other = (
        await client.post("/run_code", json=sandbox_fusion_request("x", language="lean"))
    ).json()
    assert other["status"] == "SandboxError" and "lean" in other["message"]
    # one it does not know at all: its 422
    unknown = await client.post("/run_code", json=sandbox_fusion_request("x", language="cobol"))
    assert unknown.status_code == 422 and "language" in unknown.json()["error"]["message"]
    broken = (
        await client.post("/run_code", json=sandbox_fusion_request("x", language="cpp"))
    ).json()
    assert broken["status"] == "Failed" and broken["compile_result"]["status"] == "Error"
