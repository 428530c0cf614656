"""Limits of a search call shared by ``search`` and ``web_search`` (a module of its own, so
that web search does not load the local indexes' libraries): how many queries and passages,
and how long a passage's fields may be in a response."""

from __future__ import annotations

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.search.settings import SearchSettings


def check_queries(queries: list[str], settings: SearchSettings) -> list[str]:
    """The queries, or a diagnostic for empty, too long or too many."""
    if not queries:
        raise ToolError(ErrorKind.invalid_arguments, "no query given", hint="Send a query.")
    if len(queries) > settings.max_queries:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"{len(queries)} queries in one call; at most {settings.max_queries}",
            hint="Split the queries over several calls.",
        )
    for i, query in enumerate(queries):
        if not query.strip():
            raise ToolError(
                ErrorKind.invalid_arguments,
                f"query {i + 1} is empty",
                hint="Write what you are looking for, e.g. a question or key words.",
            )
        if len(query) > settings.max_query_chars:
            raise ToolError(
                ErrorKind.invalid_arguments,
                f"query {i + 1} has {len(query)} characters; at most {settings.max_query_chars}",
                hint="Search with a short question or a few key words.",
            )
    return queries


#: Longest title (and URL) a response carries; text fields are cut at max_passage_chars.
MAX_TITLE_CHARS = 500
MAX_URL_CHARS = 2000


def check_top_k(top_k: int | None, settings: SearchSettings, queries: int = 1) -> int:
    """The passages per query asked for (or the default), or a diagnostic past the limit,
    or when ``queries`` times it passes the passages one call may return."""
    k = top_k or settings.default_top_k
    if k > settings.max_top_k:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"top_k {k} is over the limit of {settings.max_top_k}",
            hint=f"Ask for at most {settings.max_top_k} passages.",
        )
    if k * queries > settings.max_passages_per_call:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"{queries} queries x top_k {k} = {k * queries} passages; one call returns at most "
            f"{settings.max_passages_per_call}",
            hint="Send fewer queries per call, or a smaller top_k.",
        )
    return k


def cut(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters (with " ...") and whether it was."""
    if len(text) <= limit:
        return text, False
    return text[:limit] + " ...", True


def cut_note(count: int, limit: int) -> str:
    """What a response says when ``count`` passages were cut."""
    return (
        f"({count} passage{'s were' if count != 1 else ' was'} longer than {limit} characters "
        "and cut there; the rest of it is not shown.)"
    )
