"""What parsing a model's turn yields: the calls it makes and what could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolfleet.protocol import ErrorDiagnostic, ErrorKind, Observation, ToolCall


@dataclass(frozen=True)
class ParsedCall:
    """One tool call found in a model's turn."""

    tool: str
    """The tool's name."""
    arguments: dict[str, Any]
    """The tool's arguments."""
    id: str = ""
    """The model's own call id when it gave one (OpenAI style), else ``call_<n>``."""
    raw: str = ""
    """The text of the block the call was read from."""
    start: int = -1
    """Offset of the block in the turn (-1 when unknown)."""
    end: int = -1
    """Offset just past the block."""

    def to_tool_call(self, **options: Any) -> ToolCall:
        """The call as a :class:`ToolCall` of a batch; ``options`` are session_id,
        trajectory_id, timeout_s, idempotency_key."""
        return ToolCall(tool=self.tool, arguments=dict(self.arguments), **options)


@dataclass(frozen=True)
class ParseError:
    """A block of the turn that looks like a call but cannot be one (malformed JSON, no
    tool name, an unclosed tag, an empty query ...). Never raised: returned, so the loop can
    show the model what was wrong (see :meth:`observation`)."""

    message: str
    """What is wrong, in one line."""
    raw: str = ""
    """The offending text."""
    start: int = -1
    end: int = -1
    tool: str | None = None
    """The tool the block was meant for, when that much could be read."""
    hint: str = "Fix the call's format and send it again."

    def observation(self) -> Observation:
        """The error as a failed observation (``invalid_arguments``), to render like a tool's
        own failure."""
        diagnostic = ErrorDiagnostic(
            kind=ErrorKind.invalid_arguments, message=self.message, hint=self.hint
        )
        return Observation.failure(self.tool or "parser", f"parse-{max(self.start, 0)}", diagnostic)


@dataclass
class ParseResult:
    """The calls of one turn, in the order the model wrote them, and the blocks that could
    not be read."""

    calls: list[ParsedCall] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing call-like was found (no calls, no errors)."""
        return not self.calls and not self.errors

    def tool_calls(self, **options: Any) -> list[ToolCall]:
        """The calls as :class:`ToolCall` s for a batch (``options`` as
        :meth:`ParsedCall.to_tool_call`)."""
        return [c.to_tool_call(**options) for c in self.calls]

    def error_observations(self) -> list[Observation]:
        """The errors as failed observations."""
        return [e.observation() for e in self.errors]
