"""The hidden ``sql_database`` tool: a session uploads, deletes and lists SQLite databases
of its own (kept as session state, see :mod:`toolfleet.sql.session_databases`)."""

from __future__ import annotations

import base64
import binascii
from typing import ClassVar

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import CallContext, ToolError, ToolResult
from toolfleet.sql.catalog import valid_db_id
from toolfleet.sql.errors import QueryError
from toolfleet.sql.models import DatabaseArgs, DatabaseOutput, UploadInfo
from toolfleet.sql.service import SqlTool
from toolfleet.sql.session_databases import (
    SQLITE_MAGIC,
    STATE_KEY,
    SessionDatabases,
    UploadedDatabase,
    store,
)
from toolfleet.sql.sqlite import SqliteDatabase


class DatabaseTool(SqlTool[DatabaseArgs]):
    """A session's own SQLite databases. Hidden from the model's tool list: trainers call it
    (``POST /v1/tools/sql_database/call`` with the session) to give a task its database."""

    name = "sql_database"
    description = "Upload, delete and list a session's own SQLite databases."
    Arguments = DatabaseArgs
    Output = DatabaseOutput
    hidden: ClassVar[bool] = True

    async def call(self, args: DatabaseArgs, ctx: CallContext) -> ToolResult:
        if ctx.session_id is None:
            raise ToolError(
                ErrorKind.invalid_arguments,
                "session databases need a session",
                hint="Send the call with a session_id or a trajectory_id.",
            )
        held = self.sql.session_databases(ctx)
        if args.action in ("put", "delete") and not (args.db_id and valid_db_id(args.db_id)):
            raise ToolError(ErrorKind.invalid_arguments, "db_id: a name like 'my_db' is required")
        if args.action == "put":
            if held is None:
                held = SessionDatabases()
                ctx.set_state(STATE_KEY, held)
            await self._put(held, args, ctx)
        elif args.action == "delete" and (held is None or not held.drop(args.db_id or "")):
            raise ToolError(ErrorKind.not_found, f"the session has no database {args.db_id!r}")
        return ToolResult(data=DatabaseOutput(databases=await self._list(held)).model_dump())

    async def _put(self, held: SessionDatabases, args: DatabaseArgs, ctx: CallContext) -> None:
        s = self.sql.settings
        encoded = args.data or ""
        if len(encoded) // 4 * 3 > s.max_upload_bytes + 3:
            raise _too_large(len(encoded) // 4 * 3, s.max_upload_bytes)
        try:
            data = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise ToolError(ErrorKind.invalid_arguments, f"data is not base64: {exc}") from None
        if len(data) > s.max_upload_bytes:
            raise _too_large(len(data), s.max_upload_bytes)
        if not data.startswith(SQLITE_MAGIC):
            raise ToolError(ErrorKind.invalid_arguments, "data is not a SQLite database file")
        other = len(held.databases) - (args.db_id in held.databases)
        if other >= s.max_session_databases:
            raise ToolError(
                ErrorKind.output_limit,
                f"the session already holds {other} databases (the limit)",
                hint="Delete one first.",
            )
        path = await self.sql.blocking(store, data, s.upload_dir)
        db = SqliteDatabase(
            args.db_id or "",
            path,
            pool=self.sql.sqlite_pool,
            max_value_bytes=s.max_value_bytes,
            untrusted=True,
        )
        upload = UploadedDatabase(db=db, path=path, size=len(data))
        try:
            await self.sql.blocking(db.schema, self.sql.deadline(ctx))
        except QueryError as exc:
            upload.release()
            raise ToolError(
                ErrorKind.invalid_arguments, f"the file is not a usable SQLite database: {exc}"
            ) from None
        if db.virtual_tables:
            # FTS and r-tree modules parse their shadow tables' bytes: crafted ones have
            # corrupted memory in past SQLite releases. An uploaded file is not trusted.
            upload.release()
            raise ToolError(
                ErrorKind.invalid_arguments,
                "the database holds virtual tables ("
                + ", ".join(db.virtual_tables[:5])
                + "), which uploaded databases may not",
                hint="Upload a copy with plain tables (CREATE TABLE ... AS SELECT ...).",
            )
        held.put(args.db_id or "", upload)

    async def _list(self, held: SessionDatabases | None) -> list[UploadInfo]:
        if held is None:
            return []
        found = []
        for db_id, upload in sorted(held.databases.items()):
            tables = await self.sql.blocking(upload.db.schema, float("inf"))
            found.append(
                UploadInfo(db_id=db_id, bytes=upload.size, tables=[t.name for t in tables.tables])
            )
        return found


def _too_large(size: int, limit: int) -> ToolError:
    return ToolError(
        ErrorKind.output_limit, f"the database is {size} bytes, over the limit of {limit}"
    )
