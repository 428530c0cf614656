"""toolfleet's search service: BM25, dense and web search over named indexes.

Its tools are registered with the toolfleet.services entry point named ``search``, which
points at :func:`tools`. Adding a tool here is one module and one line in that list.
"""

from __future__ import annotations

from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool


def tools(settings: Settings) -> list[Tool]:
    """``search`` when indexes are configured, ``web_search`` when a provider is."""
    from toolfleet.search.search_tool import Indexes, SearchTool
    from toolfleet.search.settings import SearchSettings
    from toolfleet.search.web import WebSearchTool

    search_settings = SearchSettings()
    found: list[Tool] = []
    if search_settings.indexes:
        found.append(SearchTool(search_settings, Indexes(search_settings)))
    if search_settings.web_provider and search_settings.web_api_key:
        found.append(WebSearchTool(search_settings))
    return found
