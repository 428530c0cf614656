"""The tool registry: which tools this process serves.

Services register their tools with one entry point each, in the ``toolfleet.services`` group,
naming a function ``tools(settings) -> list[Tool]``. Adding a tool to a service is one module
and one line in that function's list. Tests and benchmarks build registries by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from toolfleet.core.protocol import ToolSpec
from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "toolfleet.services"


class UnknownToolError(LookupError):
    """No tool of that name is registered."""

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(f"unknown tool {name!r}")
        self.name = name
        self.available = available


class ToolRegistry:
    """Tools by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> Tool:
        """Add a tool; its name must be new."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool called ``name``; raises :class:`UnknownToolError`."""
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)

    def specs(self) -> list[ToolSpec]:
        """The spec of every tool a model may see (not hidden ones), sorted by name."""
        return [self._tools[n].spec() for n in self.names() if not self._tools[n].hidden]

    def status(self) -> dict[str, Any]:
        """Per service, what its tools report for operators (the first tool's
        ``Tool.status``; tools of one service report the same)."""
        found: dict[str, Any] = {}
        for tool in self:
            info = tool.status()
            if info is not None:
                found.setdefault(tool.service, info)
        return found

    @classmethod
    def discover(cls, settings: Settings) -> ToolRegistry:
        """Load the tools of every installed service (filtered by ``settings``)."""
        registry = cls()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if settings.services is not None and ep.name not in settings.services:
                continue
            for tool in ep.load()(settings):
                if settings.tools is None or tool.name in settings.tools:
                    registry.register(tool)
        log.info("serving tools: %s", ", ".join(registry.names()) or "(none)")
        return registry
