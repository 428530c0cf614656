"""The mcp service: MCP servers' tools, ``find_tools`` over the catalogue, models as tools.

Upstream tools are known when the service's tools are created (the registry asks for them
before anything starts): :meth:`McpService.tools` starts each configured server once, lists
its tools and stops it. :meth:`McpService.start` then opens the stateless servers' pools;
stateful servers start per session, on the session's first call.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from toolfleet.core.service import Service
from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool
from toolfleet.mcp.settings import McpSettings
from toolfleet.mcp.upstream import Upstream, run_blocking

if TYPE_CHECKING:
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.mcp.catalogue import Catalogue

log = logging.getLogger(__name__)


class McpService(Service[McpSettings]):
    """What the mcp tools share: the upstreams, the catalogue index, the model clients."""

    name = "mcp"
    Settings = McpSettings

    def __init__(self, settings: McpSettings | None = None) -> None:
        super().__init__(settings)
        self.upstreams = [Upstream(c, self.settings) for c in self.settings.upstreams]
        self.registry: ToolRegistry | None = None
        self.redis_url: str | None = None
        self.redis_prefix = "toolfleet"
        self.catalogue: Catalogue | None = None
        self._tools: list[Tool] | None = None

    @classmethod
    def configured(cls, settings: Settings) -> McpService:
        service = cls(McpSettings.from_config(settings.config_file))
        # find_tools in a worker reads the deployment's catalogue from Redis
        service.redis_url = settings.redis_url
        service.redis_prefix = settings.redis_prefix
        return service

    def use_registry(self, registry: ToolRegistry) -> None:
        """The registry that serves this service's tools (find_tools indexes it)."""
        self.registry = registry

    def tools(self) -> list[Tool]:
        if self._tools is not None:
            return self._tools
        from toolfleet.mcp.finder import FindTools
        from toolfleet.mcp.llm import LlmTool
        from toolfleet.mcp.upstream_tool import UpstreamTool

        if self.upstreams:
            run_blocking(self._discover())
        sep = self.settings.separator
        tools: list[Tool] = [
            UpstreamTool(self, upstream, tool, f"{upstream.config.name}{sep}{tool.name}")
            for upstream in self.upstreams
            for tool in upstream.tools
        ]
        tools += [LlmTool(self, config) for config in self.settings.llm]
        if self.settings.find_tools:
            tools.append(FindTools(self))
        self._tools = tools
        return tools

    async def _discover(self) -> None:
        async def one(upstream: Upstream) -> None:
            try:
                tools = await upstream.discover()
            except Exception as exc:
                detail = getattr(exc, "detail", None)
                raise RuntimeError(
                    f"[mcp] upstream {upstream.config.name!r}: {exc}"
                    + (f"\n{detail}" if detail else "")
                ) from exc
            log.info("mcp upstream %s: %d tools", upstream.config.name, len(tools))

        # every upstream tried (and each one's server stopped) before the first error is told
        results = await asyncio.gather(*(one(u) for u in self.upstreams), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def start(self) -> None:
        from toolfleet.mcp.catalogue import Catalogue

        await asyncio.gather(*(u.start() for u in self.upstreams))
        if self.settings.find_tools:
            self.catalogue = Catalogue(self)
            await self.catalogue.start()

    async def stop(self) -> None:
        if self.catalogue is not None:
            await self.catalogue.stop()
        await asyncio.gather(*(u.stop() for u in self.upstreams), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "upstreams": {u.config.name: u.status() for u in self.upstreams},
            "llm": [m.name for m in self.settings.llm],
        }
        if self.catalogue is not None:
            found["catalogue_tools"] = self.catalogue.size
        return found
