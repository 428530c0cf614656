"""What a query returns, and the caps applied while its rows are fetched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolfleet.sql.values import json_size, row_to_json


@dataclass(frozen=True)
class Limits:
    """Caps on one query's result."""

    max_rows: int  # rows kept
    max_bytes: int  # approximate JSON bytes of the rows kept
    count_limit: int  # rows counted before the query is stopped


@dataclass
class QueryResult:
    """A result set: column names and rows in the order the engine returned them."""

    columns: list[str]
    types: list[str | None]
    rows: list[list[Any]] = field(default_factory=list)
    row_count: int = 0  # rows in the full result, or a lower bound when not row_count_exact
    row_count_exact: bool = True
    has_result_set: bool = True  # False: the statement returns no rows at all (SET, BEGIN ...)

    @property
    def truncated(self) -> bool:
        """True when fewer rows are kept than the result has."""
        return len(self.rows) < self.row_count or not self.row_count_exact


class RowCollector:
    """Keeps the first rows of a result within the caps and counts the rest."""

    def __init__(self, limits: Limits, *, track_types: bool = False) -> None:
        self.limits = limits
        self.track_types = track_types
        self.value_types: list[dict[type, None]] = []  # per column, Python types of kept values
        self.rows: list[list[Any]] = []
        self.count = 0
        self.bytes = 0
        self.exhausted = True  # False once the count limit stopped the fetch
        self._keeping = True

    def add(self, row: tuple[Any, ...] | list[Any]) -> bool:
        """Take one row; False when the fetch should stop (the count limit is passed)."""
        self.count += 1
        if self.count > self.limits.count_limit:
            self.count = self.limits.count_limit
            self.exhausted = False
            return False
        if self._keeping:
            converted = row_to_json(row)
            size = json_size(converted)
            if len(self.rows) >= self.limits.max_rows or self.bytes + size > self.limits.max_bytes:
                self._keeping = False
            else:
                self.rows.append(converted)
                self.bytes += size
                if self.track_types:
                    self._track(row)
        return True

    def _track(self, row: tuple[Any, ...] | list[Any]) -> None:
        if not self.value_types:
            self.value_types = [{} for _ in row]
        for seen, value in zip(self.value_types, row, strict=False):
            if value is not None:
                seen[type(value)] = None

    def result(self, columns: list[str], types: list[str | None]) -> QueryResult:
        """The result collected so far."""
        return QueryResult(
            columns=columns,
            types=types,
            rows=self.rows,
            row_count=self.count,
            row_count_exact=self.exhausted,
        )
