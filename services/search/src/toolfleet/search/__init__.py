"""toolfleet's search service: BM25, dense and web search over named indexes.

Its tools are registered with the toolfleet.services entry point named ``search``, which
points at :func:`tools`. Adding a tool here is one module and one line in that list.
"""

from __future__ import annotations

from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool


def tools(settings: Settings) -> list[Tool]:
    """``search`` when indexes are configured, ``web_search`` when a provider is."""
    from toolfleet.search.settings import SearchSettings

    search_settings = SearchSettings()
    found: list[Tool] = []
    if search_settings.indexes:  # bm25s, numba and the encoder load only then (~1.5 s)
        from toolfleet.search.search_tool import Indexes, SearchTool

        found.append(SearchTool(search_settings, Indexes(search_settings)))
    if search_settings.web_provider and search_settings.web_api_key:
        from toolfleet.search.web import WebSearchTool

        found.append(WebSearchTool(search_settings))
    return found
