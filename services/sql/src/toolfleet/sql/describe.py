"""The ``sql_schema`` tool: a database's tables as CREATE TABLE statements with samples."""

from __future__ import annotations

from toolfleet.core.protocol import ErrorKind, TextPart
from toolfleet.core.tool import CallContext, ToolError, ToolResult
from toolfleet.sql import render
from toolfleet.sql.database import Database
from toolfleet.sql.errors import QueryError
from toolfleet.sql.models import SchemaArgs, SchemaOutput
from toolfleet.sql.schema import TableInfo
from toolfleet.sql.service import SqlTool
from toolfleet.sql.suggestions import close


class SchemaTool(SqlTool[SchemaArgs]):
    """Describe a database: tables, columns, keys, sample rows."""

    name = "sql_schema"
    description = (
        "Describe a database: its tables and views as CREATE TABLE statements (columns, "
        "types, primary and foreign keys) with a few sample rows each."
    )
    Arguments = SchemaArgs
    Output = SchemaOutput
    cost = 1.0

    async def call(self, args: SchemaArgs, ctx: CallContext) -> ToolResult:
        s = self.sql.settings
        db = self.sql.resolve(ctx, args.db_id)
        rows = s.schema_sample_rows if args.sample_rows is None else args.sample_rows
        deadline = self.sql.deadline(ctx)
        try:
            tables = await self.sql.blocking(_describe, db, args.tables, rows, deadline)
        except QueryError as exc:
            raise ToolError(exc.kind, exc.message, hint=exc.hint, retryable=exc.retryable) from None
        text, cut = render.schema_text(db.db_id, db.engine, tables, s.schema_max_chars)
        output = SchemaOutput(db_id=db.db_id, engine=db.engine, tables=tables)  # type: ignore[arg-type]
        return ToolResult(content=[TextPart(text=text)], data=output.model_dump(), truncated=cut)


def _describe(
    db: Database, wanted: list[str] | None, rows: int, deadline: float
) -> list[TableInfo]:
    """The tables asked for, with sample rows (in a service thread)."""
    schema = db.schema(deadline)
    tables = schema.tables
    if wanted is not None:
        tables = []
        for name in wanted:
            table = schema.table(name)
            if table is None:
                near = close(name, [t.name for t in schema.tables])
                raise QueryError(
                    ErrorKind.not_found,
                    f"there is no table {name!r} in {db.db_id!r}",
                    hint=("Did you mean " + " or ".join(near) + "?")
                    if near
                    else "Call sql_schema without tables to list them.",
                )
            tables.append(table)
    described = []
    for table in tables:
        copy = table.model_copy()
        if rows and table.kind == "table":
            try:
                copy.sample = db.sample(table, rows, deadline)
            except QueryError:
                copy.sample = None
        described.append(copy)
    return described
