"""The mcp service: MCP servers' tools, ``find_tools`` over the catalogue, models as tools.

Upstream tools are known when the service's tools are created (the registry asks for them
before anything starts): :meth:`McpService.tools` starts each configured server once, lists
its tools and stops it. :meth:`McpService.start` then opens the stateless servers' pools;
stateful servers start per session, on the session's first call.

When an upstream's tool list changes while running (see :mod:`toolfleet.mcp.upstream`),
:meth:`McpService.retool` updates the registry: added tools appear, changed ones are served
with their new schema, removed ones answer ``unknown tool`` saying the server no longer lists
them; the find_tools catalogue is indexed again at once. The gateway's ``/mcp`` reads
``tools/list`` from the registry on each request (its transport is stateless: no standing
stream to notify), and a worker re-announces its tools in its next heartbeat.
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
    import mcp_types as types
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
        for upstream in self.upstreams:
            upstream.on_tools = self.retool
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
        tools: list[Tool] = [
            UpstreamTool(self, upstream, tool, self.served_name(upstream, tool.name))
            for upstream in self.upstreams
            for tool in upstream.tools
        ]
        tools += [LlmTool(self, config) for config in self.settings.llm]
        if self.settings.find_tools:
            tools.append(FindTools(self))
        self._tools = tools
        return tools

    def served_name(self, upstream: Upstream, name: str) -> str:
        """The name an upstream's tool is served under (``memory.create_entities``)."""
        return f"{upstream.config.name}{self.settings.separator}{name}"

    def retool(self, upstream: Upstream, before: list[types.Tool]) -> None:
        """Serve ``upstream``'s new tool list (it was ``before``): new and changed tools
        (re)registered, removed ones unregistered, the catalogue indexed again."""
        from toolfleet.mcp.upstream_tool import UpstreamTool

        old = {t.name: t for t in before}
        new = {t.name: t for t in upstream.tools}
        add = [
            UpstreamTool(self, upstream, tool, self.served_name(upstream, name))
            for name, tool in new.items()
            if name not in old or old[name] != tool
        ]
        remove = [self.served_name(upstream, name) for name in old if name not in new]
        if self._tools is not None:
            gone = {*remove, *(t.name for t in add)}
            self._tools = [t for t in self._tools if t.name not in gone] + add
        if self.registry is not None:
            self.registry.update(
                add,
                remove,
                reason=f"the {upstream.config.name} MCP server no longer lists it (its tool "
                "list changed)",
            )
        if self.catalogue is not None:
            self.catalogue.changed()

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
