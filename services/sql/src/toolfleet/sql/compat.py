"""The observation text of SkyRL-SQL's and verl-tool's sql tools, for trainers whose models
learned on it (``format="skyrl"``).

Those tools fetch ``frozenset(cursor.fetchall())`` and print
``pandas.DataFrame(rows).to_string(index=False)``: distinct rows, columns headed 0, 1, 2 ...;
when that text is longer than 9,000 characters they print the first 50 rows after
``"Truncated to 50 lines since returned response too long: "``. Errors read
``"Error executing SQL: <sqlite message>, db file: <path>"`` and timeouts
``"SQL Timeout:\\n<query>"``.

This module reproduces that text without pandas (pandas 2's formatting: 6 significant
decimals with trailing zeros trimmed per column, ``NaN`` for NULL in numeric columns, ``None``
in others). Differences: distinct rows keep their first-seen order (a frozenset's order is
arbitrary), and blobs read ``X'..'``. The table part of the observation still has every row.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_CHARS = 9000
TRUNCATED_ROWS = 50
TRUNCATED_PREFIX = "Truncated to 50 lines since returned response too long: "
EMPTY = "Empty DataFrame\nColumns: []\nIndex: []"
DIGITS = 6  # pandas' display.precision


def result_text(rows: list[list[Any]], complete: bool = True) -> str:
    """What SkyRL-SQL shows for a result; ``complete`` False when ``rows`` are only the
    first rows of a longer result (whose full text would have been cut)."""
    distinct = _distinct(rows)
    text = frame_text(distinct)
    if len(text) > MAX_CHARS or not complete:
        text = TRUNCATED_PREFIX + frame_text(distinct[:TRUNCATED_ROWS])
    return text


def error_text(engine_message: str, db_file: str) -> str:
    """What SkyRL-SQL shows for a failed query."""
    return f"Error executing SQL: {engine_message}, db file: {db_file}"


def timeout_text(query: str) -> str:
    """What SkyRL-SQL shows for a query stopped at its time limit."""
    return f"SQL Timeout:\n{query}"


def frame_text(rows: list[list[Any]]) -> str:
    """``pandas.DataFrame(rows).to_string(index=False)`` (pandas 2 object inference)."""
    if not rows:
        return EMPTY
    width = max(len(r) for r in rows)
    columns = []
    for j in range(width):
        values = [r[j] if j < len(r) else None for r in rows]
        numeric, cells = _column(values)
        header = (" " if numeric else "") + str(j)
        size = max(len(header), *(len(c) for c in cells))
        columns.append([header.rjust(size)] + [c.rjust(size) for c in cells])
    return "\n".join(" ".join(col[i] for col in columns) for i in range(len(rows) + 1))


def _distinct(rows: list[list[Any]]) -> list[list[Any]]:
    seen: dict[Any, list[Any]] = {}
    for row in rows:
        try:
            key: Any = tuple(row)
            hash(key)
        except TypeError:
            key = json.dumps(row, sort_keys=True, default=str)
        seen.setdefault(key, row)
    return list(seen.values())


def _kind(values: list[Any]) -> str:
    """The dtype pandas infers for a column of Python values: int, float, bool or object."""
    present = [v for v in values if v is not None]
    if not present:
        return "object"
    types = {type(v) for v in present}
    if types == {bool}:
        return "object" if len(present) < len(values) else "bool"
    if types <= {int, float} and bool not in types:
        if types == {int} and len(present) == len(values):
            fits = all(-(2**63) <= v < 2**64 for v in present)
            return "int" if fits else "object"
        return "float"
    return "object"


def _column(values: list[Any]) -> tuple[bool, list[str]]:
    """(numeric dtype, formatted cells) of one column."""
    kind = _kind(values)
    if kind == "int":
        return True, [str(v) for v in values]
    if kind == "bool":
        return True, [str(v) for v in values]
    if kind == "float":
        return True, _floats([math.nan if v is None else float(v) for v in values])
    return False, [_object_cell(v) for v in values]


def _floats(values: list[float]) -> list[str]:
    """pandas' FloatArrayFormatter: fixed 6 decimals trimmed per column, or e-notation when
    some value would read 0 or the column is wide with large values."""
    cells = _trim([_fixed(v) for v in values])
    too_long = max(len(c) for c in cells) > DIGITS + 6
    finite = [abs(v) for v in values if not math.isnan(v)]
    large = any(v > 1e6 for v in finite)
    small = any(0 < v < 10**-DIGITS for v in finite)
    if small or (too_long and large):
        cells = [("NaN" if math.isnan(v) else f"{v:.{DIGITS}e}") for v in values]
    return cells


def _fixed(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.{DIGITS}f}"


_DECIMAL = re.compile(r"^\s*[+-]?[0-9]+\.[0-9]*$")


def _trim(cells: list[str]) -> list[str]:
    """Trim trailing zeros equally from every decimal number, keeping one decimal."""
    numbers = [bool(_DECIMAL.match(c)) for c in cells]
    if not any(numbers):
        return cells
    while all(c.endswith("0") for c, n in zip(cells, numbers, strict=True) if n):
        cells = [c[:-1] if n else c for c, n in zip(cells, numbers, strict=True)]
    return [c + "0" if n and c.endswith(".") else c for c, n in zip(cells, numbers, strict=True)]


def _object_cell(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        text = f"{value: .{DIGITS}f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    text = str(value)
    return text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
