"""The Tool base class, what a tool returns, and the per-call context it runs with.

A tool is a name, a description, a pydantic model of its arguments and one async ``call``.
Adding a tool is one module with a subclass and one line in its service's
:meth:`~toolfleet.core.service.Service.tools` list; the tool is given its service when created.
"""

from __future__ import annotations

import abc
import copy
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from toolfleet.core.errors import ToolError
from toolfleet.core.protocol import ContentPart, ErrorDiagnostic, ErrorKind, TextPart, ToolSpec
from toolfleet.core.service import Service

if TYPE_CHECKING:
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
    input_tokens: int = 0  # a model tool's tokens read and written, booked in the ledger
    output_tokens: int = 0

    @classmethod
    def text(cls, text: str, **kwargs: Any) -> ToolResult:
        """A result holding one text part."""
        return cls(content=[TextPart(text=text)], **kwargs)


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
    optionally ``Output`` (the model of ``ToolResult.data``), ``stateful``, ``cost``,
    ``max_concurrency`` and ``hidden``, and implement :meth:`call`. A tool of a service is
    created with that :class:`~toolfleet.core.service.Service` (``owner``), whose name becomes
    its ``service``; a tool without one (tests, benchmarks) names its ``service`` itself.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Arguments: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel] | None] = None
    service: str = "core"  # the name of the service the tool belongs to
    stateful: ClassVar[bool] = False
    cost: ClassVar[float] = 0.0
    max_concurrency: ClassVar[int | None] = None  # None: no limit beyond the gateway's
    hidden: ClassVar[bool] = False  # True: callable, but not in the tool list a model sees

    def __init__(self, service: Service[Any] | None = None) -> None:
        if service is not None and not isinstance(service, Service):
            raise TypeError(
                f"the {self.name} tool is created with its Service (or nothing), "
                f"not {type(service).__name__}"
            )
        self.owner = service
        if service is not None:
            self.service = service.name

    @abc.abstractmethod
    async def call(self, args: ArgsT, ctx: CallContext) -> ToolResult:
        """Run the tool once. Raise :class:`ToolError` to fail with a diagnostic."""

    async def start(self) -> None:
        """Acquire what this tool alone uses (an HTTP client), after its service started.
        What the tools of a service share is the service's (:meth:`Service.start`)."""

    async def stop(self) -> None:
        """Release what :meth:`start` acquired, before the service stops."""

    def spec(self) -> ToolSpec:
        """This tool's public description, with JSON Schemas from its models."""
        return ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=copy.deepcopy(_input_schema(self.Arguments)),
            output_schema=copy.deepcopy(_output_schema(self.Output)) if self.Output else None,
            service=self.service,
            stateful=self.stateful,
        )


@functools.cache
def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments, made once per model: pydantic builds it in
    milliseconds, and ``find_tools`` asks for every tool's spec every few seconds."""
    return plain_types(closed_schema(model.model_json_schema()))


@functools.cache
def _output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a tool's output, made once per model (see ``_input_schema``)."""
    return model.model_json_schema()


def closed_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` on each object that lists its
    properties and says nothing about others (the root and its ``$defs``), as the executor
    refuses unknown keys whatever the model's own config says."""
    for sub in (schema, *schema.get("$defs", {}).values()):
        if "properties" in sub and "additionalProperties" not in sub:
            sub["additionalProperties"] = False
    return schema


def plain_types(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a plain ``type`` on each property of the root and of its ``$defs``:
    an optional field (pydantic's ``anyOf: [T, {"type": "null"}]``) becomes ``T`` (it is not
    in ``required``, and its null default is left out), a ``$ref`` to an enum or model is
    inlined, and a union of several types (``int | str``) is typed by its widest member
    (``string`` when one is; the tool still accepts every member). Strict consumers such as
    verl's MCP tool loader refuse a property without a ``type`` string."""
    defs = schema.get("$defs", {})
    for sub in (schema, *defs.values()):
        for name, prop in list(sub.get("properties", {}).items()):
            sub["properties"][name] = _plain(prop, defs)
    return schema


def _plain(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in prop:
        target = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    members = prop.get("anyOf")
    if not isinstance(members, list) or "type" in prop:
        return prop
    kept = [_plain(m, defs) for m in members if m.get("type") != "null"]
    rest = {k: v for k, v in prop.items() if k != "anyOf"}
    if len(kept) < len(members) and rest.get("default", 0) is None:
        del rest["default"]  # optional: absent means None; a null default is not of the type
    if len(kept) == 1:
        return {**kept[0], **rest}
    types = [m.get("type") for m in kept]
    if all(isinstance(t, str) for t in types):
        widest = "string" if "string" in types else types[0]
        if widest == "string" and "default" in rest and not isinstance(rest["default"], str):
            rest["default"] = str(rest["default"])  # the default said in the declared type
        return {**rest, "type": widest}
    return prop
