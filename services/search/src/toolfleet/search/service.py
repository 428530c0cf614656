"""The search service: the indexes it serves (loaded at start) and web search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from toolfleet.core.service import Service
from toolfleet.search.settings import SearchSettings

if TYPE_CHECKING:
    from toolfleet.core.tool import Tool
    from toolfleet.search.indexed import Indexes


class SearchService(Service[SearchSettings]):
    """``search`` when indexes are configured, ``web_search`` when a provider is."""

    name = "search"
    Settings = SearchSettings

    def __init__(self, settings: SearchSettings | None = None) -> None:
        super().__init__(settings)
        self.indexes: Indexes | None = None
        if self.settings.indexes:  # bm25s, numba and the encoder load only then (~1.5 s)
            from toolfleet.search.indexed import Indexes

            self.indexes = Indexes(self.settings)

    def tools(self) -> list[Tool]:
        found: list[Tool] = []
        if self.indexes is not None:
            from toolfleet.search.indexed import SearchTool

            found.append(SearchTool(self))
        if self.settings.web_provider and self.settings.web_api_key:
            from toolfleet.search.web import WebSearchTool

            found.append(WebSearchTool(self))
        return found

    async def start(self) -> None:
        """Load the indexes and start the search processes."""
        if self.indexes is not None:
            await self.indexes.start()

    async def stop(self) -> None:
        if self.indexes is not None:
            await self.indexes.stop()

    def status(self) -> dict[str, Any] | None:
        """The indexes served, with their size and retrievers (None: none configured)."""
        if self.indexes is None:
            return None
        return {
            "indexes": {
                name: {"passages": len(ix), "retrievers": sorted(ix.retrievers)}
                for name, ix in self.indexes.loaded.items()
            }
        }
