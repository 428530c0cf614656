"""The Python client against real gateway processes: sessions, forks, batches, files, usage,
timeouts, and what is (and is not) retried."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError
from toolfleet.client import (
    AsyncToolfleetClient,
    GatewayError,
    RetryEvent,
    RetryPolicy,
    ToolfleetClient,
)
from toolfleet.client.adapters import formats
from toolfleet.core.protocol import ErrorKind, Observation, SessionInfo, ToolCall, ToolSpec

from tests.helpers import PYTHON, ROOT, free_port, wait_healthy

FAST = RetryPolicy(backoff_s=0.01, max_backoff_s=0.05)


class Gateway:
    """A gateway process being started."""

    def __init__(self, cmd: list[str], port: int, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def ready(self) -> str:
        wait_healthy(self.url, self.proc, timeout_s=90)
        return self.url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _test_tools(**env: str) -> Gateway:
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "--factory", "tests.helpers.tools:make_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return Gateway(cmd, port, env)


def _sandbox() -> Gateway:
    port = free_port()
    cmd = [PYTHON, "-m", "toolfleet.client.cli", "serve", "--port", str(port)]
    return Gateway(cmd, port, {"TOOLFLEET_SERVICES": '["sandbox"]'})


@pytest.fixture(scope="module")
def gateways() -> Iterator[dict[str, Gateway]]:
    """The gateway processes of this module, started together (they start in parallel):

    - ``tools``: the test tools (echo, sleep, fail, counter ...);
    - ``tight``: the same, running one call at a time (429 with Retry-After: 1 beyond);
    - ``sandbox``: ``toolfleet serve`` with the code sandbox (python, bash, session files).
    """
    started = {
        "tools": _test_tools(),
        "tight": _test_tools(TOOLFLEET_MAX_IN_FLIGHT="1", TOOLFLEET_RETRY_AFTER_S="1"),
        "sandbox": _sandbox(),
    }
    try:
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


@pytest.fixture(scope="module")
def url(gateways: dict[str, Gateway]) -> str:
    return gateways["tools"].ready()


@pytest.fixture(scope="module")
def tight_url(gateways: dict[str, Gateway]) -> str:
    return gateways["tight"].ready()


@pytest.fixture(scope="module")
def sandbox_url(gateways: dict[str, Gateway]) -> str:
    return gateways["sandbox"].ready()


@pytest.fixture
def client(url: str) -> Iterator[ToolfleetClient]:
    with ToolfleetClient(url, retry=FAST) as c:
        yield c


def counter(obs: Observation) -> int:
    return obs.content[0].data["value"]


# --------------------------------------------------------------------------- tools and calls


def test_tools_health_and_openai_specs(client: ToolfleetClient):
    assert client.health()
    assert client.wait_ready(timeout_s=5)["status"] == "ready"
    specs = client.tools()
    assert all(isinstance(s, ToolSpec) for s in specs)
    echo = next(s for s in specs if s.name == "echo")
    assert echo.input_schema["required"] == ["text"]
    openai = client.openai_tools()
    entry = next(e for e in openai if e["function"]["name"] == "echo")
    assert entry["type"] == "function"
    assert entry["function"]["parameters"] == echo.input_schema


def test_call_results_failures_and_errors(client: ToolfleetClient):
    obs = client.call("echo", {"text": "hi", "times": 2})
    assert isinstance(obs, Observation) and obs.ok
    assert obs.content[0].text == "hihi" and obs.data == {"length": 2}
    # a tool's failure is an observation, not an exception
    failed = client.call("fail")
    assert not failed.ok and failed.error.kind == ErrorKind.runtime_error
    assert failed.error.hint == "check the divisor"
    bad_args = client.call("echo", {"times": 99})
    assert bad_args.error.kind == ErrorKind.invalid_arguments
    # what the trainer must fix is a GatewayError
    with pytest.raises(GatewayError) as info:
        client.call("nope")
    assert info.value.status_code == 404 and info.value.code == "unknown_tool"
    assert "echo" in info.value.detail["available"]
    assert str(info.value) == "HTTP 404: unknown tool 'nope'; did you mean 'noop'?"
    with pytest.raises(GatewayError) as info:
        client.call("echo", {"text": "x"}, session_id="s-missing")
    assert info.value.status_code == 404 and info.value.code == "session_not_found"
    # a malformed option never leaves the client
    with pytest.raises(ValidationError):
        client.call("echo", {"text": "x"}, timeout_s=-1)


def test_batch_keeps_order_and_isolates_failures(client: ToolfleetClient):
    observations = client.batch(
        [
            ToolCall(tool="echo", arguments={"text": "a"}),
            {"tool": "fail"},
            {"tool": "nope"},
            {"tool": "echo", "arguments": {"text": "b"}},
        ]
    )
    assert [o.tool for o in observations] == ["echo", "fail", "nope", "echo"]
    assert [o.ok for o in observations] == [True, False, False, True]
    assert observations[2].error.kind == ErrorKind.not_found
    assert observations[3].content[0].text == "b"
    assert client.batch([]) == []


def test_session_context_manager_keeps_state_and_ends(client: ToolfleetClient):
    with client.session(metadata={"task": "gsm8k-1"}, ttl_s=60) as session:
        assert isinstance(session.info, SessionInfo)
        assert session.info.metadata == {"task": "gsm8k-1"}
        assert counter(session.call("counter", {"add": 2})) == 2
        assert counter(session.call("counter", {"add": 3})) == 5
        observations = session.batch([{"tool": "counter", "arguments": {"add": 1}}] * 2)
        assert sorted(counter(o) for o in observations) == [6, 7]
        assert all(o.session_id == session.id for o in observations)
        assert session.describe().session_id == session.id
        sid = session.id
    assert session.closed
    with pytest.raises(GatewayError) as info:
        client.get_session(sid)
    assert info.value.status_code == 404
    assert session.close() is None  # ending twice is harmless


def test_session_ends_even_when_the_block_fails(client: ToolfleetClient):
    with pytest.raises(RuntimeError, match="boom"), client.session() as session:
        session.call("counter")
        raise RuntimeError("boom")
    with pytest.raises(GatewayError):
        client.get_session(session.id)


def test_fork_copies_state_and_branches_diverge(client: ToolfleetClient):
    with client.session() as parent:
        parent.call("counter", {"add": 5})
        with parent.fork(metadata={"branch": 1}) as child:
            assert child.info.parent_id == parent.id
            assert child.info.metadata == {"branch": 1}
            assert counter(child.call("counter", {"add": 10})) == 15
            with child.fork() as grandchild:
                assert counter(grandchild.call("counter", {"add": 100})) == 115
            assert counter(child.call("counter", {"add": 0})) == 15
        assert counter(parent.call("counter", {"add": 1})) == 6
        with pytest.raises(GatewayError):
            client.get_session(child.id)


def test_trajectory_usage_and_release(client: ToolfleetClient):
    with client.trajectory("traj-usage") as traj:
        assert traj.usage().total.calls == 0  # nothing booked yet
        traj.call("echo", {"text": "a"})
        traj.batch([{"tool": "echo", "arguments": {"text": "b"}}, {"tool": "fail"}])
        assert counter(traj.call("counter", {"add": 4})) == 4
        assert counter(traj.call("counter", {"add": 4})) == 8  # one session per trajectory
        usage = traj.usage()
        assert client.usage("traj-usage") == usage
        assert usage.tools["echo"].calls == 2 and usage.tools["echo"].cost == 2.0
        assert usage.total.calls == 5 and usage.total.errors == 1
    assert traj.final_usage.total.calls == 5
    with pytest.raises(GatewayError) as info:
        client.usage("traj-usage")
    assert info.value.status_code == 404
    # a trajectory whose session was opened explicitly
    with client.trajectory("traj-2") as traj, traj.session() as session:
        assert session.info.trajectory_id == "traj-2"
        session.call("echo", {"text": "x"})
        assert traj.usage().total.calls == 1


def test_timeouts(url: str):
    # the tool's own limit: a timeout observation
    with ToolfleetClient(url) as client:
        obs = client.call("sleep", {"seconds": 5}, timeout_s=0.2)
    assert obs.error.kind == ErrorKind.timeout
    # the client's read timeout: an httpx timeout, not retried
    with ToolfleetClient(url, timeout_s=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.call("sleep", {"seconds": 1})
    # a call given a longer limit of its own waits for it
    with ToolfleetClient(url, timeout_s=0.2) as client:
        assert client.call("sleep", {"seconds": 0.5}, timeout_s=2).ok


# --------------------------------------------------------------------------- files (sandbox)


def test_files_upload_list_download_and_fork(sandbox_url: str):
    with ToolfleetClient(sandbox_url) as client, client.session() as session:
        info = session.upload("data/train.csv", "a,b\n1,2\n")
        assert (info.path, info.size) == ("data/train.csv", 8)
        session.upload("blob.bin", bytes(range(256)))
        assert sorted(session.files().paths()) == ["blob.bin", "data/train.csv"]
        assert session.download("blob.bin") == bytes(range(256))
        obs = session.call("python", {"code": "open('data/train.csv').read().splitlines()"})
        assert obs.content[0].text == "['a,b', '1,2']"
        session.call("python", {"code": "open('made.txt', 'w').write('by the model')"})
        assert session.download("made.txt") == b"by the model"
        with session.fork() as branch:
            assert branch.download("data/train.csv") == b"a,b\n1,2\n"
            branch.upload("data/train.csv", "changed")
        assert session.download("data/train.csv") == b"a,b\n1,2\n"
        with pytest.raises(GatewayError) as info:
            session.download("missing.txt")
        assert info.value.status_code == 404
        with pytest.raises(GatewayError) as info:
            session.download("../../etc/passwd")
        assert info.value.status_code in (403, 404)


def test_agent_loop_with_the_code_sandbox(sandbox_url: str):
    """A scripted two-turn ToRL trajectory: parse → call → render → next turn."""
    fmt = formats.torl()
    turns = [
        "Let me define it.\n```python\nimport math\nx = math.factorial(10)\nprint(x)\n```",
        "Now half of it.\n```python\nprint(x // 2)\n```",
    ]
    context = "Compute 10! and half of it.\n"
    with ToolfleetClient(sandbox_url) as client, client.trajectory("torl-1") as traj:
        for turn in turns:
            parsed = fmt.parse(turn)
            observations = traj.batch(parsed.tool_calls())
            context += turn + fmt.render(observations, turn)
    assert "```output\n3628800\n```" in context
    assert "```output\n1814400\n```" in context
    assert traj.final_usage.tools["python"].calls == 2


async def test_example_agent_loop_runs(sandbox_url: str, capsys, monkeypatch):
    """examples/agent_loop.py (docs/agent-loop.md) against a real gateway: a Hermes rollout
    tree (fork after the first turn, a malformed call recovered from) and ToRL rollouts."""
    path = ROOT / "examples" / "agent_loop.py"
    spec = importlib.util.spec_from_file_location("agent_loop", path)
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "agent_loop", example)
    spec.loader.exec_module(example)
    assert await example.main(["--url", sandbox_url, "--branches", "2", "--group", "ex"]) == 0
    out = capsys.readouterr().out
    assert "<tool_response>\n1229\n</tool_response>" in out
    assert "not valid JSON" in out and "ex-b1: answer=1229 reward=0.95" in out
    argv = ["--url", sandbox_url, "--format", "torl", "--rollouts", "2", "--quiet"]
    assert await example.main([*argv, "--group", "ex-torl"]) == 0
    out = capsys.readouterr().out
    assert "ex-torl-1: answer=1229" in out and "NameError" in out


# --------------------------------------------------------------------------- retries


def _hold_slot(url: str, seconds: float) -> threading.Thread:
    """Occupy the only in-flight slot of ``url``'s gateway with a sleep call."""

    def sleep() -> None:
        with ToolfleetClient(url, retry=RetryPolicy.none()) as c:
            c.call("sleep", {"seconds": seconds})

    thread = threading.Thread(target=sleep)
    thread.start()
    with ToolfleetClient(url) as probe:
        deadline = time.monotonic() + 5
        while probe.readiness()["in_flight"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    return thread


def test_429_is_retried_after_retry_after_and_bounded(tight_url: str):
    holder = _hold_slot(tight_url, 2.5)
    events: list[RetryEvent] = []
    # bounded: two attempts, both refused
    start = time.monotonic()
    policy = RetryPolicy(max_attempts=2, backoff_s=0.01, on_retry=events.append)
    with ToolfleetClient(tight_url, retry=policy) as c, pytest.raises(GatewayError) as info:
        c.call("echo", {"text": "x"})
    assert info.value.status_code == 429 and info.value.retry_after_s == 1.0
    assert [e.reason for e in events] == ["status"]
    assert events[0].status_code == 429 and events[0].delay_s >= 1.0  # Retry-After respected
    assert time.monotonic() - start >= 1.0
    # enough attempts: the call goes through once the slot frees
    events.clear()
    policy = RetryPolicy(max_attempts=10, backoff_s=0.01, on_retry=events.append)
    with ToolfleetClient(tight_url, retry=policy) as c:
        obs = c.call("echo", {"text": "through"})
    assert obs.ok and obs.content[0].text == "through"
    assert events and all(e.status_code == 429 and e.delay_s >= 1.0 for e in events)
    holder.join()
    # no policy: the first 429 is raised at once
    holder = _hold_slot(tight_url, 0.5)
    with ToolfleetClient(tight_url, retry=RetryPolicy.none()) as c, pytest.raises(GatewayError):
        c.call("echo", {"text": "x"})
    holder.join()


async def test_async_client_retries_429_too(tight_url: str):
    holder = await asyncio.to_thread(_hold_slot, tight_url, 1.2)
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=5, backoff_s=0.01, on_retry=events.append)
    async with AsyncToolfleetClient(tight_url, retry=policy) as c:
        obs = await c.call("echo", {"text": "async"})
    assert obs.ok and events and events[0].delay_s >= 1.0
    await asyncio.to_thread(holder.join)


