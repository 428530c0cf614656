"""The ``sql`` tool: one read-only query, its result as a table and as text."""

from __future__ import annotations

from typing import Any

from toolfleet.core.protocol import ErrorKind, TablePart, TextPart
from toolfleet.core.tool import CallContext, ToolResult
from toolfleet.sql import compat, render
from toolfleet.sql.database import Database, Interrupt
from toolfleet.sql.errors import QueryError
from toolfleet.sql.models import ErrorPosition, SqlArgs, SqlOutput
from toolfleet.sql.results import Limits, QueryResult
from toolfleet.sql.service import SqlTool
from toolfleet.sql.sqlite import SqliteDatabase


class QueryTool(SqlTool[SqlArgs]):
    """Run one read-only SQL query."""

    name = "sql"
    description = (
        "Run one read-only SQL query (SELECT / WITH) on a database and get the result table: "
        "column names and rows in order, duplicates kept. Errors say what is wrong and where "
        "(syntax position, the closest existing table or column names). Use sql_schema to "
        "see the tables first."
    )
    Arguments = SqlArgs
    Output = SqlOutput
    cost = 1.0

    async def call(self, args: SqlArgs, ctx: CallContext) -> ToolResult:
        s = self.sql.settings
        db = self.sql.resolve(ctx, args.db_id)
        max_rows = min(args.max_rows or s.max_rows, s.max_rows)
        limits = Limits(
            max_rows=max_rows, max_bytes=s.max_bytes, count_limit=max(s.count_limit, max_rows)
        )
        deadline = self.sql.deadline(ctx)
        interrupt = Interrupt()
        fmt = args.format or s.text_format
        try:
            if isinstance(db, SqliteDatabase):  # a worker process; no thread needed
                try:
                    result = await db.execute_async(args.query, limits, deadline)
                except QueryError as exc:
                    raise await self.sql.blocking(db.explain, exc, args.query, deadline) from None
            else:
                result = await self.sql.blocking(
                    _query, db, args.query, limits, deadline, interrupt, interrupt=interrupt
                )
        except QueryError as exc:
            return self._failure(exc, db, args, fmt)
        output = SqlOutput(
            db_id=args.db_id,
            engine=db.engine,  # type: ignore[arg-type]
            columns=result.columns,
            types=result.types,
            row_count=result.row_count,
            row_count_exact=result.row_count_exact,
            returned_rows=len(result.rows),
            truncated=result.truncated,
            has_result_set=result.has_result_set,
        )
        content: list[Any] = []
        if result.has_result_set:
            content.append(
                TablePart(columns=result.columns, rows=result.rows, row_count=result.row_count)
            )
        content.append(TextPart(text=self._text(result, fmt)))
        return ToolResult(content=content, data=output.model_dump(), truncated=result.truncated)

    def _text(self, result: QueryResult, fmt: str) -> str:
        s = self.sql.settings
        if fmt == "skyrl":
            return compat.result_text(result.rows, complete=not result.truncated)
        renderer = render.csv_text if fmt == "csv" else render.markdown
        return renderer(result, s.text_max_rows, s.text_max_chars, s.text_max_cell_chars)

    def _failure(self, exc: QueryError, db: Database, args: SqlArgs, fmt: str) -> ToolResult:
        diagnostic = exc.diagnostic(args.query)
        if fmt == "skyrl":
            if exc.kind is ErrorKind.timeout:
                text = compat.timeout_text(args.query)
            else:
                where = f"{db.db_id}/{db.db_id}.sqlite" if db.engine == "sqlite" else db.db_id
                text = compat.error_text(exc.engine_message or exc.message, where)
        else:
            text = render.failure(diagnostic)
        position = exc.position
        output = SqlOutput(
            db_id=args.db_id,
            engine=db.engine,  # type: ignore[arg-type]
            has_result_set=False,
            error_position=None
            if position is None
            else ErrorPosition(offset=position.offset, line=position.line, column=position.column),
            engine_message=exc.engine_message,
        )
        return ToolResult(content=[TextPart(text=text)], data=output.model_dump(), error=diagnostic)


def _query(
    db: Database,
    query: str,
    limits: Limits,
    deadline: float,
    interrupt: Interrupt,
) -> QueryResult:
    """Run the query (in a service thread); failures get did-you-mean hints."""
    try:
        return db.execute(query, limits, deadline, interrupt)
    except QueryError as exc:
        raise db.explain(exc, query, deadline) from None
