"""Drop-in routes for trainers written against other tool servers, with requests shaped as
those projects' own clients send them, against the real sandbox:

- SandboxFusion ``POST /run_code`` (as verl's sandbox_fusion utilities and the
  ``sandbox_fusion`` SDK send it: code, language, compile/run timeouts, memory_limit_MB,
  stdin, files as base64, fetch_files);
- verl-tool ``POST /get_observation`` (as verl-tool's agent loop sends it: trajectory_ids,
  actions, finish, is_last_step, and extra_fields)."""

from __future__ import annotations

import base64

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox.interpreters import tools_for
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

    other = (
        await client.post("/run_code", json=sandbox_fusion_request("x", language="cpp"))
    ).json()
    assert other["status"] == "SandboxError" and "cpp" in other["message"]


def verl_tool_request(actions: list[str], ids: list[str], finish: list[bool] | None = None) -> dict:
    """The body verl-tool's agent loop posts to its tool server."""
    return {
        "trajectory_ids": ids,
        "actions": actions,
        "finish": finish or [False] * len(actions),
        "is_last_step": [False] * len(actions),
        "extra_fields": [{} for _ in actions],
    }


async def test_get_observation_runs_python_per_trajectory_and_frames_it(client) -> None:
    first = await client.post(
        "/get_observation",
        json=verl_tool_request(
            [
                "Let me compute.\n<python>x = 6 * 7\nprint(x)</python>",
                "Then:\n```python\nprint(sum(range(4)))\n```",
                "I think the answer is 42.",
            ],
            ["traj-a", "traj-b", "traj-c"],
        ),
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"observations", "dones", "valids"}
    assert body["observations"][0] == "\n<output>\n42\n</output>\n"
    assert body["observations"][1] == "\n```output\n6\n```\n"
    assert body["observations"][2] == {
        "obs": "",
        "invalid_reason": "no valid tool found for action",
    }
    assert body["valids"] == [True, True, False]
    assert body["dones"] == [False, False, False]

    # traj-a's variables persist into its next turn; an error comes back as its traceback
    second = (
        await client.post(
            "/get_observation",
            json=verl_tool_request(["<python>print(x + 1)\n1/0</python>"], ["traj-a"]),
        )
    ).json()
    assert second["observations"][0].startswith("\n<output>\n43\n")
    assert "ZeroDivisionError" in second["observations"][0]

    # finish releases the trajectory: its state is gone afterwards
    done = (
        await client.post(
            "/get_observation", json=verl_tool_request(["", ""], ["traj-a", "never"], [True, True])
        )
    ).json()
    assert done == {"observations": ["", ""], "dones": [True, True], "valids": [True, True]}
    assert (await client.get("/v1/trajectories/traj-a/usage")).status_code == 404
    again = (
        await client.post(
            "/get_observation", json=verl_tool_request(["<python>print(x)</python>"], ["traj-a"])
        )
    ).json()
    assert "NameError" in again["observations"][0]


async def test_get_observation_stdin_and_bad_requests(client) -> None:
    body = verl_tool_request(["<python>print(input()[::-1])</python>"], ["t-in"])
    body["extra_fields"] = [{"stdin": "abc"}]
    obs = (await client.post("/get_observation", json=body)).json()
    assert obs["observations"][0] == "\n<output>\ncba\n</output>\n"
    mismatch = await client.post(
        "/get_observation", json={"trajectory_ids": ["a", "b"], "actions": ["x"]}
    )
    assert mismatch.status_code == 400
    empty = await client.post("/get_observation", json={"trajectory_ids": [], "actions": []})
    assert empty.status_code == 400
