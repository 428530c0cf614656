"""Observations as plain text: what a text-only model is shown of each content part and of a
failure's diagnostic, and the passage lists of search results."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolfleet.protocol import (
    ErrorDiagnostic,
    ImagePart,
    JsonPart,
    Observation,
    TablePart,
    TextPart,
)
from toolfleet.protocol.diagnostics import without_diagnostic_text

IMAGE_PLACEHOLDER = "[image {width}x{height}]"


def table_text(part: TablePart, max_rows: int | None = None) -> str:
    """A table as pipe-separated lines with a header; a note when rows were left out."""
    rows = part.rows if max_rows is None else part.rows[:max_rows]

    def cell(value: Any) -> str:
        text = "NULL" if value is None else str(value)
        return text.replace("\n", " ").replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in part.columns) + " |"]
    lines.append("|" + "|".join("---" for _ in part.columns) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    if part.row_count > len(rows):
        lines.append(f"({len(rows)} of {part.row_count} rows shown)")
    return "\n".join(lines)


def error_text(error: ErrorDiagnostic, *, hints: bool = True, detail: bool = False) -> str:
    """A diagnostic as the model reads it: ``Error (kind): message``, the detail when asked,
    then ``Hint: …``."""
    lines = [f"Error ({error.kind.value}): {error.message}"]
    if detail and error.detail and error.detail not in error.message:
        lines.append(error.detail.rstrip())
    if hints and error.hint:
        lines.append(f"Hint: {error.hint}")
    return "\n".join(lines)


def observation_text(
    obs: Observation,
    *,
    errors: bool = True,
    hints: bool = True,
    image: str = IMAGE_PLACEHOLDER,
) -> str:
    """Everything a text-only model sees of one observation.

    Text parts as they are; tables (pipe tables) and JSON parts only when the observation has
    no text part, since a tool that writes text writes it as its rendering of the same result
    (the sql tool's table and its text); images as ``image`` (formatted with the part's
    ``width``, ``height``, ``mime_type``, ``ref``; "" drops them). For a failed call the
    diagnostic is added (with its hint) unless the tool's own text already says it (the code
    interpreter prints the traceback itself; then only the hint is added); with no content at
    all the diagnostic's detail is added too.
    """
    content = without_diagnostic_text(obs)
    has_text = any(isinstance(p, TextPart) for p in content)
    pieces: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, TablePart) and not has_text:
            pieces.append(table_text(part))
        elif isinstance(part, JsonPart) and not has_text:
            pieces.append(json.dumps(part.data, ensure_ascii=False, default=str))
        elif isinstance(part, ImagePart) and image:
            pieces.append(
                image.format(
                    width=part.width, height=part.height, mime_type=part.mime_type, ref=part.ref
                )
            )
    text = "\n".join(p.rstrip("\n") for p in pieces if p)
    if errors and not obs.ok and obs.error is not None:
        if not text:
            text = error_text(obs.error, hints=hints, detail=True)
        elif obs.error.message not in text:
            text = f"{text}\n{error_text(obs.error, hints=hints)}"
        elif hints and obs.error.hint and obs.error.hint not in text:
            text = f"{text}\nHint: {obs.error.hint}"
    return text


def search_passages(obs: Observation) -> list[list[dict[str, Any]]] | None:
    """The passages of a ``search`` observation, per query (``data.results``), or None when
    the observation is not one."""
    results = (obs.data or {}).get("results")
    if not isinstance(results, list):
        return None
    if results and all(isinstance(r, Mapping) for r in results):
        return [list(results)]  # one query's hits, not nested
    if all(isinstance(r, list) for r in results):
        return [[dict(h) for h in hits if isinstance(h, Mapping)] for hits in results]
    return None


def passage_title_text(hit: Mapping[str, Any]) -> tuple[str, str]:
    """``(title, text)`` of a hit: toolfleet's ``{title, text}``, or a retriever's
    ``{"document": {"contents": "title\\ntext"}}`` / ``{"contents": ...}``."""
    if "title" in hit or "text" in hit:
        return str(hit.get("title", "")), str(hit.get("text", ""))
    contents = hit.get("document", hit).get("contents", "")
    title, _, text = str(contents).partition("\n")
    return title, text


def search_r1_passages(hits: Iterable[Mapping[str, Any]]) -> str:
    """Passages as Search-R1 shows them: ``Doc i(Title: title) text`` per line."""
    lines = []
    for i, hit in enumerate(hits, 1):
        title, text = passage_title_text(hit)
        lines.append(f"Doc {i}(Title: {title}) {text}\n")
    return "".join(lines)


def as_list(observations: Observation | Sequence[Observation]) -> list[Observation]:
    """One observation or several, as a list."""
    return [observations] if isinstance(observations, Observation) else list(observations)
