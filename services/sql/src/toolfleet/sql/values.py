"""Database values as JSON values, keeping their types where JSON has one.

Integers, floats, strings, booleans and NULL pass through unchanged. Exact decimals (NUMERIC
of PostgreSQL, DECIMAL of MariaDB) become JSON integers when they have no fraction digits,
else floats (so 1.98 reads the same from every engine; digits past a float's 17 are lost).
Dates and times become their SQL text (``2009-01-01 00:00:00``), blobs SQL blob literals
(``X'89504E47'``), non-finite floats the strings ``Infinity``, ``-Infinity`` and ``NaN``;
lists and objects (PostgreSQL arrays, JSON) are converted element by element.
"""

from __future__ import annotations

import datetime
import math
from decimal import Decimal
from typing import Any

PLAIN = (str, int, bool, type(None))


def to_json(value: Any) -> Any:
    """``value`` as a JSON-serialisable value (see the module docstring)."""
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "X'" + bytes(value).hex().upper() + "'"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time | datetime.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return str(value)


def row_to_json(row: tuple[Any, ...] | list[Any]) -> list[Any]:
    """A row with every value converted by :func:`to_json`."""
    # Most values of most rows are plain already: skip the call for those.
    return [v if type(v) in _FAST else to_json(v) for v in row]


_FAST = {str, int, type(None)}


def json_size(row: list[Any]) -> int:
    """Approximate bytes of ``row`` in JSON (for the result's byte cap)."""
    size = 2
    for v in row:
        size += len(v) + 3 if isinstance(v, str) else 8
    return size


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if value.as_tuple().exponent >= 0:  # type: ignore[operator]
        return int(value)
    return float(value)
