"""Unknown tool arguments are a diagnostic naming them, never dropped (issue 14, item 6).

Before: ``{"code": ..., "timeout_s": 1}`` as *arguments* of the python tool ran with the
default 30 s timeout and no word to the model. Now it is ``invalid_arguments`` naming
``timeout_s`` and saying it is a call option that goes beside ``arguments``; every tool's
schema says ``additionalProperties: false``."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import pytest_asyncio
from toolfleet.core import Tool
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for as sandbox_tools
from toolfleet.sandbox.settings import SandboxSettings
from toolfleet.vision import tools_for as vision_tools
from toolfleet.vision.settings import VisionSettings

from tests.helpers import call, gateway, new_session
from tests.helpers.sandbox import run
from tests.helpers.tools import test_registry

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE_MODULES = [
    "toolfleet.sandbox.python",
    "toolfleet.sandbox.bash",
    "toolfleet.sandbox.run_program",
    "toolfleet.sandbox.workspace",
    "toolfleet.sandbox.judge",
    "toolfleet.search.indexed",
    "toolfleet.search.web",
    "toolfleet.sql.query",
    "toolfleet.sql.describe",
    "toolfleet.sql.uploads",
    "toolfleet.vision.crop",
    "toolfleet.vision.transforms",
    "toolfleet.vision.annotate",
    "toolfleet.vision.video",
    "toolfleet.vision.media",
]


def every_tool_class() -> list[type[Tool]]:
    for name in SERVICE_MODULES:
        importlib.import_module(name)
    found, todo = [], list(Tool.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "Arguments" in cls.__dict__ and cls.__module__.startswith("toolfleet."):
            found.append(cls)
    return found


async def test_every_tool_schema_is_closed() -> None:
    classes = every_tool_class()
    names = {cls.name for cls in classes}
    assert {"python", "bash", "workspace", "search", "web_search", "sql", "image_crop"} <= names
    for cls in classes:
        schema = cls.Arguments.model_json_schema()
        objects = [schema, *schema.get("$defs", {}).values()]
        for sub in objects:
            if "properties" in sub:
                assert sub.get("additionalProperties") is False, (cls.name, sub.get("title"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    sandbox = sandbox_tools(
        SandboxSettings(pool_size=1, memory_mb=256, disk_mb=64, file_mb=16, processes=32)
    )
    registry = ToolRegistry([*test_registry(), *sandbox, *vision_tools(VisionSettings())])
    async with gateway(registry) as c:
        yield c


async def test_timeout_among_the_arguments_is_refused_and_told_where_it_goes(client) -> None:
    sid = await new_session(client)
    code = "import time\ntime.sleep(3)\nprint('ran')"
    obs = await call(client, "python", {"code": code, "timeout_s": 1}, session_id=sid)
    assert obs["ok"] is False
    error = obs["error"]
    assert error["kind"] == "invalid_arguments"
    assert error["message"] == "unknown argument 'timeout_s' for the python tool"
    assert "timeout_s is a call option" in error["hint"]
    assert 'beside "arguments"' in error["hint"]
    assert "takes: code, stdin" in error["hint"]
    assert obs["data"] is None  # it never ran
    sent_right = await call(client, "python", {"code": code}, session_id=sid, timeout_s=1)
    assert sent_right["error"]["kind"] == "timeout"  # the envelope's timeout_s is honoured
    obs = await run(client, "print(6 * 7)", session_id=sid)
    assert obs["ok"] and obs["data"]["stdout"] == "42\n"


async def test_unknown_keys_are_named_with_what_the_tool_takes(client) -> None:
    obs = await call(client, "echo", {"text": "x", "colour": "red", "session_id": "s"})
    error = obs["error"]
    assert error["message"] == "unknown arguments 'colour', 'session_id' for the echo tool"
    assert "session_id is a call option" in error["hint"]
    assert "takes: text, times" in error["hint"]
    mixed = await call(client, "echo", {"times": 99, "extra": 1})
    assert mixed["error"]["message"].startswith("unknown argument 'extra' for the echo tool")
    assert "text: Field required" in mixed["error"]["message"]
    assert (await call(client, "echo", {"text": "ok"}))["content"][0]["text"] == "ok"


async def test_nested_unknown_keys_are_named_by_path(client) -> None:
    boxes = [{"bbox_2d": [0, 0, 1, 1], "label": "cat", "colour": "red"}]
    obs = await call(client, "image_draw_boxes", {"image": 1, "boxes": boxes})
    assert obs["error"]["kind"] == "invalid_arguments"
    assert "'boxes.0.colour'" in obs["error"]["message"]


async def test_batch_answers_each_call(client) -> None:
    calls = [
        {"tool": "echo", "arguments": {"text": "a", "timeout_s": 1}},
        {"tool": "echo", "arguments": {"text": "b"}},
    ]
    r = await client.post("/v1/calls", json={"calls": calls})
    first, second = r.json()["observations"]
    assert first["error"]["kind"] == "invalid_arguments" and "timeout_s" in first["error"]["hint"]
    assert second["ok"] and second["content"][0]["text"] == "b"


async def test_mcp_refuses_unknown_arguments_but_takes_its_options_object(client) -> None:
    headers = {"Accept": "application/json, text/event-stream"}

    async def mcp_call(arguments: dict[str, Any]) -> dict:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": arguments},
        }
        r = await client.post("/mcp", json=body, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["result"]

    refused = await mcp_call({"text": "x", "timeout_s": 1})
    assert refused["isError"] is True
    assert "unknown argument 'timeout_s' for the echo tool" in refused["content"][0]["text"]
    assert "timeout_s is a call option" in refused["content"][0]["text"]
    taken = await mcp_call({"text": "x", "_toolfleet": {"timeout_s": 5}})
    assert taken["isError"] is False and taken["content"][0]["text"] == "x"


async def test_schemas_served_say_so(client) -> None:
    tools = (await client.get("/v1/tools")).json()["tools"]
    for spec in tools:
        assert spec["input_schema"].get("additionalProperties") is False, spec["name"]
    openai = (await client.get("/v1/tools?format=openai")).json()
    assert all(f["function"]["parameters"]["additionalProperties"] is False for f in openai)
