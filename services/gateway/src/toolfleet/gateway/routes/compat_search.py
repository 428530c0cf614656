"""Drop-in retrieval routes, so a trainer written for another retrieval server only changes
its URL. Each is a call of the ``search`` tool (carried by the dispatcher, counted in the
metrics, booked to no trajectory) reshaped to that server's response:

- Search-R1's ``POST /retrieve`` ``{queries | query, topk, return_scores}`` →
  ``{"result": [[{"document": {"id", "contents"}, "score"}…]…]}`` (documents only without
  ``return_scores``), contents being ``"title\\ntext"``;
- FlashRAG's ``POST /search`` ``{query, top_n, return_score}`` → documents, or
  ``[documents, scores]``; and ``POST /batch_search`` ``{query: [..], top_n, return_score}``
  → a list of those per query.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, model_validator
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.tool_routes import call_tool

router = APIRouter(tags=["compatibility"])

SEARCH_TOOL = "search"


class RetrieveRequest(BaseModel):
    """Search-R1's retrieval request."""

    queries: list[str] | None = Field(default=None, description="Queries, one result list each.")
    query: str | None = Field(default=None, description="A single query (instead of queries).")
    topk: int | None = Field(default=None, ge=1, description="Passages per query.")
    return_scores: bool = Field(default=False, description="Pair each document with its score.")

    @model_validator(mode="after")
    def _one_of(self) -> RetrieveRequest:
        if (self.queries is None) == (self.query is None):
            raise ValueError("give either queries or query")
        return self


class FlashSearchRequest(BaseModel):
    """FlashRAG's ``/search`` request."""

    query: str
    top_n: int | None = Field(default=None, ge=1)
    return_score: bool = False


class FlashBatchRequest(BaseModel):
    """FlashRAG's ``/batch_search`` request."""

    query: list[str]
    top_n: int | None = Field(default=None, ge=1)
    return_score: bool = False


async def _search(
    request: Request, tenant: str, queries: list[str], top_k: int | None
) -> list[list[dict[str, Any]]] | Response:
    arguments: dict[str, Any] = {"queries": queries}
    if top_k is not None:
        arguments["top_k"] = top_k
    obs = await call_tool(request, tenant, SEARCH_TOOL, arguments)
    if isinstance(obs, Response):
        return obs
    return (obs.data or {}).get("results", [])


def _document(hit: dict[str, Any]) -> dict[str, Any]:
    # the corpus's own contents where title and text do not rebuild them (wiki-18's quoted
    # titles), so a Search-R1 corpus is served unchanged
    contents = hit.get("contents") or f"{hit['title']}\n{hit['text']}"
    return {"id": hit["id"], "contents": contents}


@router.post("/retrieve", summary="Search-R1 retrieval (drop-in)", response_model=None)
async def retrieve(body: RetrieveRequest, request: Request, tenant: Tenant) -> Any:
    """Search-R1's retriever API over the default search index."""
    queries = body.queries if body.queries is not None else [body.query or ""]
    found = await _search(request, tenant, queries, body.topk)
    if isinstance(found, Response):
        return found
    if body.return_scores:
        result = [[{"document": _document(h), "score": h["score"]} for h in hits] for hits in found]
    else:
        result = [[_document(h) for h in hits] for hits in found]
    return {"result": result}


def _flash(hits: list[dict[str, Any]], with_scores: bool) -> Any:
    docs = [_document(h) for h in hits]
    return [docs, [h["score"] for h in hits]] if with_scores else docs


@router.post("/search", summary="FlashRAG search (drop-in)", response_model=None)
async def flash_search(body: FlashSearchRequest, request: Request, tenant: Tenant) -> Any:
    """FlashRAG's retrieval server API: one query."""
    found = await _search(request, tenant, [body.query], body.top_n)
    if isinstance(found, Response):
        return found
    return _flash(found[0], body.return_score)


@router.post("/batch_search", summary="FlashRAG batch search (drop-in)", response_model=None)
async def flash_batch_search(body: FlashBatchRequest, request: Request, tenant: Tenant) -> Any:
    """FlashRAG's retrieval server API: several queries."""
    found = await _search(request, tenant, body.query, body.top_n)
    if isinstance(found, Response):
        return found
    if body.return_score:
        return [[_document(h) for h in hits] for hits in found], [
            [h["score"] for h in hits] for hits in found
        ]
    return [[_document(h) for h in hits] for hits in found]
