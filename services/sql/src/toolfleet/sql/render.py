"""Text for the model: a result as a markdown table or CSV, a failure with its position and
hint, a schema as CREATE TABLE statements with sample rows.

The skyrl rendering (SkyRL-SQL / verl-tool) is in :mod:`toolfleet.sql.compat`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from toolfleet.core.protocol import ErrorDiagnostic
from toolfleet.sql.results import QueryResult
from toolfleet.sql.schema import TableInfo


def footer(result: QueryResult, shown: int) -> str:
    """``(3 rows)``, or what part of the result is shown."""
    total = f"{result.row_count}" if result.row_count_exact else f"more than {result.row_count}"
    noun = "row" if result.row_count == 1 and result.row_count_exact else "rows"
    if shown >= result.row_count and result.row_count_exact:
        return f"({total} {noun})"
    return f"({shown} of {total} {noun} shown; narrow the query with WHERE or LIMIT to see others)"


def cell(value: Any, max_chars: int) -> str:
    """One value as text: NULL, numbers as written, long text cut with an ellipsis."""
    if value is None:
        text = "NULL"
    elif isinstance(value, str):
        text = value
    else:
        text = repr(value) if isinstance(value, float) else str(value)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def markdown(result: QueryResult, max_rows: int, max_chars: int, max_cell: int) -> str:
    """The result as a markdown table, cut at ``max_rows`` rows or ``max_chars`` characters."""
    if not result.has_result_set:
        return "The statement ran; it returns no rows."

    def line(values: Iterable[Any]) -> str:
        return "| " + " | ".join(_md(cell(v, max_cell)) for v in values) + " |"

    lines = [line(result.columns), "|" + " --- |" * len(result.columns)]
    size = sum(len(x) + 1 for x in lines)
    shown = 0
    for row in result.rows[:max_rows]:
        text = line(row)
        if size + len(text) + 1 > max_chars and shown:
            break
        lines.append(text)
        size += len(text) + 1
        shown += 1
    lines.append(footer(result, shown))
    return "\n".join(lines)


def csv_text(result: QueryResult, max_rows: int, max_chars: int, max_cell: int) -> str:
    """The result as CSV (a header line; strings quoted, numbers bare, NULL empty), then the
    row count."""
    if not result.has_result_set:
        return "The statement ran; it returns no rows."
    lines = [",".join(_csv(c, max_cell) for c in result.columns)]
    size = len(lines[0]) + 1
    shown = 0
    for row in result.rows[:max_rows]:
        line = ",".join(_csv(v, max_cell) for v in row)
        if size + len(line) + 1 > max_chars and shown:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    lines.append(footer(result, shown))
    return "\n".join(lines)


def _csv(value: Any, max_cell: int) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    return '"' + cell(value, max_cell).replace('"', '""') + '"'


def failure(diagnostic: ErrorDiagnostic) -> str:
    """A failed query as the model reads it: what, where, what to try."""
    parts = [f"Error ({diagnostic.kind.value}): {diagnostic.message}"]
    if diagnostic.detail:
        parts.append(diagnostic.detail)
    if diagnostic.hint:
        parts.append(f"Hint: {diagnostic.hint}")
    return "\n".join(parts)


# ---------------------------------------------------------------------- schemas

_PLAIN = {
    "sqlite": r"[A-Za-z_][A-Za-z0-9_]*",
    "mariadb": r"[A-Za-z_][A-Za-z0-9_]*",
    "postgresql": r"[a-z_][a-z0-9_]*",
}
_RESERVED = {
    "order",
    "group",
    "select",
    "from",
    "where",
    "table",
    "index",
    "key",
    "desc",
    "asc",
    "user",
    "limit",
    "values",
    "default",
    "check",
    "references",
    "primary",
}
_QUOTES = {"sqlite": '"', "postgresql": '"', "mariadb": "`"}


def identifier(name: str, engine: str) -> str:
    """``name`` quoted only when the engine needs quotes for it."""
    if re.fullmatch(_PLAIN.get(engine, _PLAIN["sqlite"]), name) and name.lower() not in _RESERVED:
        return name
    q = _QUOTES.get(engine, '"')
    return q + name.replace(q, q + q) + q


def table_ddl(table: TableInfo, engine: str, max_cell: int = 60) -> str:
    """A table as a CREATE TABLE statement (a view as CREATE VIEW with its columns), then its
    sample rows in a comment."""
    q = lambda name: identifier(name, engine)  # noqa: E731
    single_pk = len(table.primary_key) == 1
    lines = []
    for col in table.columns:
        text = f"  {q(col.name)} {col.type}".rstrip()
        if not col.nullable:
            text += " NOT NULL"
        if single_pk and col.name == table.primary_key[0]:
            text += " PRIMARY KEY"
        lines.append(text)
    if len(table.primary_key) > 1:
        lines.append(f"  PRIMARY KEY ({', '.join(q(c) for c in table.primary_key)})")
    for fk in table.foreign_keys:
        ref = f" ({', '.join(q(c) for c in fk.ref_columns)})" if fk.ref_columns else ""
        lines.append(
            f"  FOREIGN KEY ({', '.join(q(c) for c in fk.columns)}) "
            f"REFERENCES {q(fk.ref_table)}{ref}"
        )
    kind = "VIEW" if table.kind == "view" else "TABLE"
    text = f"CREATE {kind} {q(table.name)} (\n" + ",\n".join(lines) + "\n);"
    if table.sample is not None and table.sample.rows:
        rows = [" | ".join(table.sample.columns)]
        rows += [" | ".join(cell(v, max_cell) for v in row) for row in table.sample.rows]
        text += f"\n/* {len(table.sample.rows)} rows of {table.name}:\n" + "\n".join(rows) + "\n*/"
    return text


def schema_text(
    db_id: str, engine: str, tables: list[TableInfo], max_chars: int
) -> tuple[str, bool]:
    """The schema as DDL, cut at ``max_chars``; and whether it was cut."""
    views = sum(t.kind == "view" for t in tables)
    head = f"-- database {db_id} ({engine}): {len(tables) - views} tables"
    head += f", {views} views" if views else ""
    parts, size = [head], len(head)
    for i, table in enumerate(tables):
        ddl = table_ddl(table, engine)
        if size + len(ddl) + 2 > max_chars and i:
            rest = [t.name for t in tables[i:]]
            parts.append(
                f"-- {len(rest)} more not shown (ask sql_schema with tables=[...]): "
                + ", ".join(rest)
            )
            return "\n\n".join(parts), True
        parts.append(ddl)
        size += len(ddl) + 2
    return "\n\n".join(parts), False


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "\\r").replace("\n", "\\n")
