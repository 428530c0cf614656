"""The wire protocol: every model a trainer, a gateway and a worker exchange.

One module, pydantic v2 and nothing else: it ships with the light client (the
``toolfleet-client`` distribution: httpx and pydantic), and the services import it from there
(``toolfleet.core.protocol`` re-exports it), so both sides share one definition. JSON Schema,
OpenAI function specs and MCP ``inputSchema`` are all derived from these models and from each
tool's argument model, so there is one source.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchRequest",
    "BatchResponse",
    "CallOptions",
    "CallRequest",
    "ContentPart",
    "ErrorDiagnostic",
    "ErrorKind",
    "ImagePart",
    "Invocation",
    "JsonPart",
    "Observation",
    "SessionCreate",
    "SessionFork",
    "SessionInfo",
    "TablePart",
    "TextPart",
    "ToolCall",
    "ToolSpec",
    "ToolUsage",
    "TrajectoryUsage",
    "Usage",
]

# --------------------------------------------------------------------------- diagnostics


class ErrorKind(StrEnum):
    """Why a tool call failed. A closed set, so rewards and dashboards can count by kind."""

    syntax_error = "syntax_error"
    compile_error = "compile_error"
    runtime_error = "runtime_error"
    timeout = "timeout"
    memory_limit = "memory_limit"
    output_limit = "output_limit"
    invalid_arguments = "invalid_arguments"
    not_found = "not_found"
    permission_denied = "permission_denied"
    rate_limited = "rate_limited"
    unavailable = "unavailable"
    session_expired = "session_expired"
    internal = "internal"


class ErrorDiagnostic(BaseModel):
    """A failed call, explained for the model that made it and for the trainer."""

    kind: ErrorKind = Field(description="What class of failure this is (closed enum).")
    message: str = Field(description="One line saying what went wrong.")
    detail: str | None = Field(
        default=None, description="Longer evidence: a trimmed traceback, a SQL error position."
    )
    hint: str | None = Field(
        default=None, description="What to try next, written for a language model."
    )
    retryable: bool = Field(
        default=False,
        description="True when the same call may succeed if sent again (transient failure).",
    )


class Usage(BaseModel):
    """What a call cost: the figures efficiency rewards are computed from."""

    queue_ms: float = Field(default=0.0, description="Time waiting before the tool started.")
    run_ms: float = Field(default=0.0, description="Time the tool ran.")
    cost: float = Field(default=0.0, description="Cost units charged (e.g. 1 per search).")
    input_tokens: int = Field(
        default=0, ge=0, description="Tokens a model read (a model tool's call; else 0)."
    )
    output_tokens: int = Field(
        default=0, ge=0, description="Tokens a model wrote (a model tool's call; else 0)."
    )


# --------------------------------------------------------------------------- content parts


class TextPart(BaseModel):
    """Plain text for the model."""

    type: Literal["text"] = "text"
    text: str = Field(description="The text.")


class ImagePart(BaseModel):
    """An image, base64-encoded, with its size so a trainer can budget vision tokens."""

    type: Literal["image"] = "image"
    mime_type: str = Field(description="image/png or image/jpeg.")
    data: str = Field(description="The encoded image bytes, base64 (standard alphabet).")
    width: int = Field(ge=0, description="Width in pixels.")
    height: int = Field(ge=0, description="Height in pixels.")
    ref: str | None = Field(
        default=None, description="A reference id under which the service keeps this image."
    )


class TablePart(BaseModel):
    """A result table: column names and rows in order, duplicates kept."""

    type: Literal["table"] = "table"
    columns: list[str] = Field(description="Column names, in order.")
    rows: list[list[Any]] = Field(description="Rows, each a list aligned with columns.")
    row_count: int = Field(ge=0, description="Rows in the full result (may exceed len(rows)).")


class JsonPart(BaseModel):
    """Structured data for the model, as JSON."""

    type: Literal["json"] = "json"
    data: Any = Field(description="Any JSON value.")


ContentPart = Annotated[TextPart | ImagePart | TablePart | JsonPart, Field(discriminator="type")]


# --------------------------------------------------------------------------- tools and calls


class ToolSpec(BaseModel):
    """What a tool is and how to call it."""

    name: str = Field(description="The tool's unique name, as used in call paths.")
    description: str = Field(description="What the tool does, written for a model.")
    input_schema: dict[str, Any] = Field(description="JSON Schema of the arguments object.")
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the observation's structured `data`, if any."
    )
    service: str = Field(description="The service that runs the tool (sandbox, search ...).")
    stateful: bool = Field(
        default=False, description="True when the tool keeps per-session state between calls."
    )


class CallOptions(BaseModel):
    """The options every tool call may carry besides its arguments."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        default=None, description="Run in this session (must exist and belong to the caller)."
    )
    trajectory_id: str | None = Field(
        default=None,
        description="The rollout this call belongs to: usage is booked to it, and an unknown "
        "id opens a session bound to it.",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Wall-clock limit in seconds (capped by the server)."
    )
    idempotency_key: str | None = Field(
        default=None,
        max_length=200,
        description="Calls sent again with the same key return the first call's observation.",
    )


class CallRequest(CallOptions):
    """Body of ``POST /v1/tools/{name}/call``."""

    arguments: dict[str, Any] = Field(default_factory=dict, description="The tool's arguments.")


