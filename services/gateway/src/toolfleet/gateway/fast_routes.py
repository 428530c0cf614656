"""Hot routes served as plain Starlette routes, documented in the OpenAPI document all the same.

FastAPI's per-request machinery (dependency solving, body decoding then validating) costs
about a third of a no-op tool call. The tool-call routes therefore read their body with one
``model_validate_json`` pass and run as Starlette routes, ahead of the FastAPI router. Their
errors are raised as FastAPI's ``RequestValidationError`` with ``body`` paths, so they get
the same JSON 422 as every other route, and :func:`install` writes their OpenAPI entries.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

M = TypeVar("M", bound=BaseModel)
REF_TEMPLATE = "#/components/schemas/{model}"
Endpoint = Callable[[Request], Awaitable[Response]]


async def read_body(request: Request, model: type[M], *, empty: M | None = None) -> M:
    """Validate the request body as ``model``; an empty body gives ``empty`` when set."""
    raw = await request.body()
    if empty is not None and not raw.strip():
        return empty
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        for err in errors:
            err["loc"] = ("body", *err["loc"])
        raise RequestValidationError(errors) from None


@dataclass
class FastRoute:
    """A POST route taking a JSON body of ``body`` and answering ``response``."""

    path: str
    endpoint: Endpoint
    summary: str
    body: type[BaseModel]
    response: type[BaseModel]
    body_required: bool = True
    tag: str = "tools"
    errors: tuple[int, ...] = (404, 413, 422, 429)
    operation_id: str | None = None  # default: the endpoint's name

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI operation object."""
        ref = {"$ref": REF_TEMPLATE.format(model=self.response.__name__)}
        return {
            "tags": [self.tag],
            "summary": self.summary,
            "description": (self.endpoint.__doc__ or "").strip(),
            "operationId": self.operation_id or self.endpoint.__name__,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"{(\w+)}", self.path)
            ],
            "requestBody": {
                "required": self.body_required,
                "content": {
                    "application/json": {
                        "schema": {"$ref": REF_TEMPLATE.format(model=self.body.__name__)}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Successful Response",
                    "content": {"application/json": {"schema": ref}},
                },
                **{str(code): {"description": "JSON error body"} for code in self.errors},
            },
        }


def install(app: FastAPI, routes: list[FastRoute]) -> None:
    """Serve ``routes`` ahead of the FastAPI router and add them to the OpenAPI document."""
    for route in reversed(routes):
        app.router.routes.insert(0, Route(route.path, route.endpoint, methods=["POST"]))
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for route in routes:
                schema["paths"].setdefault(route.path, {})["post"] = route.openapi()
                for model in (route.body, route.response):
                    definition = model.model_json_schema(ref_template=REF_TEMPLATE)
                    for name, sub in definition.pop("$defs", {}).items():
                        components.setdefault(name, sub)
                    components.setdefault(model.__name__, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
