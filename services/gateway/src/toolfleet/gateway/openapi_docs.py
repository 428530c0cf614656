"""What the OpenAPI document (and so ``/docs``) shows beyond what FastAPI derives: a request
and a response example for every route, the gateway's real error body for every error status
(422 included: ``invalid_request`` with ``fields``, not FastAPI's ``HTTPValidationError``),
and the raw request body of the upload routes (``PUT`` files and media). The gateway's own
routes have their examples here; a service's routes declare theirs (:func:`examples`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Machine-readable error code."},
                "message": {"type": "string", "description": "What went wrong, for a person."},
                "fields": {
                    "type": "array",
                    "description": "422: each malformed field (path, message, type).",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string"},
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
            },
            "additionalProperties": True,
        }
    },
}

ERROR_EXAMPLES: dict[str, dict[str, Any]] = {
    "401": {"code": "unauthorized", "message": "missing or invalid API key: send "
            "'Authorization: Bearer <key>'"},
    "403": {"code": "cross_site_request", "message": "a cross-site POST from the origin "
            "'https://example.org' with a form or text/plain body is refused"},
    "404": {"code": "session_not_found", "message": "session 's-1' not found (never existed, "
            "ended or expired)", "session_id": "s-1"},
    "413": {"code": "payload_too_large", "message": "request body is larger than the limit of "
            "16777216 bytes", "limit_bytes": 16777216},
    "422": {"code": "invalid_request", "message": "body.arguments: Input should be a valid "
            "dictionary", "fields": [{"path": "body.arguments", "message": "Input should be a "
            "valid dictionary", "type": "dict_type"}]},
    "429": {"code": "overloaded", "message": "too many calls in flight or queued (1024 calls "
            "in flight, limit 1024); retry later", "retry_after_s": 1},
    "503": {"code": "not_ready", "message": "the gateway is starting or stopping"},
}  # fmt: skip

OBSERVATION = {
    "ok": True,
    "tool": "python",
    "call_id": "6e63233ddea649dc81b4201a9cad7776",
    "content": [{"type": "text", "text": "42"}],
    "data": {"stdout": "", "stderr": "", "result": "42", "images": 0, "restarted": False,
             "notes": []},
    "error": None,
    "usage": {"queue_ms": 0.2, "run_ms": 5.7, "cost": 1.0},
    "truncated": False,
    "session_id": "s-5c1f0e",
    "trajectory_id": "traj-1",
}  # fmt: skip
FAILED = {
    **OBSERVATION,
    "ok": False,
    "content": [{"type": "text", "text": "Error (invalid_arguments): the arguments do not "
                 "match the tool's schema: code: Field required\nHint: Fix the named "
                 "arguments and call again; the tool list gives the schema."}],
    "data": None,
    "error": {"kind": "invalid_arguments", "message": "the arguments do not match the tool's "
              "schema: code: Field required", "detail": None, "hint": "Fix the named "
              "arguments and call again; the tool list gives the schema.", "retryable": False},
}  # fmt: skip
SESSION = {
    "session_id": "s-5c1f0e",
    "created_at": "2026-12-02T16:00:00Z",
    "expires_at": "2026-12-02T16:10:00Z",
    "ttl_s": 600,
    "trajectory_id": None,
    "parent_id": None,
    "metadata": {"task": "gsm8k-17"},
}
USAGE = {
    "trajectory_id": "traj-1",
    "tools": {"python": {"calls": 2, "errors": 1, "cost": 2.0, "run_ms": 11.2, "queue_ms": 0.4}},
    "total": {"calls": 2, "errors": 1, "cost": 2.0, "run_ms": 11.2, "queue_ms": 0.4},
}

#: (method, path) → (request example or None, response example).
EXAMPLES: dict[tuple[str, str], tuple[Any, Any]] = {
    ("get", "/v1/tools"): (None, {"tools": [{"name": "python", "description": "Run Python "
        "code ...", "input_schema": {"type": "object", "properties": {"code": {"type":
        "string"}}, "required": ["code"]}, "output_schema": None, "service": "sandbox",
        "stateful": True}]}),
    ("post", "/v1/tools/{name}/call"): (
        {"arguments": {"code": "x = 6 * 7\nx"}, "trajectory_id": "traj-1", "timeout_s": 10},
        OBSERVATION),
    ("post", "/v1/calls"): ({"calls": [{"tool": "python", "arguments": {"code": "print(1)"}},
        {"tool": "python", "arguments": {}}]}, {"observations": [OBSERVATION, FAILED]}),
    ("post", "/v1/sessions"): ({"ttl_s": 600, "metadata": {"task": "gsm8k-17"}}, SESSION),
    ("get", "/v1/sessions/{session_id}"): (None, SESSION),
    ("delete", "/v1/sessions/{session_id}"): (None, SESSION),
    ("post", "/v1/sessions/{session_id}/fork"): ({"ttl_s": 300},
        {**SESSION, "session_id": "s-9a0b1c", "parent_id": "s-5c1f0e"}),
    ("get", "/v1/trajectories/{trajectory_id}/usage"): (None, USAGE),
    ("delete", "/v1/trajectories/{trajectory_id}"): (None, USAGE),
    ("get", "/healthz"): (None, {"status": "ok"}),
    ("get", "/readyz"): (None, {"status": "ready", "tools": 12, "sessions": 0, "in_flight": 0,
        "services": {"sandbox": {"backend": "local", "pool_ready": 4, "pool_size": 4}}}),
    ("get", "/metrics"): (None, "# HELP toolfleet_calls_total Tool calls ...\n"),
}  # fmt: skip

#: The key of a route's ``openapi_extra`` holding what :func:`examples` declares.
EXAMPLES_KEY = "x-toolfleet-examples"


def examples(
    request: Any = None, response: Any = None, *, raw_body: str | None = None
) -> dict[str, Any]:
    """A route's ``openapi_extra``: the request and response examples ``/docs`` shows for it,
    and, for a body of raw bytes (not JSON), what the bytes are. A service's routes declare
    their own, so that the gateway names none of them."""
    # as JSON text: FastAPI leaves the None values of openapi_extra out of the document
    declared = {"request": request, "response": response, "raw_body": raw_body}
    return {EXAMPLES_KEY: json.dumps(declared)}


def install(app: FastAPI) -> None:
    """Post-process ``app``'s OpenAPI document once, when first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if getattr(app.state, "openapi_documented", False):
            return app.openapi_schema  # type: ignore[return-value]
        schema = document(build())
        app.openapi_schema = schema
        app.state.openapi_documented = True
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the examples, error bodies and upload bodies added."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorResponse"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            for status, response in op.get("responses", {}).items():
                if status[0] in "45":
                    example = {"error": ERROR_EXAMPLES.get(status, ERROR_EXAMPLES["404"])}
                    response["description"] = response.get("description") or "Error"
                    if status == "422":
                        response["description"] = "Malformed request: each field named"
                    response["content"] = {"application/json": {"schema": ref, "example": example}}
            declared = json.loads(op.pop(EXAMPLES_KEY, "null"))
            if declared is not None and declared["raw_body"] is not None:
                op["requestBody"] = {
                    "required": True,
                    "description": declared["raw_body"],
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                }
            if declared is not None:
                request, response_example = declared["request"], declared["response"]
            else:
                request, response_example = EXAMPLES.get((method, path), (None, None))
            body = op.get("requestBody", {}).get("content", {})
            if request is not None:
                for content in body.values():
                    content["example"] = request
            ok = next((op["responses"][s] for s in ("200", "201") if s in op["responses"]), None)
            if ok is not None and response_example is not None:
                for content in ok.setdefault("content", {"application/json": {}}).values():
                    content["example"] = response_example
    return schema
