"""The Tool base class, what a tool returns, and the per-call context it runs with.

A tool is a name, a description, a pydantic model of its arguments and one async ``call``.
Adding a tool is one module with a subclass and one line in its service's ``tools()`` list.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from toolfleet.core.protocol import ContentPart, ErrorDiagnostic, ErrorKind, TextPart, ToolSpec

if TYPE_CHECKING:
    from toolfleet.core.settings import Settings
    from toolfleet.core.state import SessionStates

ArgsT = TypeVar("ArgsT", bound=BaseModel)


class ToolArguments(BaseModel):
    """Base of every tool's ``Arguments`` model (and of the models nested in one): a key the
    tool does not take is an ``invalid_arguments`` diagnostic naming it, never dropped in
    silence (``{"code": ..., "timeout_s": 1}`` would otherwise run with the default timeout),
    and the JSON Schema says ``additionalProperties: false``. The executor validates every
    tool's arguments this way, even one whose model does not derive from this class."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class ToolResult:
    """What a tool's ``call`` returns; the runtime adds ids and usage to make an Observation."""

    content: list[ContentPart] = field(default_factory=list)
    data: dict[str, Any] | None = None
    error: ErrorDiagnostic | None = None
    truncated: bool = False
    cost: float | None = None  # None: the tool's default cost

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> ToolResult:
        """A result holding one text part."""
        return cls(content=[TextPart(text=text)], **kwargs)


class ToolError(Exception):
    """Raised by a tool to fail the call with a diagnostic the model can learn from."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.diagnostic = ErrorDiagnostic(
            kind=kind, message=message, detail=detail, hint=hint, retryable=retryable
        )


@dataclass
class CallContext:
    """What a tool knows about the call it is running besides its arguments."""

    call_id: str
    tenant: str
    session_id: str | None
    trajectory_id: str | None
    timeout_s: float
    deadline: float  # time.monotonic() value past which the call is late
    states: SessionStates

    def state(self, key: str) -> Any:
        """This session's state stored under ``key`` (None when absent or no session)."""
        return self.states.get(self.session_id, key) if self.session_id else None

    def set_state(self, key: str, value: Any) -> None:
        """Keep ``value`` in this session under ``key``; forks copy it, ends close it."""
        if self.session_id is None:
            raise ToolError(
                ErrorKind.invalid_arguments,
                "this tool needs a session",
                hint="Send the call with a session_id or a trajectory_id.",
            )
        self.states.put(self.session_id, key, value)


class Tool(abc.ABC, Generic[ArgsT]):
    """Base class of every tool.

    Subclasses set ``name``, ``description``, ``Arguments`` (a pydantic model) and
    optionally ``Output`` (the model of ``ToolResult.data``), ``service``, ``stateful``,
    ``cost`` and ``max_concurrency``, and implement :meth:`call`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Arguments: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel] | None] = None
    service: ClassVar[str] = "core"
    stateful: ClassVar[bool] = False
    cost: ClassVar[float] = 0.0
    max_concurrency: ClassVar[int | None] = None  # None: no limit beyond the gateway's
    hidden: ClassVar[bool] = False  # True: callable, but not in the tool list a model sees

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def call(self, args: ArgsT, ctx: CallContext) -> ToolResult:
        """Run the tool once. Raise :class:`ToolError` to fail with a diagnostic."""

    async def start(self) -> None:
        """Acquire resources (pools, indexes) before the first call."""

    async def stop(self) -> None:
        """Release what :meth:`start` acquired."""

    def status(self) -> dict[str, Any] | None:
        """What operators should see of the tool's service in /readyz (e.g. the isolation in
        force); tools of one service return the same. None: nothing to show."""
        return None

    def spec(self) -> ToolSpec:
        """This tool's public description, with JSON Schemas from its models."""
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=closed_schema(self.Arguments.model_json_schema()),
            output_schema=self.Output.model_json_schema() if self.Output else None,
            service=self.service,
            stateful=self.stateful,
        )


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` on each object that lists its
    properties and says nothing about others (the root and its ``$defs``), as the executor
    refuses unknown keys whatever the model's own config says."""
    for sub in (schema, *schema.get("$defs", {}).values()):
        if "properties" in sub and "additionalProperties" not in sub:
            sub["additionalProperties"] = False
    return schema
