"""The ``search`` tool: passages from the served indexes, for one query or a batch."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from toolfleet.core.protocol import ErrorKind, TextPart
from toolfleet.core.tool import CallContext, Tool, ToolArguments, ToolError, ToolResult
from toolfleet.search.checks import MAX_TITLE_CHARS, check_queries, check_top_k, cut, cut_note
from toolfleet.search.corpus import Passage
from toolfleet.search.encoders import TextEncoder
from toolfleet.search.index import IndexError_, SearchIndex
from toolfleet.search.parallel import SearchPool
from toolfleet.search.service import SearchService
from toolfleet.search.settings import SearchSettings

log = logging.getLogger(__name__)


class SearchArgs(ToolArguments):
    """Arguments of ``search``: one query or several."""

    query: str | None = Field(default=None, description="What to search for.")
    queries: list[str] | None = Field(
        default=None, description="Several queries at once (instead of query)."
    )
    top_k: int | None = Field(default=None, ge=1, description="Passages per query.")
    index: str | None = Field(default=None, description="Which index (default: the first).")
    retriever: Literal["bm25", "dense", "hybrid"] | None = Field(
        default=None,
        description="How to rank (default: hybrid where the index has dense).",
    )

    @model_validator(mode="after")
    def _one_of(self) -> SearchArgs:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give either query or queries")
        return self

    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class Hit(BaseModel):
    """One retrieved passage."""

    id: str
    title: str
    text: str
    score: float


class Indexes:
    """The indexes this process serves, loaded once, searched in a bounded thread pool."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.loaded: dict[str, SearchIndex] = {}
        self._slots = asyncio.Semaphore(settings.threads)
        # on a GPU one process batches best: no worker processes
        self.pool = SearchPool(settings.indexes, 0 if settings.gpu else settings.processes)

    async def start(self) -> None:
        if self.loaded:
            return
        encoders: dict[str, TextEncoder] = {}  # one model per encoder spec, for every index
        for name, path in self.settings.indexes.items():
            index = await asyncio.to_thread(SearchIndex, name, path, encoders, 0, self.settings.gpu)
            self.loaded[name] = index
            log.info(
                "search index %s: %d passages (%s)", name, len(index), ", ".join(index.retrievers)
            )
        await asyncio.to_thread(self.pool.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.pool.stop)
        for index in self.loaded.values():
            index.close()
        self.loaded.clear()

    def pick(self, name: str | None) -> SearchIndex:
        if not self.loaded:
            raise ToolError(
                ErrorKind.unavailable,
                "no search index is configured",
                hint="An operator must build one (toolfleet search build) and set "
                "TOOLFLEET_SEARCH_INDEXES.",
            )
        name = name or self.settings.default_index or next(iter(self.loaded))
        index = self.loaded.get(name)
        if index is None:
            raise ToolError(
                ErrorKind.not_found,
                f"there is no search index named {name!r}",
                hint=f"Available indexes: {', '.join(self.loaded)}.",
            )
        return index

    async def search(
        self, queries: list[str], k: int, index: str | None, retriever: str | None
    ) -> list[list[Hit]]:
        target = self.pick(index)
        async with self._slots:
            try:
                if self.pool.takes(queries):
                    target.check(retriever)
                    rows = await self.pool.search(target.name, queries, k, retriever)
                    return [[Hit.model_construct(**hit) for hit in hits] for hits in rows]
                return await asyncio.to_thread(_search, target, queries, k, retriever)
            except IndexError_ as exc:
                raise ToolError(ErrorKind.invalid_arguments, str(exc)) from exc


def _search(
    index: SearchIndex, queries: list[str], k: int, retriever: str | None
) -> list[list[Hit]]:
    """Search and read the passages found (in one worker thread)."""
    out = []
    for hits in index.search(queries, k, retriever):
        rows = []
        for row, score in hits:
            p: Passage = index.passage(row)
            rows.append(Hit(id=p.id, title=p.title, text=p.text, score=round(score, 6)))
        out.append(rows)
    return out


def render(queries: list[str], results: list[list[Hit]]) -> str:
    """The text a model reads: Search-R1's ``Doc i(Title: ...) text`` lines, per query."""
    blocks = []
    for query, hits in zip(queries, results, strict=True):
        lines = [f"Query: {query}"] if len(queries) > 1 else []
        if not hits:
            lines.append("No passage matches.")
        for i, hit in enumerate(hits, 1):
            lines.append(f"Doc {i}(Title: {hit.title}) {hit.text}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


class SearchTool(Tool[SearchArgs]):
    name = "search"
    description = (
        "Searches the document collection and returns the most relevant passages (title and "
        "text) for a query, or for each of several queries."
    )
    Arguments = SearchArgs
    cost = 1.0

    def __init__(self, search: SearchService) -> None:
        super().__init__(search)
        if search.indexes is None:
            raise ValueError("the search tool needs indexes (settings.indexes)")
        self.config = search.settings
        self.indexes = search.indexes
        self.cost = search.settings.cost_per_query

    async def call(self, args: SearchArgs, ctx: CallContext) -> ToolResult:
        queries = check_queries(args.texts(), self.config)
        k = check_top_k(args.top_k, self.config, len(queries))
        results = await self.indexes.search(queries, k, args.index, args.retriever)
        limit = self.config.max_passage_chars
        cut_count = 0
        for hits in results:
            for hit in hits:
                hit.title, title_cut = cut(hit.title, MAX_TITLE_CHARS)
                hit.text, text_cut = cut(hit.text, limit)
                cut_count += title_cut or text_cut
        text = render(queries, results)
        if cut_count:
            text += "\n\n" + cut_note(cut_count, limit)
        return ToolResult(
            content=[TextPart(text=text)],
            data={"results": [[h.model_dump() for h in hits] for hits in results]},
            truncated=bool(cut_count),
            cost=self.config.cost_per_query * len(queries),
        )
