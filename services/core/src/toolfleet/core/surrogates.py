"""Lone surrogates: text that no UTF-8 encoder accepts, made valid before it leaves a tool.

A Python string may hold code points U+D800 to U+DFFF on their own: ``print('\\ud800')`` in model
code, an exception message built from one, a file name whose bytes are not UTF-8 (``os``
decodes ``b'\\xff'`` as ``'\\udcff'``). JSON encoders refuse them, so a single one used to turn a
whole response, a whole batch, or every later listing of a session's files into an HTTP 500.

:func:`scrub` replaces each lone surrogate with U+FFFD (a surrogate *pair* becomes the
character it encodes) and counts the surrogates it found; :func:`scrub_observation` does that for an
observation and adds a text part saying so. The executor passes every observation through it,
so every tool and transport (REST, batch, MCP, compat routes, Redis workers) gets valid text;
the gateway's JSON responses fall back to it for anything else (session metadata ...).
"""

from __future__ import annotations

import re
from typing import Any

from toolfleet.core.protocol import (
    ErrorDiagnostic,
    ImagePart,
    JsonPart,
    Observation,
    TablePart,
    TextPart,
)

SURROGATE = re.compile("[\ud800-\udfff]")
NOTE_PREFIX = "Note: "
REPLACED_NOTE = (
    NOTE_PREFIX + "this result held characters that are not valid Unicode (lone surrogates such "
    "as '\\ud800', or bytes of a file name that are not UTF-8); each was replaced with "
    "U+FFFD (\ufffd)."
)
ARGUMENTS_NOTE = (
    NOTE_PREFIX + "the arguments held characters that are not valid Unicode (lone surrogates); "
    "each was replaced with U+FFFD (\ufffd) before the call ran."
)


def scrub_text(text: str) -> tuple[str, int]:
    """``text`` made valid, and how many surrogate code points it held (0: unchanged)."""
    if text.isascii():
        return text, 0
    found = len(SURROGATE.findall(text))
    if not found:
        return text, 0
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), found


def scrub(value: Any) -> tuple[Any, int]:
    """``value`` (a JSON-like tree of dicts, lists, tuples and scalars) with every string,
    keys included, made valid; containers are copied only when something in them changed."""
    kind = type(value)
    if kind is str:
        return scrub_text(value)
    if kind is list or kind is tuple:
        found = 0
        items = None
        for i, item in enumerate(value):
            if type(item) in _SCALARS:
                continue
            fixed, count = scrub(item)
            if count:
                found += count
                items = items if items is not None else list(value)
                items[i] = fixed
        if items is None:
            return value, 0
        return (items if kind is list else tuple(items)), found
    if isinstance(value, dict):
        found = 0
        changed = False
        pairs = []
        for key, item in value.items():
            fixed_key, key_count = scrub(key) if type(key) is str else (key, 0)
            fixed, count = (item, 0) if type(item) in _SCALARS else scrub(item)
            found += key_count + count
            changed = changed or bool(key_count or count)
            pairs.append((fixed_key, fixed))
        return (dict(pairs), found) if changed else (value, 0)
    return value, 0


_SCALARS = frozenset({int, float, bool, type(None)})


def scrub_observation(obs: Observation) -> Observation:
    """``obs`` itself when all its text is valid, else a copy with every lone surrogate
    replaced (content, data, diagnostic, ids) and a text part saying so."""
    total = 0
    content = []
    for part in obs.content:
        fixed_part, count = _scrub_part(part)
        total += count
        content.append(fixed_part)
    data, count = scrub(obs.data)
    total += count
    error = obs.error
    if error is not None:
        fields, count = scrub(
            {"message": error.message, "detail": error.detail, "hint": error.hint}
        )
        if count:
            total += count
            error = ErrorDiagnostic(
                kind=error.kind,
                retryable=error.retryable,
                **fields,
            )
    ids, count = scrub(
        {
            "tool": obs.tool,
            "call_id": obs.call_id,
            "session_id": obs.session_id,
            "trajectory_id": obs.trajectory_id,
        }
    )
    total += count
    if not total:
        return obs
    content.append(TextPart(text=REPLACED_NOTE))
    return obs.model_copy(update={"content": content, "data": data, "error": error, **ids})


def _scrub_part(part: Any) -> tuple[Any, int]:
    if isinstance(part, TextPart):
        text, count = scrub_text(part.text)
        return (TextPart(text=text), count) if count else (part, 0)
    if isinstance(part, TablePart):
        columns, in_columns = scrub(part.columns)
        rows, in_rows = scrub(part.rows)
        if not (in_columns or in_rows):
            return part, 0
        return (
            TablePart(columns=columns, rows=rows, row_count=part.row_count),
            in_columns + in_rows,
        )
    if isinstance(part, JsonPart):
        data, count = scrub(part.data)
        return (JsonPart(data=data), count) if count else (part, 0)
    if isinstance(part, ImagePart):
        fields, count = scrub({"mime_type": part.mime_type, "data": part.data, "ref": part.ref})
        if not count:
            return part, 0
        return part.model_copy(update=fields), count
    return part, 0
