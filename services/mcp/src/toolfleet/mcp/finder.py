"""The find_tools tool: the tools of the served catalogue that fit a need.

A trainer can show a model a few tools plus this one (as TheMCPCompany and Toolshed do):
the model says what it needs, and gets the best-matching tools with their schemas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field
from toolfleet.core.errors import ToolError
from toolfleet.core.protocol import ErrorKind, ToolSpec
from toolfleet.core.tool import CallContext, Tool, ToolArguments, ToolResult

if TYPE_CHECKING:
    from toolfleet.mcp.service import McpService

NAME = "find_tools"


class ToolFilters(ToolArguments):
    """Which tools may be found."""

    service: list[str] | None = Field(
        default=None, description="Only tools of these services (mcp, sandbox, search ...)."
    )
    prefix: list[str] | None = Field(
        default=None,
        description="Only tools whose name starts with one of these (an upstream: 'memory.').",
    )
    exclude: list[str] | None = Field(default=None, description="Tool names never returned.")


class FindToolsArgs(ToolArguments):
    """Arguments of find_tools."""

    query: str = Field(min_length=1, max_length=2000, description="What the tool should do.")
    top_k: int = Field(default=5, ge=1, le=50, description="How many tools to return.")
    filters: ToolFilters | None = Field(default=None, description="Restrict the candidates.")


class FindTools(Tool[FindToolsArgs]):
    name = NAME
    description = (
        "Finds the tools that can do what you describe, among every tool available (there "
        "may be thousands), and returns their names, descriptions and argument schemas; then "
        "call the one that fits."
    )
    Arguments = FindToolsArgs

    def __init__(self, service: McpService) -> None:
        super().__init__(service)
        self.mcp = service

    async def call(self, args: FindToolsArgs, ctx: CallContext) -> ToolResult:
        catalogue = self.mcp.catalogue
        if catalogue is None or not catalogue.ready.is_set():
            raise ToolError(
                ErrorKind.unavailable,
                "the tool catalogue is not indexed yet",
                hint="Try again in a moment.",
                retryable=True,
            )
        index = catalogue.index
        keep = _keeper(args.filters)
        hits = index.search(args.query, args.top_k, keep)
        found = [
            {
                "name": h.spec.name,
                "description": h.spec.description,
                "input_schema": h.spec.input_schema,
                "score": round(h.score, 6),
            }
            for h in hits
        ]
        if not found:
            text = f"No tool matches {args.query!r}; describe the need in other words."
        else:
            text = "\n".join(_line(h.spec) for h in hits)
        return ToolResult.text(
            text, data={"tools": found, "method": index.method, "catalogue": len(index.specs)}
        )


def _keeper(filters: ToolFilters | None) -> Any:
    if filters is None:
        return lambda spec: spec.name != NAME

    def keep(spec: ToolSpec) -> bool:
        if spec.name == NAME or spec.name in (filters.exclude or ()):
            return False
        if filters.service is not None and spec.service not in filters.service:
            return False
        return filters.prefix is None or any(spec.name.startswith(p) for p in filters.prefix)

    return keep


def _line(spec: ToolSpec) -> str:
    params = list((spec.input_schema.get("properties") or {}).keys())
    required = set(spec.input_schema.get("required") or [])
    shown = ", ".join(p if p in required else f"{p}?" for p in params) or "no arguments"
    description = " ".join(spec.description.split())
    if len(description) > 300:
        description = description[:297] + "..."
    return f"- {spec.name}({shown}): {description}"
