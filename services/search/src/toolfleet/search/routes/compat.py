"""Drop-in retrieval routes, so a trainer written for another retrieval server only changes
its URL. Each is made of calls of the ``search`` tool (carried by the dispatcher, counted in
the metrics, booked to no trajectory) reshaped to that server's response:

- Search-R1's ``POST /retrieve`` ``{queries | query, topk, return_scores}`` →
  ``{"result": [[{"document": {"id", "contents"}, "score"}…]…]}`` (documents only without
  ``return_scores``), ``contents`` being the corpus's own (``"Title"\\ntext`` for Search-R1's
  wiki-18, kept verbatim);
- FlashRAG's ``POST /search`` ``{query, top_n, return_score}`` → documents, or
  ``[documents, scores]``; and ``POST /batch_search`` ``{query: [..], top_n, return_score}``
  → a list of those per query.

Every well-formed request of those servers is answered, because their clients read the body
without checking the status (Search-R1's ``requests.post(...).json()['result']``) and a 4xx
crashes training:

- a batch of any size is searched in chunks that fit the search tool's limits
  (``max_queries``, ``max_passages_per_call``);
- an empty (or blank) query gets an empty result list, and no search;
- ``topk`` / ``top_n`` of 0 or none is the server's default (Search-R1: the search tool's
  ``default_top_k``; FlashRAG: 10); up to ``max_top_k`` is served (fewer passages come back
  when the index holds fewer);
- a query longer than ``max_query_chars`` is searched by its first ``max_query_chars``
  characters (Search-R1's own dense encoder reads at most 256 tokens of it).

What the original response shape has no room for is said in the ``X-Toolfleet-Notice``
header (and logged): the queries cut, the empty ones, passages cut at ``max_passage_chars``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.openapi_docs import examples
from toolfleet.gateway.tool_routes import call_tool
from toolfleet.search.settings import SearchSettings

log = logging.getLogger(__name__)

router = APIRouter(tags=["compatibility"])

SEARCH_TOOL = "search"
NO_INDEX = (
    "no search index is served, so there is nothing to retrieve from: build one "
    "(toolfleet search build CORPUS.jsonl --out DIR) and serve it with "
    'TOOLFLEET_SEARCH_INDEXES=\'{"NAME": "DIR"}\' (docs/search.md)'
)
#: FlashRAG's server answers ``top_n`` passages, 10 unless the request says otherwise.
FLASHRAG_TOP_N = 10
NOTICE_HEADER = "X-Toolfleet-Notice"

Hits = list[list[dict[str, Any]]]


class RetrieveRequest(BaseModel):
    """Search-R1's retrieval request."""

    queries: list[str] | None = Field(default=None, description="Queries, one result list each.")
    query: str | None = Field(default=None, description="A single query (instead of queries).")
    topk: int | None = Field(
        default=None, ge=0, description="Passages per query (0 or none: the default)."
    )
    return_scores: bool = Field(default=False, description="Pair each document with its score.")

    @model_validator(mode="after")
    def _one_of(self) -> RetrieveRequest:
        if (self.queries is None) == (self.query is None):
            raise ValueError("give either queries or query")
        return self


class FlashSearchRequest(BaseModel):
    """FlashRAG's ``/search`` request."""

    query: str
    top_n: int = Field(default=FLASHRAG_TOP_N, ge=0, description="0: the default, 10.")
    return_score: bool = False


class FlashBatchRequest(BaseModel):
    """FlashRAG's ``/batch_search`` request."""

    query: list[str]
    top_n: int = Field(default=FLASHRAG_TOP_N, ge=0, description="0: the default, 10.")
    return_score: bool = False


def limits(request: Request) -> SearchSettings:
    """The search tool's limits: its own settings when it runs in this process, else the
    ``[search]`` settings of this gateway's config and environment (a distributed
    deployment gives its workers the same)."""
    service = request.app.state.runtime.local_service("search")
    if service is not None and isinstance(service.settings, SearchSettings):
        return service.settings
    cached = getattr(request.app.state, "search_limits", None)
    if cached is None:
        cached = SearchSettings.from_config(request.app.state.settings.config_file)
        request.app.state.search_limits = cached
    return cached


