"""Dispatchers carry invocations from the gateway to the process that runs the tool.

One interface, so a tool never knows which one carried its call: in-process (embedded, the
default) or over Redis Streams (distributed).
"""

from __future__ import annotations

import abc
from typing import Any

from toolfleet.core.executor import Executor
from toolfleet.core.metrics import Metrics
from toolfleet.core.protocol import Invocation, Observation, ToolSpec
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.service import Service


class Dispatcher(abc.ABC):
    """Where tool calls and session lifecycle events go."""

    def use_metrics(self, metrics: Metrics) -> None:  # noqa: B027 - optional hook
        """Count what the dispatcher sees (queues, replies) in the runtime's metrics."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, start workers or tools."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect, stop workers or tools."""

    @abc.abstractmethod
    def specs(self) -> list[ToolSpec]:
        """The tools reachable through this dispatcher, sorted by name."""

    @abc.abstractmethod
    def has_tool(self, name: str) -> bool:
        """True when a tool of that name is reachable."""

    def removed(self, name: str) -> str | None:
        """Why a tool served before is no longer served (None: unknown)."""
        return None

    def status(self) -> dict[str, Any]:
        """Per service, what it reports for operators (see ``Service.status``)."""
        return {}

    def local_service(self, name: str) -> Service[Any] | None:
        """The service of that name when its tools run in this process (None: they run
        elsewhere, or it is not served)."""
        return None

    async def readiness(self) -> str | None:
        """Why calls cannot be taken now (None: they can)."""
        return None

    @abc.abstractmethod
    async def dispatch(self, inv: Invocation) -> Observation:
        """Run the invocation somewhere and return its observation (never raises for a
        tool's failure)."""

    @abc.abstractmethod
    async def fork_session(self, source_id: str, new_id: str) -> None:
        """Copy the tool state of one session into a new one."""

    @abc.abstractmethod
    async def end_session(self, session_id: str) -> None:
        """Release the tool state of a session."""


class InProcessDispatcher(Dispatcher):
    """Runs every tool in this process (the embedded runtime)."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self.executor = Executor(registry)
        self._specs = registry.specs()
        self._version = registry.version

    async def start(self) -> None:
        await self.executor.start()
        # a tool's schema may depend on what its service found at start (the sandbox's
        # languages)
        self._specs = self.registry.specs()
        self._version = self.registry.version

    async def stop(self) -> None:
        await self.executor.stop()

    def specs(self) -> list[ToolSpec]:
        if self._version != self.registry.version:  # a service changed its tools
            self._specs, self._version = self.registry.specs(), self.registry.version
        return self._specs

    def has_tool(self, name: str) -> bool:
        return name in self.registry

    def removed(self, name: str) -> str | None:
        return self.registry.removed(name)

    def status(self) -> dict[str, Any]:
        return self.registry.status()

    def local_service(self, name: str) -> Service[Any] | None:
        return next((s for s in self.registry.services() if s.name == name), None)

    async def dispatch(self, inv: Invocation) -> Observation:
        return await self.executor.run(inv)

    async def fork_session(self, source_id: str, new_id: str) -> None:
        await self.executor.states.fork(source_id, new_id)

    async def end_session(self, session_id: str) -> None:
        await self.executor.states.close(session_id)
