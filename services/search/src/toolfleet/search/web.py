"""Web search: provider adapters behind one interface, a result cache and a rate limit.

Off unless ``TOOLFLEET_SEARCH_WEB_PROVIDER`` and its API key are set; then the ``web_search``
tool exists. Each adapter speaks one provider's API (Serper, Brave, Tavily) and returns
:class:`WebResult` items; the endpoint may be overridden (a proxy, or a stand-in in tests).
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections import OrderedDict
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, Field
from toolfleet.core.protocol import ErrorKind, TextPart
from toolfleet.core.tool import CallContext, Tool, ToolArguments, ToolError, ToolResult
from toolfleet.search.checks import (
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    check_queries,
    check_top_k,
    cut,
    cut_note,
)
from toolfleet.search.service import SearchService


class WebResult(BaseModel):
    """One web search result."""

    title: str
    url: str
    snippet: str


class Provider(abc.ABC):
    """One web search API."""

    name: ClassVar[str]
    endpoint: ClassVar[str]

    def __init__(self, api_key: str, endpoint: str | None) -> None:
        self.api_key = api_key
        self.url = endpoint or self.endpoint

    @abc.abstractmethod
    async def search(self, http: httpx.AsyncClient, query: str, k: int) -> list[WebResult]:
        """The provider's top ``k`` results for ``query``."""


class Serper(Provider):
    name = "serper"
    endpoint = "https://google.serper.dev/search"

    async def search(self, http: httpx.AsyncClient, query: str, k: int) -> list[WebResult]:
        r = await http.post(
            self.url, json={"q": query, "num": k}, headers={"X-API-KEY": self.api_key}
        )
        r.raise_for_status()
        return [
            WebResult(title=i.get("title", ""), url=i.get("link", ""), snippet=i.get("snippet", ""))
            for i in r.json().get("organic", [])[:k]
        ]


class Brave(Provider):
    name = "brave"
    endpoint = "https://api.search.brave.com/res/v1/web/search"

    async def search(self, http: httpx.AsyncClient, query: str, k: int) -> list[WebResult]:
        r = await http.get(
            self.url,
            params={"q": query, "count": k},
            headers={"X-Subscription-Token": self.api_key, "Accept": "application/json"},
        )
        r.raise_for_status()
        return [
            WebResult(
                title=i.get("title", ""), url=i.get("url", ""), snippet=i.get("description", "")
            )
            for i in r.json().get("web", {}).get("results", [])[:k]
        ]


class Tavily(Provider):
    name = "tavily"
    endpoint = "https://api.tavily.com/search"

    async def search(self, http: httpx.AsyncClient, query: str, k: int) -> list[WebResult]:
        r = await http.post(
            self.url,
            json={"query": query, "max_results": k},
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        r.raise_for_status()
        return [
            WebResult(title=i.get("title", ""), url=i.get("url", ""), snippet=i.get("content", ""))
            for i in r.json().get("results", [])[:k]
        ]


PROVIDERS: dict[str, type[Provider]] = {p.name: p for p in (Serper, Brave, Tavily)}


class TTLCache:
    """At most ``entries`` values, each kept ``ttl_s``; least recently used go first."""

    def __init__(self, ttl_s: float, entries: int) -> None:
        self.ttl_s = ttl_s
        self.entries = entries
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Any, value: Any) -> None:
        if self.entries <= 0 or self.ttl_s <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


class RateLimit:
    """Spaces requests at least ``1 / rate_per_s`` apart (callers wait their turn)."""

    def __init__(self, rate_per_s: float) -> None:
        self.interval = 1.0 / rate_per_s
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


class WebSearchArgs(ToolArguments):
    """Arguments of ``web_search``."""

    query: str | None = Field(default=None, description="What to search the web for.")
    queries: list[str] | None = Field(default=None, description="Several queries at once.")
    top_k: int | None = Field(default=None, ge=1, description="Results per query.")

    def texts(self) -> list[str]:
        if (self.query is None) == (self.queries is None):
            raise ToolError(ErrorKind.invalid_arguments, "give either query or queries")
        return [self.query] if self.query is not None else list(self.queries or [])


class WebSearchTool(Tool[WebSearchArgs]):
    name = "web_search"
    description = "Searches the web and returns the top results (title, URL, snippet)."
    Arguments = WebSearchArgs

    def __init__(self, search: SearchService) -> None:
        super().__init__(search)
        settings = search.settings
        if settings.web_provider is None or not settings.web_api_key:
            raise ValueError("web search needs web_provider and web_api_key")
        self.config = settings
        self.cost = settings.web_cost_per_query
        self.provider = PROVIDERS[settings.web_provider](
            settings.web_api_key, settings.web_endpoint
        )
        self.cache = TTLCache(settings.web_cache_ttl_s, settings.web_cache_entries)
        self.limit = RateLimit(settings.web_rate_per_s)
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.http = httpx.AsyncClient(timeout=self.config.web_timeout_s)

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def call(self, args: WebSearchArgs, ctx: CallContext) -> ToolResult:
        queries = check_queries(args.texts(), self.config)
        k = check_top_k(args.top_k, self.config, len(queries))
        results, paid = [], 0
        for query in queries:
            key = (query, k)
            found = self.cache.get(key)
            if found is None:
                found = await self._ask(query, k)
                self.cache.put(key, found)
                paid += 1
            results.append(found)
        results, cut_count = self._bounded(results)
        lines = []
        for query, found in zip(queries, results, strict=True):
            if len(queries) > 1:
                lines.append(f"Query: {query}")
            lines += [f"{i}. {r.title} ({r.url})\n{r.snippet}" for i, r in enumerate(found, 1)]
            lines.append("" if found else "No result.")
        if cut_count:
            lines.append(cut_note(cut_count, self.config.max_passage_chars))
        return ToolResult(
            content=[TextPart(text="\n".join(lines).strip())],
            data={"results": [[r.model_dump() for r in found] for found in results], "paid": paid},
            truncated=bool(cut_count),
            cost=self.config.web_cost_per_query * paid,  # cached answers cost nothing
        )

    def _bounded(self, results: list[list[WebResult]]) -> tuple[list[list[WebResult]], int]:
        """The results with their fields cut to size (a provider's are not trusted to be),
        and how many were cut."""
        limit, count, bounded = self.config.max_passage_chars, 0, []
        for found in results:
            kept = []
            for r in found:
                title, a = cut(r.title, MAX_TITLE_CHARS)
                url, b = cut(r.url, MAX_URL_CHARS)
                snippet, c = cut(r.snippet, limit)
                count += a or b or c
                kept.append(WebResult(title=title, url=url, snippet=snippet))
            bounded.append(kept)
        return bounded, count

    async def _ask(self, query: str, k: int) -> list[WebResult]:
        assert self.http is not None
        await self.limit.wait()
        try:
            return await self.provider.search(self.http, query, k)
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status == 429:
                raise ToolError(
                    ErrorKind.rate_limited,
                    f"the {self.provider.name} search API is rate limiting",
                    retryable=True,
                    hint="Wait a moment and search again.",
                ) from exc
            raise ToolError(
                ErrorKind.unavailable,
                f"the {self.provider.name} search API answered {status}",
                retryable=status >= 500,
            ) from exc
        except (httpx.TransportError, ValueError) as exc:
            raise ToolError(
                ErrorKind.unavailable,
                f"the {self.provider.name} search API is unreachable or answered garbage",
                detail=str(exc)[:500],
                retryable=True,
            ) from exc
