"""Fast JSON responses for pydantic models (serialised once, in pydantic-core)."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


class ModelResponse(Response):
    """A response whose body is a pydantic model dumped straight to JSON bytes."""

    media_type = "application/json"

    def __init__(self, model: BaseModel, status_code: int = 200) -> None:
        super().__init__(model.model_dump_json().encode(), status_code=status_code)
