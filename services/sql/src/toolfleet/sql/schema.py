"""A database's schema as the sql tools describe it: tables and views, their columns, primary
and foreign keys, and (for sql_schema) a few sample rows."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field


class ColumnInfo(BaseModel):
    """One column of a table or view."""

    name: str = Field(description="The column's name.")
    type: str = Field(description="Its declared type (as the engine reports it; may be empty).")
    nullable: bool = Field(description="False when the column is declared NOT NULL.")
    primary_key: bool = Field(default=False, description="True when part of the primary key.")


class ForeignKeyInfo(BaseModel):
    """A foreign key: columns of this table referencing columns of another."""

    columns: list[str] = Field(description="Columns of this table.")
    ref_table: str = Field(description="The referenced table.")
    ref_columns: list[str] = Field(
        description="The referenced columns (empty: the referenced table's primary key)."
    )


class SampleRows(BaseModel):
    """The first rows of a table."""

    columns: list[str] = Field(description="Column names.")
    rows: list[list[Any]] = Field(description="Rows, as the sql tool returns them.")


class TableInfo(BaseModel):
    """A table or view."""

    name: str = Field(description="Its name.")
    kind: Literal["table", "view"] = Field(description="table or view.")
    columns: list[ColumnInfo] = Field(description="Columns, in order.")
    primary_key: list[str] = Field(default_factory=list, description="Primary key columns.")
    foreign_keys: list[ForeignKeyInfo] = Field(
        default_factory=list, description="Foreign keys of this table."
    )
    sample: SampleRows | None = Field(default=None, description="A few rows (tables only).")


class Schema:
    """The tables of one database, with case-insensitive lookups."""

    def __init__(self, tables: list[TableInfo]) -> None:
        self.tables = tables
        self._by_name = {t.name.lower(): t for t in tables}

    def table(self, name: str) -> TableInfo | None:
        """The table or view called ``name`` (any letter case), or None."""
        return self._by_name.get(_unquote(name).lower())

    def mentioned(self, query: str) -> list[TableInfo]:
        """Tables whose names appear as words in ``query``, in schema order."""
        words = {w.lower() for w in words_of(query)}
        return [t for t in self.tables if t.name.lower() in words or _last(t.name) in words]


_WORDS = re.compile(r'"([^"]+)"|`([^`]+)`|\[([^\]]+)\]|([A-Za-z_][A-Za-z0-9_$]*)')


def words_of(text: str) -> list[str]:
    """The identifiers and words of ``text`` (quoted ones without their quotes)."""
    return [next(g for g in groups if g) for groups in _WORDS.findall(text)]


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower()


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] + name[-1] in ('""', "``", "[]"):
        return name[1:-1]
    return name