class ToolCall(CallRequest):
    """One call of a batch: the tool's name, its arguments and the usual options."""

    tool: str = Field(description="Name of the tool to call.")


class BatchRequest(BaseModel):
    """Body of ``POST /v1/calls``."""

    model_config = ConfigDict(extra="forbid")

    calls: list[ToolCall] = Field(description="Calls to run concurrently.")


class Observation(BaseModel):
    """What a tool call returns. A failed call is a normal observation with ``ok: false``."""

    ok: bool = Field(description="False when the tool failed; `error` then says why.")
    tool: str = Field(description="The tool that was called.")
    call_id: str = Field(description="Unique id of this call (for logs and replays).")
    content: list[ContentPart] = Field(
        default_factory=list, description="What the model sees: text, image, table, json parts."
    )
    data: dict[str, Any] | None = Field(
        default=None, description="Structured output, described by the tool's output_schema."
    )
    error: ErrorDiagnostic | None = Field(default=None, description="Set when ok is false.")
    usage: Usage = Field(default_factory=Usage, description="Queue time, run time, cost.")
    truncated: bool = Field(default=False, description="True when output was cut to a cap.")
    session_id: str | None = Field(default=None, description="The session the call ran in.")
    trajectory_id: str | None = Field(default=None, description="The trajectory booked.")

    @classmethod
    def failure(
        cls, tool: str, call_id: str, diagnostic: ErrorDiagnostic, **fields: Any
    ) -> Observation:
        """A failed observation carrying ``diagnostic``."""
        return cls(ok=False, tool=tool, call_id=call_id, error=diagnostic, **fields)


class BatchResponse(BaseModel):
    """Body returned by ``POST /v1/calls``: observations in request order."""

    observations: list[Observation]


class Invocation(BaseModel):
    """A call as a dispatcher carries it from the gateway to whatever runs the tool.

    Unlike :class:`ToolCall` it is resolved: the tenant is known, the session exists,
    the timeout is capped and turned into an absolute deadline.
    """

    call_id: str = Field(description="Unique id of this call.")
    tool: str = Field(description="Name of the tool.")
    arguments: dict[str, Any] = Field(description="Unvalidated arguments from the caller.")
    tenant: str = Field(description="The tenant the call belongs to.")
    session_id: str | None = Field(default=None, description="Session the call runs in.")
    trajectory_id: str | None = Field(default=None, description="Trajectory to book usage to.")
    timeout_s: float = Field(gt=0, description="Capped wall-clock limit in seconds.")
    submitted_at: float = Field(description="time.time() when the gateway accepted the call.")
    request_id: str | None = Field(
        default=None,
        description="Id of the HTTP request that carried the call (its X-Request-ID, or one "
        "the gateway made), for logs on both sides of the transport.",
    )


# --------------------------------------------------------------------------- sessions, usage


class SessionCreate(BaseModel):
    """Body of ``POST /v1/sessions`` (all optional)."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float | None = Field(
        default=None, gt=0, description="Idle time after which the session ends (capped)."
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form labels kept with the session."
    )
    trajectory_id: str | None = Field(
        default=None, description="Bind the session to a trajectory (ends with it)."
    )


class SessionFork(BaseModel):
    """Body of ``POST /v1/sessions/{id}/fork`` (all optional)."""

    model_config = ConfigDict(extra="forbid")

    ttl_s: float | None = Field(default=None, gt=0, description="TTL of the copy (else parent's).")
    metadata: dict[str, Any] | None = Field(default=None, description="Labels (else parent's).")
    trajectory_id: str | None = Field(default=None, description="Trajectory to bind the copy to.")


class SessionInfo(BaseModel):
    """A session as the API shows it."""

    session_id: str = Field(description="The session's id.")
    created_at: datetime = Field(description="When it was created (UTC).")
    expires_at: datetime = Field(description="When it ends unless used again (UTC).")
    ttl_s: float = Field(description="Idle time-to-live in seconds; each call renews it.")
    trajectory_id: str | None = Field(default=None, description="Trajectory it is bound to.")
    parent_id: str | None = Field(default=None, description="Session it was forked from.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Labels.")


class ToolUsage(BaseModel):
    """Usage of one tool (or all tools) within a trajectory."""

    calls: int = Field(default=0, description="Calls made.")
    errors: int = Field(default=0, description="Calls that returned ok: false.")
    cost: float = Field(default=0.0, description="Cost units charged.")
    run_ms: float = Field(default=0.0, description="Total run time in milliseconds.")
    queue_ms: float = Field(default=0.0, description="Total queue time in milliseconds.")
    input_tokens: int = Field(default=0, description="Tokens model tools read.")
    output_tokens: int = Field(default=0, description="Tokens model tools wrote.")

    def add(self, obs: Observation) -> None:
        """Book one observation."""
        self.calls += 1
        self.errors += 0 if obs.ok else 1
        self.cost += obs.usage.cost
        self.run_ms += obs.usage.run_ms
        self.queue_ms += obs.usage.queue_ms
        self.input_tokens += obs.usage.input_tokens
        self.output_tokens += obs.usage.output_tokens


class TrajectoryUsage(BaseModel):
    """The usage ledger of one trajectory."""

    trajectory_id: str = Field(description="The trajectory.")
    tools: dict[str, ToolUsage] = Field(default_factory=dict, description="Usage per tool.")
    total: ToolUsage = Field(default_factory=ToolUsage, description="Sum over all tools.")
