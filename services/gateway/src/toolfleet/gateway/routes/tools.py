"""``/v1/tools`` and ``/v1/calls``: list tools, call one, call a batch.

The two call routes are the hot path; they are :class:`FastRoute` s (plain Starlette routes,
documented in OpenAPI all the same).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response
from toolfleet.core.protocol import (
    BatchRequest,
    BatchResponse,
    CallRequest,
    Observation,
    ToolSpec,
)
from toolfleet.core.runtime import Runtime
from toolfleet.gateway.auth import Tenant, tenant_of
from toolfleet.gateway.errors import error_response
from toolfleet.gateway.fast_routes import FastRoute, read_body
from toolfleet.gateway.responses import ModelResponse

router = APIRouter(prefix="/v1", tags=["tools"])


def runtime(request: Request) -> Runtime:
    """The app's runtime."""
    return request.app.state.runtime


def openai_function(spec: ToolSpec) -> dict[str, Any]:
    """A tool as an OpenAI function-calling entry."""
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": spec.description,
            "parameters": spec.input_schema,
        },
    }


@router.get("/tools", summary="List tools")
async def list_tools(
    request: Request,
    _: Tenant,
    format: Annotated[Literal["toolfleet", "openai"], Query()] = "toolfleet",
) -> Any:
    """Every tool with its JSON Schema; ``?format=openai`` gives OpenAI function specs."""
    specs = runtime(request).specs()
    if format == "openai":
        return [openai_function(spec) for spec in specs]
    return {"tools": [spec.model_dump() for spec in specs]}


async def call_one(request: Request) -> Response:
    """Run one tool call. A tool's failure is 200 with `ok: false` and a diagnostic.
    An empty body means no arguments."""
    tenant = await tenant_of(request)
    body = await read_body(request, CallRequest, empty=CallRequest())
    obs = await runtime(request).call(tenant, request.path_params["name"], body)
    return ModelResponse(obs)


async def call_batch(request: Request) -> Response:
    """Run calls concurrently; observations come back in request order. A failing call
    never fails the batch."""
    tenant = await tenant_of(request)
    body = await read_body(request, BatchRequest)
    rt = runtime(request)
    if len(body.calls) > rt.settings.max_batch_calls:
        return error_response(
            413,
            "batch_too_large",
            f"a batch holds at most {rt.settings.max_batch_calls} calls, got {len(body.calls)}",
            limit=rt.settings.max_batch_calls,
        )
    observations = await rt.batch(tenant, body.calls)
    return ModelResponse(BatchResponse(observations=observations))


FAST_ROUTES = [
    FastRoute(
        "/v1/tools/{name}/call",
        call_one,
        "Call a tool",
        CallRequest,
        Observation,
        body_required=False,
        operation_id="call_tool",  # the OpenAPI name clients were generated with
    ),
    FastRoute("/v1/calls", call_batch, "Call tools in a batch", BatchRequest, BatchResponse),
]
