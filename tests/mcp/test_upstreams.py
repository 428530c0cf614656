"""Upstreams with the generated server: stdio in the jail and out of it, Streamable HTTP,
crashes and restarts, timeouts, errors and images, per-session servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sqlite3
import threading

import pytest
from toolfleet.mcp.settings import McpSettings

from tests.helpers import call, free_port, gateway, new_session, text
from tests.helpers.mcp import mcp_registry, synthetic, synthetic_http


@pytest.mark.parametrize("sandbox", [True, False])
async def test_stdio_upstream_calls_errors_images_and_a_crash(sandbox: bool) -> None:
    registry = mcp_registry(upstreams=[synthetic(sandbox=sandbox)])
    async with gateway(registry) as client:
        echo = await call(client, "syn.echo", {"text": "hi"})
        assert echo["ok"] and text(echo) == "hi"
        total = await call(client, "syn.add", {"a": 2, "b": 3})
        assert total["data"] == {"sum": 5}
        wrong = await call(client, "syn.add", {"a": 2, "b": "three"})
        assert wrong["error"]["kind"] == "invalid_arguments" and "b:" in wrong["error"]["message"]
        missing = await call(client, "syn.add", {"a": 2})
        assert (
            missing["error"]["kind"] == "invalid_arguments" and "b" in missing["error"]["message"]
        )
        failed = await call(client, "syn.fail", {"why": "disk full"})
        assert failed["error"]["kind"] == "runtime_error"
        assert "disk full" in failed["error"]["message"] and not failed["error"]["retryable"]
        image = await call(client, "syn.image", {})
        part = image["content"][0]
        assert part["type"] == "image" and (part["width"], part["height"]) == (2, 3)
        slow = await call(client, "syn.sleep", {"seconds": 5}, timeout_s=0.5)
        assert slow["error"]["kind"] == "timeout"
        # a crash is a retryable diagnostic; the next call runs on a restarted server
        crash = await call(client, "syn.crash", {})
        assert crash["error"]["kind"] == "unavailable" and crash["error"]["retryable"]
        again = await call(client, "syn.echo", {"text": "back"})
        assert again["ok"] and text(again).endswith("back")
        assert "restarted" in again["content"][0]["text"]
        # a server that died between calls is restarted before the next call goes out
        assert (await call(client, "syn.crash", {"after_s": 0.1}))["ok"]
        await asyncio.sleep(1)
        later = await call(client, "syn.echo", {"text": "later"})
        assert later["ok"] and text(later).endswith("later"), later
        assert "restarted" in later["content"][0]["text"]
        status = (await client.get("/readyz")).json()["services"]["mcp"]["upstreams"]["syn"]
        assert status["restarts"] == 2 and status["pool_alive"] == 1


async def test_a_stateful_server_per_session_its_crash_and_a_fork() -> None:
    registry = mcp_registry(upstreams=[synthetic(stateful=True)])
    async with gateway(registry) as client:
        a, b = await new_session(client), await new_session(client)

        async def counted(session: str) -> tuple[int, str]:
            obs = await call(client, "syn.counter", {}, session_id=session)
            assert obs["ok"], obs
            return obs["data"]["calls"], obs["content"][0]["text"]

        assert [(await counted(a))[0] for _ in range(2)] == [1, 2]
        assert (await counted(b))[0] == 1  # a process of its own
        # a crash is retryable, and says the session's next server starts empty
        crash = await call(client, "syn.crash", {}, session_id=a)
        assert crash["error"]["kind"] == "unavailable" and crash["error"]["retryable"]
        assert "starts empty" in crash["error"]["hint"]
        calls, note = await counted(a)
        assert calls == 1 and "had stopped and was restarted" in note
        assert (await counted(b))[0] == 2  # the other session's server lived on
        fork = (await client.post(f"/v1/sessions/{b}/fork")).json()["session_id"]
        calls, note = await counted(fork)
        assert calls == 1 and note.startswith("This session was forked")
        assert (await counted(b))[0] == 3
        status = (await client.get("/readyz")).json()["services"]["mcp"]["upstreams"]["syn"]
        assert status["restarts"] == 1 and status["pool_alive"] == 0
        for session in (a, b, fork):
            assert (await client.delete(f"/v1/sessions/{session}")).status_code == 200


async def test_the_jail_has_no_network_no_root_and_a_private_tmp() -> None:
    registry = mcp_registry(upstreams=[synthetic(), synthetic("other")])
    async with gateway(registry) as client:
        seen = json.loads(text(await call(client, "syn.env", {})))
        other = json.loads(text(await call(client, "other.env", {})))
    assert seen["uid"] >= 61000 and seen["uid"] != other["uid"]
    assert seen["pid"] == 1 and seen["home"] == "/tmp"  # a pid namespace of its own
    assert seen["network"] is False
    assert seen["inet_sockets"] is False  # the sandbox's seccomp filter
    assert seen["writable"] == {"/tmp": True, "/usr": False, "/": False}
    # the system's directories and what was shown (the servers, this Python), nothing else
    assert "proc" in seen["root"] and not {"var", "home", "srv", "run"} & set(seen["root"])


async def test_named_loopback_ports_are_reachable_from_the_jail_and_nothing_else() -> None:
    port = free_port()
    listener = socket.socket()
    listener.bind(("127.0.0.1", port))
    listener.listen()

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"hello from the host " + conn.recv(100))

    threading.Thread(target=answer, daemon=True).start()
    probe = (
        f"import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=5); "
        "s.sendall(b'jail'); print(s.recv(100).decode())"
    )
    server = synthetic(loopback_ports=[port])
    registry = mcp_registry(upstreams=[server])
    async with gateway(registry) as client:
        seen = json.loads(text(await call(client, "syn.env", {})))
        assert seen["network"] is False  # the outside stays unreachable
        assert seen["inet_sockets"] is True  # the filter leaves IP sockets to relayed ports
    # the relay itself: a jailed program reaching the host's port
    from toolfleet.box import stdio

    line = stdio.command(
        [__import__("sys").executable, "-c", probe],
        root="/tmp/toolfleet-mcp-root",
        uid=61999,
        show=server["show"],
        ports=[port],
    )
    proc = await asyncio.create_subprocess_exec(*line, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    listener.close()
    assert out.decode().strip() == "hello from the host jail"


async def test_streamable_http_upstream_with_cost_and_the_call_log(tmp_path) -> None:
    with synthetic_http(tools=5) as url:
        upstream = {"name": "remote", "url": url, "pool_size": 2, "cost": 0.5}
        registry = mcp_registry(upstreams=[upstream])
        assert "remote.crm_create_contact" in registry
        log = tmp_path / "calls.sqlite3"
        async with gateway(registry, call_log=True, call_log_path=log) as client:
            obs = await call(
                client, "remote.crm_create_contact", {"name": "Ann"}, trajectory_id="t"
            )
            assert obs["ok"] and json.loads(text(obs))["arguments"] == {"name": "Ann"}
            many = await asyncio.gather(
                *(call(client, "remote.add", {"a": i, "b": 1}) for i in range(20))
            )
            assert [o["data"]["sum"] for o in many] == [i + 1 for i in range(20)]
            usage = (await client.get("/v1/trajectories/t/usage")).json()
            assert usage["total"]["cost"] == 0.5
        with sqlite3.connect(log) as db:
            rows = db.execute(
                "SELECT tool, ok, arguments FROM toolfleet_calls WHERE trajectory_id = 't'"
            ).fetchall()
        assert rows == [("remote.crm_create_contact", 1, '{"name":"Ann"}')]


async def test_stateful_http_upstream_gets_an_mcp_session_per_toolfleet_session() -> None:
    with synthetic_http() as url:
        registry = mcp_registry(upstreams=[{"name": "r", "url": url, "stateful": True}])
        async with gateway(registry) as client:
            a, b = await new_session(client), await new_session(client)
            for _ in range(3):
                await call(client, "r.echo", {"text": "x"}, session_id=a)
            counted = await call(client, "r.counter", {}, session_id=b)
            assert counted["ok"]


async def test_an_http_upstream_that_goes_away_or_restarts() -> None:
    port = free_port()
    with contextlib.ExitStack() as first:
        url = first.enter_context(synthetic_http(port=port))
        upstreams = [{"name": "r", "url": url}, {"name": "s", "url": url, "stateful": True}]
        async with gateway(mcp_registry(upstreams=upstreams)) as client:
            sid = await new_session(client)
            assert (await call(client, "r.echo", {"text": "a"}))["ok"]
            assert (await call(client, "s.echo", {"text": "a"}, session_id=sid))["ok"]
            first.close()  # the server goes away: retryable, said at once
            gone = await call(client, "r.echo", {"text": "b"}, timeout_s=10)
            assert gone["error"]["kind"] == "unavailable" and gone["error"]["retryable"]
            with synthetic_http(port=port):  # back: the next call reconnects
                back = await call(client, "r.echo", {"text": "c"})
                assert back["ok"] and text(back).endswith("c"), back
            with synthetic_http(port=port):
                # restarted between two calls, it answers 404 to the old MCP session: a
                # stateless call is sent again on a new session, unseen by the model ...
                again = await call(client, "r.echo", {"text": "d"})
                assert again["ok"] and text(again).endswith("d"), again
                # ... a stateful one is told its server's state is gone
                lost = await call(client, "s.echo", {"text": "d"}, session_id=sid)
                assert lost["error"]["kind"] == "unavailable" and lost["error"]["retryable"]
                assert "404" in lost["error"]["message"]
                fresh = await call(client, "s.echo", {"text": "e"}, session_id=sid)
                assert fresh["ok"] and "was restarted" in fresh["content"][0]["text"]


async def test_a_separator_that_openai_function_names_accept() -> None:
    registry = mcp_registry(upstreams=[synthetic(tools=5, sandbox=False)], separator="__")
    async with gateway(registry) as client:
        listed = (await client.get("/v1/tools", params={"format": "openai"})).json()
        names = [f["function"]["name"] for f in listed]
        assert "syn__crm_create_contact" in names
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", n) for n in names), names
        echo = await call(client, "syn__echo", {"text": "hi"})
        assert echo["ok"] and text(echo) == "hi"


def test_bad_configuration_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="either command"):
        McpSettings(upstreams=[{"name": "x"}])
    with pytest.raises(ValueError, match="names used twice"):
        McpSettings(upstreams=[{"name": "x", "url": "http://a"}, {"name": "x", "url": "http://b"}])
    with pytest.raises(ValueError, match="prefixes tool names"):
        McpSettings(upstreams=[{"name": "a.b", "url": "http://a"}])
    with pytest.raises(RuntimeError, match=r"upstream 'nothing'.*could not be started"):
        mcp_registry(upstreams=[{"name": "nothing", "command": "/no/such/server"}])