def test_retryable_diagnostics_are_retried_others_are_not(url: str):
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=3, backoff_s=0.01, on_retry=events.append)
    with ToolfleetClient(url, retry=policy) as client, client.trajectory("retry-diag") as traj:
        # a crash of the tool is retryable: sent max_attempts times in all
        obs = traj.call("fail", {"how": "crash"})
        assert obs.error.kind == ErrorKind.internal and obs.error.retryable
        assert [(e.reason, e.kinds) for e in events] == [("diagnostic", ("internal",))] * 2
        assert traj.usage().tools["fail"].calls == 3
        # an ordinary failure is the model's: sent once
        events.clear()
        assert traj.call("fail").error.kind == ErrorKind.runtime_error
        assert events == [] and traj.usage().tools["fail"].calls == 4
        # with an idempotency key the retries run too: the gateway forgets retryable failures
        traj.call("fail", {"how": "crash"}, idempotency_key="k-1")
        assert traj.usage().tools["fail"].calls == 7
        # a key whose call succeeded is remembered: sending it again runs nothing
        traj.call("echo", {"text": "x"}, idempotency_key="k-2")
        traj.call("echo", {"text": "x"}, idempotency_key="k-2")
        assert traj.usage().tools["echo"].calls == 1
        # in a batch only the retryable calls are sent again, merged back in place
        events.clear()
        observations = traj.batch(
            [
                {"tool": "echo", "arguments": {"text": "once"}},
                {"tool": "fail", "arguments": {"how": "crash"}},
            ]
        )
        assert [o.tool for o in observations] == ["echo", "fail"]
        assert observations[0].ok and observations[1].error.retryable
        usage = traj.usage()
        assert usage.tools["echo"].calls == 2 and usage.tools["fail"].calls == 10
        assert len(events) == 2
        # 4xx is never retried
        events.clear()
        with pytest.raises(GatewayError):
            client.call("nope")
        assert events == []
    # retries of diagnostics can be turned off
    off = RetryPolicy(retry_diagnostics=False)
    with ToolfleetClient(url, retry=off) as client, client.trajectory("retry-off") as traj:
        traj.call("fail", {"how": "crash"})
        assert traj.usage().total.calls == 1


