"""The llm tool kind against a stand-in OpenAI-compatible server on 127.0.0.1: the answer, the
tokens and the cost booked in the ledger, and the endpoint's failures as diagnostics."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.helpers import call, free_port, gateway, serve_app, text
from tests.helpers.mcp import mcp_registry

PRICE_IN, PRICE_OUT = 0.001, 0.002


def stand_in() -> tuple[Starlette, list[dict[str, Any]]]:
    """A chat-completions endpoint: answers with the last message reversed; counts a token
    per word; ``fail 503`` in a message answers that status."""
    seen: list[dict[str, Any]] = []

    async def completions(request: Request) -> Response:
        body = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        last = body["messages"][-1]["content"]
        if last.startswith("fail "):
            return Response("overloaded", status_code=int(last.split()[1]))
        if last == "garbage":
            return Response("not json at all", media_type="application/json")
        words = sum(len(m["content"].split()) for m in body["messages"])
        answer = last[::-1]
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": words,
                    "completion_tokens": len(answer.split()),
                    "total_tokens": words + len(answer.split()),
                },
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])]), seen


async def test_model_as_a_tool_with_cost_in_the_ledger(monkeypatch) -> None:
    app, seen = stand_in()
    port = free_port()
    monkeypatch.setenv("PLANNER_KEY", "sk-test")
    model = {
        "name": "planner",
        "url": f"http://127.0.0.1:{port}/v1",
        "model": "tiny-1",
        "price_input": PRICE_IN,
        "price_output": PRICE_OUT,
        "api_key_env": "PLANNER_KEY",
        "system": "be brief",
    }
    with serve_app(app, port):
        async with gateway(mcp_registry(llm=[model])) as client:
            tools = {t["name"]: t for t in (await client.get("/v1/tools")).json()["tools"]}
            assert "prompt" in tools["planner"]["input_schema"]["properties"]
            obs = await call(client, "planner", {"prompt": "one two three"}, trajectory_id="t1")
            assert obs["ok"], obs
            assert text(obs) == "eerht owt eno"
            # 2 system words + 3 prompt words in, 3 words out
            assert obs["data"]["input_tokens"] == 5 and obs["data"]["output_tokens"] == 3
            cost = 5 * PRICE_IN + 3 * PRICE_OUT
            assert abs(obs["usage"]["cost"] - cost) < 1e-12
            assert (obs["usage"]["input_tokens"], obs["usage"]["output_tokens"]) == (5, 3)
            assert seen[-1]["auth"] == "Bearer sk-test"
            assert seen[-1]["body"]["model"] == "tiny-1"
            assert seen[-1]["body"]["messages"][0] == {"role": "system", "content": "be brief"}
            chat = await call(
                client,
                "planner",
                {"messages": [{"role": "user", "content": "a b"}], "max_tokens": 5000},
                trajectory_id="t1",
            )
            assert chat["ok"] and seen[-1]["body"]["max_tokens"] == 1024  # capped
            usage = (await client.get("/v1/trajectories/t1/usage")).json()
            assert usage["tools"]["planner"]["calls"] == 2
            assert abs(usage["total"]["cost"] - cost - chat["usage"]["cost"]) < 1e-12
            # the tokens are booked with the cost: 5 + 4 read, 3 + 2 written
            booked = usage["tools"]["planner"]
            assert (booked["input_tokens"], booked["output_tokens"]) == (9, 5)
            assert (usage["total"]["input_tokens"], usage["total"]["output_tokens"]) == (9, 5)

            busy = await call(client, "planner", {"prompt": "fail 503"})
            assert busy["error"]["kind"] == "unavailable" and busy["error"]["retryable"]
            limited = await call(client, "planner", {"prompt": "fail 429"})
            assert limited["error"]["kind"] == "rate_limited"
            garbage = await call(client, "planner", {"prompt": "garbage"})
            assert garbage["error"]["kind"] == "internal"
            both = await call(client, "planner", {"prompt": "x", "messages": []})
            assert both["error"]["kind"] == "invalid_arguments"
            neither = await call(client, "planner", {})
            assert neither["error"]["kind"] == "invalid_arguments"
    # the endpoint gone: retryable, not a crash
    async with gateway(mcp_registry(llm=[model])) as client:
        gone = await call(client, "planner", {"prompt": "hi"})
        assert gone["error"]["kind"] == "unavailable" and gone["error"]["retryable"]
        assert json.dumps(gone)
