"""Nothing a model or a trainer gets is silent: every failed observation says why in its
text (each fact once), an unknown tool name gets the closest names, tool schemas give each
property a plain type (strict loaders such as verl's), and a web page cannot run tools."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from toolfleet.core.tool import closed_schema, plain_types

from tests.helpers import call, gateway, text


async def test_failed_observations_carry_their_diagnostic_once() -> None:
    async with gateway() as http:
        missing = await call(http, "echo", {})
        assert not missing["ok"] and missing["content"], missing
        said = text(missing)
        assert said.startswith("Error (invalid_arguments): ")
        assert said.count("Field required") == 1
        assert missing["error"]["detail"] == "text: Field required"  # for the trainer
        failed = await call(http, "fail", {})
        assert text(failed) == (
            "Error (runtime_error): division by zero\nline 1\nHint: check the divisor"
        )
        batch = await http.post("/v1/calls", json={"calls": [{"tool": "nope", "arguments": {}}]})
        assert "no tool named 'nope'" in text(batch.json()["observations"][0])


async def test_a_tool_text_that_says_it_is_not_said_again() -> None:
    """The code interpreter's own text is its traceback: it stands as it is over REST, and
    MCP (whose text is all its model sees) adds the hint."""
    from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, Observation, TextPart
    from toolfleet.protocol.diagnostics import with_diagnostic_text

    tb = "Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero\n"
    error = ErrorDiagnostic(
        kind=ErrorKind.runtime_error,
        message="ZeroDivisionError: division by zero",
        detail=tb,
        hint="Read the traceback.",
    )
    obs = Observation.failure("python", "c", error, content=[TextPart(text=tb)])
    assert with_diagnostic_text(obs) == obs
    from toolfleet.gateway.mcp_endpoint import to_result

    assert [c.text for c in to_result(obs).content] == [tb, "Hint: Read the traceback."]


async def test_unknown_tool_names_the_closest() -> None:
    async with gateway() as http:
        r = await http.post("/v1/tools/ehco/call", json={"arguments": {}})
        assert r.status_code == 404
        body = r.json()["error"]
        assert body["closest"] == ["echo"]
        assert "did you mean 'echo'" in body["message"]
        batch = await http.post("/v1/calls", json={"calls": [{"tool": "ehco", "arguments": {}}]})
        assert "Did you mean echo?" in text(batch.json()["observations"][0])


class Nested(BaseModel):
    x: int


class Optionals(BaseModel):
    label: str | None = Field(default=None, description="A label.")
    image: int | str = Field(default=1, description="Index or id.")
    kind: Nested | None = None
    needed: str


def test_schemas_give_every_property_a_plain_type() -> None:
    schema = plain_types(closed_schema(Optionals.model_json_schema()))
    props = schema["properties"]
    assert props["label"] == {"type": "string", "description": "A label.", "title": "Label"}
    assert props["image"]["type"] == "string" and props["image"]["default"] == "1"
    assert props["kind"]["type"] == "object" and "x" in props["kind"]["properties"]
    assert schema["required"] == ["needed"]


def loadable_by_verl(schema: dict[str, Any]) -> bool:
    """What verl's OpenAIFunctionParametersSchema asks of MCP tool schemas: a type string on
    every property, enums of strings."""
    props = schema.get("properties", {})
    return isinstance(schema.get("type"), str) and all(
        isinstance(p.get("type"), str) and all(isinstance(e, str) for e in p.get("enum", []))
        for p in props.values()
    )


async def test_every_served_tool_schema_loads_in_strict_consumers() -> None:
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.core.settings import Settings

    registry = ToolRegistry.discover(Settings())
    specs = [t.spec() for t in registry if not t.hidden]
    assert len(specs) >= 10
    bad = [s.name for s in specs if not loadable_by_verl(s.input_schema)]
    assert bad == []


async def test_cross_site_simple_requests_are_refused() -> None:
    async with gateway() as http:
        page = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        body = '{"arguments": {"text": "pwned"}}'
        r = await http.post("/v1/tools/echo/call", content=body, headers=page)
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "cross_site_request"
        assert len(r.headers["x-request-id"]) == 32
        form = {**page, "Content-Type": "application/x-www-form-urlencoded"}
        assert (await http.post("/v1/sessions", content="a=1", headers=form)).status_code == 403
        # the gateway's own origin (its /docs page), and clients that send no Origin, pass
        own = {"Origin": "http://gateway", "Content-Type": "text/plain"}
        assert (
            await http.post("/v1/tools/echo/call", content=body, headers=own)
        ).status_code == 200
        assert (await http.post("/v1/tools/echo/call", content=body)).status_code == 200
        assert (await http.get("/v1/tools", headers=page)).status_code == 200  # reads pass


async def test_allowed_origins_may_post() -> None:
    async with gateway(mcp_allowed_origins=["https://app.example.org"]) as http:
        page = {"Origin": "https://app.example.org", "Content-Type": "text/plain"}
        r = await http.post(
            "/v1/tools/echo/call", content='{"arguments": {"text": "x"}}', headers=page
        )
        assert r.status_code == 200


async def test_a_trajectorys_session_and_a_reused_key_over_http() -> None:
    """A session opened for a trajectory is the one its calls run in; a key sent again with
    other arguments is a 409 conflict, not the first answer again."""
    async with gateway() as http:
        r = await http.post("/v1/sessions", json={"trajectory_id": "t"})
        sid = r.json()["session_id"]
        await call(http, "counter", {"add": 4}, session_id=sid)
        obs = await call(http, "counter", {"add": 1}, trajectory_id="t")
        assert obs["session_id"] == sid and obs["content"][0]["data"] == {"value": 5}
        first = await call(http, "echo", {"text": "a"}, idempotency_key="k")
        again = await call(http, "echo", {"text": "a"}, idempotency_key="k")
        assert again["call_id"] == first["call_id"]
        other = {"arguments": {"text": "b"}, "idempotency_key": "k"}
        r = await http.post("/v1/tools/echo/call", json=other)
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "idempotency_conflict" and error["idempotency_key"] == "k"