def test_503_is_retried_with_retry_after_http_date():
    """A 503 (what a distributed gateway answers when a session's worker is unreachable),
    with its Retry-After as an HTTP date; then the answer."""
    answers = [
        httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, json={}),
        httpx.Response(503, json={"error": {"code": "unavailable", "message": "later"}}),
        httpx.Response(201, json={"session_id": "s-1", "created_at": "2026-01-01T00:00:00Z",
                                  "expires_at": "2026-01-01T00:10:00Z", "ttl_s": 600}),
    ]  # fmt: skip
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[len(sent) - 1]

    events: list[RetryEvent] = []
    policy = RetryPolicy(backoff_s=0.01, on_retry=events.append)
    transport = httpx.MockTransport(handler)
    with ToolfleetClient("http://gw", retry=policy, transport=transport) as client:
        assert client.create_session().session_id == "s-1"
    assert len(sent) == 3 and [e.status_code for e in events] == [503, 503]
    assert events[0].retry_after_s == 0.0  # a date in the past: no wait beyond the backoff


def test_retry_after_beyond_the_cap_is_raised_not_waited():
    transport = httpx.MockTransport(
        lambda r: httpx.Response(429, headers={"Retry-After": "120"}, json={})
    )
    start = time.monotonic()
    with (
        ToolfleetClient("http://gw", transport=transport) as client,
        pytest.raises(GatewayError) as info,
    ):
        client.tools()
    assert info.value.retry_after_s == 120.0 and time.monotonic() - start < 1


# --------------------------------------------------------------------------- async


async def test_async_client_same_api(url: str):
    async with AsyncToolfleetClient(url, retry=FAST) as client:
        assert await client.health()
        assert "echo" in {s.name for s in await client.tools()}
        async with client.session() as session:
            await session.call("counter", {"add": 3})
            async with await session.fork() as child:
                assert counter(await child.call("counter", {"add": 1})) == 4
            results = await asyncio.gather(
                *(session.call("counter", {"add": 1}) for _ in range(10))
            )
            assert sorted(counter(o) for o in results) == list(range(4, 14))
            observations = await session.batch([{"tool": "echo", "arguments": {"text": "z"}}])
            assert observations[0].content[0].text == "z"
        with pytest.raises(GatewayError):
            await client.get_session(session.id)
        async with client.trajectory("async-traj") as traj:
            await traj.call("echo", {"text": "x"})
            assert (await traj.usage()).total.calls == 1
        assert traj.final_usage.total.cost == 1.0
        with pytest.raises(GatewayError) as info:
            await client.call("nope")
        assert info.value.status_code == 404