class Batch:
    """One compat request's queries, searched in chunks; what was changed, for the notice."""

    def __init__(self, queries: list[str], settings: SearchSettings) -> None:
        self.queries = queries
        self.settings = settings
        self.notices: list[str] = []
        self.cut_passages = False

    def searchable(self) -> list[tuple[int, str]]:
        """(position, query) of the queries to search: blank ones are left out, long ones
        cut to the tool's limit (both noted)."""
        limit = self.settings.max_query_chars
        blank: list[int] = []
        cut: list[int] = []
        out = []
        for i, query in enumerate(self.queries):
            if not query.strip():
                blank.append(i)
                continue
            if len(query) > limit:
                cut.append(i)
                query = query[:limit]
            out.append((i, query))
        if blank:
            self.notices.append(f"empty queries {_positions(blank)}: no search, no passages")
        if cut:
            self.notices.append(
                f"queries {_positions(cut)} were longer than {limit} characters: searched by "
                f"their first {limit}"
            )
        return out

    def chunk_size(self, k: int) -> int:
        """Queries per call that the search tool accepts with ``k`` passages each."""
        s = self.settings
        return max(1, min(s.max_queries, s.max_passages_per_call // max(k, 1)))

    async def run(self, request: Request, tenant: str, top_k: int | None) -> Hits | Response:
        """Per query, its hits (``[]`` for an empty one), or the HTTP error of a chunk."""
        found: Hits = [[] for _ in self.queries]
        todo = self.searchable()
        size = self.chunk_size(top_k or self.settings.default_top_k)
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            arguments: dict[str, Any] = {"queries": [q for _, q in chunk]}
            if top_k:
                arguments["top_k"] = top_k
            obs = await call_tool(request, tenant, SEARCH_TOOL, arguments, missing=NO_INDEX)
            if isinstance(obs, Response):
                return obs
            results = (obs.data or {}).get("results", [])
            if obs.truncated and not self.cut_passages:
                self.cut_passages = True
                self.notices.append(
                    f"passages longer than {self.settings.max_passage_chars} characters were "
                    "cut there (text ends with ' ...')"
                )
            for (position, _), hits in zip(chunk, results, strict=True):
                found[position] = hits
        return found

    def respond(self, body: Any) -> JSONResponse:
        """``body`` as JSON, with the notice header when something was changed."""
        headers = {}
        if self.notices:
            notice = "; ".join(self.notices)
            log.info("search compat route: %s", notice)
            headers[NOTICE_HEADER] = notice.encode("ascii", "replace").decode()[:2000]
        return JSONResponse(body, headers=headers)


def _positions(items: list[int]) -> str:
    shown = ", ".join(str(i) for i in items[:20])
    return shown + (f" … ({len(items)} in all)" if len(items) > 20 else "")


def _document(hit: dict[str, Any]) -> dict[str, Any]:
    """Search-R1's document: the corpus's id and contents (``title\\ntext``, verbatim)."""
    title, text = hit["title"], hit["text"]
    return {"id": hit["id"], "contents": f"{title}\n{text}" if text or not title else title}


ABC = {"id": "17", "contents": '"ABC"\nThe American Broadcasting Company ...'}  # /docs


@router.post(
    "/retrieve",
    summary="Search-R1 retrieval (drop-in)",
    response_model=None,
    openapi_extra=examples(
        {"queries": ["who founded ABC?"], "topk": 3, "return_scores": True},
        {"result": [[{"document": ABC, "score": 12.3}]]},
    ),
)
async def retrieve(body: RetrieveRequest, request: Request, tenant: Tenant) -> Any:
    """Search-R1's retriever API over the default search index."""
    queries = body.queries if body.queries is not None else [body.query or ""]
    batch = Batch(queries, limits(request))
    found = await batch.run(request, tenant, body.topk or None)
    if isinstance(found, Response):
        return found
    if body.return_scores:
        result = [[{"document": _document(h), "score": h["score"]} for h in hits] for hits in found]
    else:
        result = [[_document(h) for h in hits] for hits in found]
    return batch.respond({"result": result})


@router.post(
    "/search",
    summary="FlashRAG search (drop-in)",
    response_model=None,
    openapi_extra=examples({"query": "who founded ABC?", "top_n": 3, "return_score": False}, [ABC]),
)
async def flash_search(body: FlashSearchRequest, request: Request, tenant: Tenant) -> Any:
    """FlashRAG's retrieval server API: one query."""
    batch = Batch([body.query], limits(request))
    found = await batch.run(request, tenant, body.top_n or FLASHRAG_TOP_N)
    if isinstance(found, Response):
        return found
    docs = [_document(h) for h in found[0]]
    return batch.respond([docs, [h["score"] for h in found[0]]] if body.return_score else docs)


@router.post(
    "/batch_search",
    summary="FlashRAG batch search (drop-in)",
    response_model=None,
    openapi_extra=examples(
        {"query": ["who founded ABC?"], "top_n": 3, "return_score": False}, [[ABC]]
    ),
)
async def flash_batch_search(body: FlashBatchRequest, request: Request, tenant: Tenant) -> Any:
    """FlashRAG's retrieval server API: several queries."""
    batch = Batch(body.query, limits(request))
    found = await batch.run(request, tenant, body.top_n or FLASHRAG_TOP_N)
    if isinstance(found, Response):
        return found
    docs = [[_document(h) for h in hits] for hits in found]
    if body.return_score:
        return batch.respond([docs, [[h["score"] for h in hits] for hits in found]])
    return batch.respond(docs)
