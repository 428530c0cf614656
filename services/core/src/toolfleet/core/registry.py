"""The tool registry: which tools this process serves, and the services they belong to.

Services are found by their entry point in the ``toolfleet.services`` group, which names a
:class:`~toolfleet.core.service.Service` subclass (or a factory of one); each service creates
its tools. Adding a tool to a service is one module and one line in its ``tools()`` list.
Tests and benchmarks build registries by hand, from tools (a tool's service comes with it).

What a registry serves may change while it runs (an MCP upstream that adds or removes tools):
a service then calls :meth:`ToolRegistry.update`, which bumps :attr:`ToolRegistry.version`
(readers that cache the tool list compare it) and calls the registry's listeners; a removed
tool's name is remembered with the reason, which the unknown-tool error then gives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import entry_points
from typing import Any

from toolfleet.core.errors import UnknownToolError
from toolfleet.core.protocol import ToolSpec
from toolfleet.core.service import SERVICES_GROUP, Service, load_service
from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool

log = logging.getLogger(__name__)


# What a tool defined before services owned lifecycle and status; refused, not ignored.
_MOVED_TO_SERVICE = ("status",)


class ToolRegistry:
    """Tools by name, and the services that own them."""

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        self._services: dict[str, Service[Any]] = {}
        self._removed: dict[str, str] = {}  # tool name -> why it is no longer served
        self._listeners: list[Callable[[], None]] = []
        self.version = 0  # bumped by every update() after construction
        self.allowed: set[str] | None = None  # settings.tools: the only names served
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any]) -> Tool[Any]:
        """Add a tool (and its service); its name must be new, and its service the one
        instance of that service here."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        for method in _MOVED_TO_SERVICE:
            if hasattr(tool, method):
                raise TypeError(
                    f"the {tool.name} tool defines {method}(): a service reports its status "
                    "(Service.status), not its tools"
                )
        owner = tool.owner
        if owner is not None:
            if owner.name not in self._services:
                self._services[owner.name] = owner
                owner.use_registry(self)
            if self._services[owner.name] is not owner:
                raise ValueError(
                    f"the {tool.name} tool belongs to another instance of the {owner.name} "
                    "service than the tools registered before it (one instance per process)"
                )
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool[Any]:
        """The tool called ``name``; raises :class:`UnknownToolError`."""
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(name, self.names(), self._removed.get(name)) from None

    def update(
        self,
        add: Iterable[Tool[Any]] = (),
        remove: Iterable[str] = (),
        reason: str = "it was removed",
    ) -> bool:
        """Change what is served while running: ``remove`` these names (remembered with
        ``reason``), then add (or replace, by name) the tools of ``add`` that
        :attr:`allowed` admits. True when something changed; then :attr:`version` is bumped
        and the listeners are called."""
        changed = False
        for name in remove:
            if self._tools.pop(name, None) is not None:
                self._removed[name] = reason
                changed = True
        for tool in add:
            if not self.admits(tool.name):
                continue
            self._tools.pop(tool.name, None)
            self._removed.pop(tool.name, None)
            self.register(tool)
            changed = True
        if changed:
            self.version += 1
            for listener in list(self._listeners):
                listener()
        return changed

    def admits(self, name: str) -> bool:
        """Whether a tool of that name may be served (``settings.tools``, when set)."""
        return self.allowed is None or name in self.allowed

    def removed(self, name: str) -> str | None:
        """Why ``name``, served before, is no longer served (None: it is, or never was)."""
        return None if name in self._tools else self._removed.get(name)

    def removed_names(self) -> dict[str, str]:
        """Every tool served before and no longer served, with why."""
        return dict(self._removed)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (synchronously) after each :meth:`update` that changed
        something."""
        self._listeners.append(listener)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)

    def services(self) -> list[Service[Any]]:
        """The services of the registered tools, in the order their first tool came."""
        return list(self._services.values())

    def specs(self) -> list[ToolSpec]:
        """The spec of every tool a model may see (not hidden ones), sorted by name."""
        return [self._tools[n].spec() for n in self.names() if not self._tools[n].hidden]

    def status(self) -> dict[str, Any]:
        """Per service, what it reports for operators (:meth:`Service.status`)."""
        found: dict[str, Any] = {}
        for service in self._services.values():
            info = service.status()
            if info is not None:
                found[service.name] = info
        return found

    @classmethod
    def discover(cls, settings: Settings) -> ToolRegistry:
        """The tools of every installed service (``settings.services`` and ``settings.tools``
        filter them), each service configured by ``settings`` (its section of the config
        file the process was started with)."""
        registry = cls()
        registry.allowed = set(settings.tools) if settings.tools is not None else None
        for ep in sorted(entry_points(group=SERVICES_GROUP), key=lambda e: e.name):
            if settings.services is not None and ep.name not in settings.services:
                continue
            for tool in load_service(ep, settings).tools():
                if registry.admits(tool.name):
                    registry.register(tool)
        log.info("serving tools: %s", ", ".join(registry.names()) or "(none)")
        return registry
