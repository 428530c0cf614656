"""Lone surrogates in what a model makes never cost a response (issue 14, item 5).

Before: ``print('\\ud800')`` answered HTTP 500, a batch holding such a call was lost whole,
``GET /v1/sessions/{id}/files`` stayed 500 once a file name was not UTF-8, and the ledger
booked a success the caller never saw. Now every string is made valid (U+FFFD) with a note,
in every transport: REST single and batch, MCP, compat routes, and Redis workers."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import pytest
import pytest_asyncio
from toolfleet.core import Tool, ToolResult
from toolfleet.core.protocol import ErrorKind, JsonPart, TablePart, TextPart
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.settings import Settings
from toolfleet.core.surrogates import ARGUMENTS_NOTE, REPLACED_NOTE, scrub, scrub_text
from toolfleet.core.tool import CallContext, ToolArguments, ToolError
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import gateway, new_session, text
from tests.helpers.cluster import Cluster
from tests.helpers.sandbox import run

pytestmark = pytest.mark.asyncio(loop_scope="module")

BAD = "\ud800"  # a lone high surrogate
FFFD = "\ufffd"


class OddTextArgs(ToolArguments):
    where: Literal["text", "table", "json", "data", "error", "crash"] = "text"


class OddText(Tool[OddTextArgs]):
    """Puts a lone surrogate where ``where`` says (what a buggy or hostile tool could do)."""

    name = "odd_text"
    description = "Returns text holding a lone surrogate."
    Arguments = OddTextArgs
    service = "test"

    async def call(self, args: OddTextArgs, ctx: CallContext) -> ToolResult:
        odd = f"a{BAD}b"
        if args.where == "table":
            return ToolResult(content=[TablePart(columns=[odd], rows=[[odd, 1]], row_count=1)])
        if args.where == "json":
            return ToolResult(content=[JsonPart(data={odd: [odd]})])
        if args.where == "data":
            return ToolResult(content=[TextPart(text="fine")], data={"names": [odd]})
        if args.where == "error":
            raise ToolError(ErrorKind.runtime_error, odd, detail=odd, hint=odd)
        if args.where == "crash":
            raise RuntimeError(odd)
        return ToolResult.text(odd)


def odd_text_tools(settings: Settings | None = None) -> list[Tool]:
    """For a Redis worker (``--tools-from tests.e2e.test_surrogates:odd_text_tools``)."""
    return [OddText()]


SANDBOX = dict(pool_size=1, memory_mb=256, disk_mb=64, file_mb=16, processes=32)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    registry = ToolRegistry([*tools_for(SandboxSettings(**SANDBOX)), OddText()])
    async with gateway(registry) as c:
        yield c


def notes(obs: dict) -> list[str]:
    return [p["text"] for p in obs["content"] if p["type"] == "text" and p["text"] == REPLACED_NOTE]


async def assert_session_works(client: httpx.AsyncClient, sid: str | None = None) -> None:
    obs = await run(client, "print(6 * 7)", **({"session_id": sid} if sid else {}))
    assert obs["ok"] and obs["data"]["stdout"] == "42\n", obs
    assert not notes(obs)


async def test_scrub_replaces_lone_surrogates_and_joins_pairs() -> None:
    assert scrub_text(f"x{BAD}y") == (f"x{FFFD}y", 1)
    assert scrub_text("\udcff\udcfe.txt") == (f"{FFFD}{FFFD}.txt", 2)  # os's undecodable bytes
    assert scrub_text("\ud83d\ude00")[0] == "\U0001f600"  # a pair is the character it encodes
    assert scrub_text("plain é") == ("plain é", 0)
    tree = {"k": [1, "ok"], f"k{BAD}": (BAD, 2.5, None)}
    assert scrub(tree) == ({"k": [1, "ok"], f"k{FFFD}": (FFFD, 2.5, None)}, 2)
    clean = {"a": ["b", 1]}
    assert scrub(clean)[0] is clean  # nothing copied when nothing changed


async def test_print_of_a_lone_surrogate_is_an_observation(client) -> None:
    sid = await new_session(client)
    obs = await run(client, "print('\\ud800')", session_id=sid)  # was: HTTP 500
    assert obs["ok"] is True
    assert obs["data"]["stdout"] == f"{FFFD}\n"
    assert text(obs).startswith(FFFD)
    assert notes(obs) == [REPLACED_NOTE]
    await assert_session_works(client, sid)


async def test_exception_text_and_trailing_value_with_surrogates(client) -> None:
    sid = await new_session(client)
    obs = await run(client, "raise ValueError('bad \\udcff name')", session_id=sid)
    assert obs["ok"] is False and obs["error"]["kind"] == "runtime_error"
    assert f"bad {FFFD} name" in obs["error"]["message"] + (obs["error"]["detail"] or "")
    assert notes(obs) == [REPLACED_NOTE]
    obs = await run(client, "s = '\\ud800' * 3\ns", session_id=sid)
    assert obs["ok"] is True  # the repr escapes it: nothing to replace
    assert not notes(obs)
    await assert_session_works(client, sid)


async def test_files_api_lists_a_name_that_is_not_utf8(client) -> None:
    sid = await new_session(client)
    obs = await run(
        client,
        "open(b'\\xff\\xfe', 'w').write('x')\nopen('ok.txt', 'w').write('fine')",
        session_id=sid,
    )
    assert obs["ok"], obs
    listed = await client.get(f"/v1/sessions/{sid}/files")  # was: 500, for good
    assert listed.status_code == 200, listed.text
    body = listed.json()
    names = [f["path"] for f in body["files"]]
    assert f"{FFFD}{FFFD}" in names and "ok.txt" in names
    assert body["notes"] == [REPLACED_NOTE]
    assert (await client.get(f"/v1/sessions/{sid}/files/ok.txt")).content == b"fine"
    assert (await client.get(f"/v1/sessions/{sid}/files")).status_code == 200  # and again
    listing = await run(client, "import os\nprint(sorted(os.listdir('.')))", session_id=sid)
    assert listing["ok"] and "ok.txt" in listing["data"]["stdout"]


async def test_batch_answers_every_call_and_the_ledger_matches(client) -> None:
    calls = [
        {"tool": "python", "arguments": {"code": "print('\\ud800')"}, "trajectory_id": "sur-1"},
        {"tool": "python", "arguments": {"code": "print(1)"}, "trajectory_id": "sur-1"},
        {"tool": "odd_text", "arguments": {"where": "error"}, "trajectory_id": "sur-1"},
        {"tool": "odd_text", "arguments": {"where": "crash"}, "trajectory_id": "sur-1"},
        {"tool": "odd_text", "arguments": {"where": "table"}, "trajectory_id": "sur-1"},
    ]
    r = await client.post("/v1/calls", json={"calls": calls})  # was: 500, every call lost
    assert r.status_code == 200, r.text
    observations = r.json()["observations"]
    assert [o["ok"] for o in observations] == [True, True, False, False, True]
    assert observations[0]["data"]["stdout"] == f"{FFFD}\n"
    assert observations[1]["data"]["stdout"] == "1\n" and not notes(observations[1])
    assert observations[2]["error"]["message"] == f"a{FFFD}b"
    assert observations[2]["error"]["hint"] == f"a{FFFD}b"
    assert f"a{FFFD}b" in observations[3]["error"]["detail"]
    table = observations[4]["content"][0]
    assert table["columns"] == [f"a{FFFD}b"] and table["rows"] == [[f"a{FFFD}b", 1]]
    assert all(notes(o) == [REPLACED_NOTE] for i, o in enumerate(observations) if i != 1)
    usage = (await client.get("/v1/trajectories/sur-1/usage")).json()
    assert usage["total"]["calls"] == 5 and usage["total"]["errors"] == 2


@pytest.mark.parametrize("where", ["text", "json", "data"])
async def test_every_part_of_an_observation_is_made_valid(client, where: str) -> None:
    r = await client.post("/v1/tools/odd_text/call", json={"arguments": {"where": where}})
    assert r.status_code == 200, r.text
    obs = r.json()
    assert obs["ok"] and notes(obs) == [REPLACED_NOTE]
    assert BAD not in r.text and f"a{FFFD}b" in r.content.decode()


async def test_mcp_result_holds_valid_text(client) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "python", "arguments": {"code": "print('\\ud800', end='')"}},
    }
    r = await client.post("/mcp", json=body, headers=headers)
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["isError"] is False
    texts = [c["text"] for c in result["content"]]
    assert texts == [FFFD, REPLACED_NOTE]
    assert result["structuredContent"]["stdout"] == FFFD


async def test_compat_routes_answer(client) -> None:
    r = await client.post(
        "/get_observation",
        json={"trajectory_ids": ["sur-verl"], "actions": ["<python>print('\\ud800')</python>"]},
    )
    assert r.status_code == 200, r.text
    assert FFFD in r.json()["observations"][0]
    r = await client.post("/run_code", json={"code": "print('\\ud800')", "language": "python"})
    assert r.status_code == 200, r.text  # the program itself fails to encode it: its stderr says
    assert "UnicodeEncodeError" in r.json()["run_result"]["stderr"]


async def test_arguments_holding_lone_surrogates_run_with_a_note(client) -> None:
    # The stdlib JSON decoder of FastAPI routes accepts "\ud800" escapes: the code reaches
    # the runtime holding a real lone surrogate, which could not be carried or logged.
    raw = '{"trajectory_ids": ["sur-arg"], "actions": ["<python>print(\\"x\\ud800\\")</python>"]}'
    r = await client.post(
        "/get_observation", content=raw, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert f"x{FFFD}" in r.json()["observations"][0]
    obs_raw = '{"metadata": {"label": "a\\ud800"}}'
    created = await client.post(
        "/v1/sessions", content=obs_raw, headers={"content-type": "application/json"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["metadata"] == {"label": f"a{FFFD}"}
    sid = created.json()["session_id"]
    assert (await client.get(f"/v1/sessions/{sid}")).status_code == 200
    await assert_session_works(client, sid)
    assert ARGUMENTS_NOTE.startswith("Note: ")


async def test_distributed_worker_answers_with_valid_text() -> None:
    cluster = Cluster()
    try:
        cluster.start_worker("--tools-from", "tests.e2e.test_surrogates:odd_text_tools")
        cluster.wait_workers(1)
        async with cluster.gateway() as client:
            r = await client.post("/v1/tools/odd_text/call", json={"arguments": {}})
            assert r.status_code == 200, r.text  # was: the worker could not send its reply
            assert r.json()["content"][0]["text"] == f"a{FFFD}b"
            calls = [
                {"tool": "odd_text", "arguments": {"where": "error"}},
                {"tool": "echo", "arguments": {"text": "still here"}},
            ]
            r = await client.post("/v1/calls", json={"calls": calls})
            assert r.status_code == 200, r.text
            first, second = r.json()["observations"]
            assert first["error"]["message"] == f"a{FFFD}b"
            assert second["content"][0]["text"] == "still here"
            assert json.dumps(first)  # plain JSON all through
    finally:
        cluster.close()
