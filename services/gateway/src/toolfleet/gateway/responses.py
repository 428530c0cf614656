"""JSON responses: pydantic models serialised once, in pydantic-core; and the JSON response
every route uses, which never fails on text a JSON encoder refuses.

Observations are made valid by the executor already (:mod:`toolfleet.core.surrogates`); these
are the last line for anything else that reaches a response (session metadata or trajectory
ids parsed by the stdlib JSON decoder, which accepts ``"\\ud800"``): a lone surrogate there
becomes U+FFFD instead of an HTTP 500.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response
from toolfleet.core.protocol import Observation
from toolfleet.core.surrogates import scrub, scrub_observation


class ModelResponse(Response):
    """A response whose body is a pydantic model dumped straight to JSON bytes."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        try:
            body = model.model_dump_json().encode()
        except pydantic_core.PydanticSerializationError:
            body = _valid_json(model)
        super().__init__(body, status_code=status_code)


class SafeJSONResponse(JSONResponse):
    """FastAPI's JSON response, falling back to valid text when the content holds lone
    surrogates (the app's default response class)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(scrub(content)[0])


def _valid_json(model: BaseModel) -> bytes:
    if isinstance(model, Observation):
        return scrub_observation(model).model_dump_json().encode()
    return pydantic_core.to_json(scrub(model.model_dump(mode="json"))[0])
