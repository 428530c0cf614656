"""Arguments and structured outputs of the sql tools (their JSON Schemas come from here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from toolfleet.core.tool import ToolArguments
from toolfleet.sql.schema import TableInfo
from toolfleet.sql.settings import TextFormat

DB_ID = Field(
    min_length=1,
    max_length=128,
    description="Which database: its id (e.g. the Spider/BIRD db_id, or a name the session "
    "uploaded).",
)


class SqlArgs(ToolArguments):
    """Arguments of the sql tool."""

    db_id: str = DB_ID
    query: str = Field(
        min_length=1, max_length=100_000, description="One SQL statement (read-only)."
    )
    format: TextFormat | None = Field(
        default=None,
        description="Text rendering: markdown (default), csv, or skyrl (the observation text "
        "of SkyRL-SQL / verl-tool).",
    )
    max_rows: int | None = Field(
        default=None, ge=1, description="Return at most this many rows (capped by the server)."
    )


class ErrorPosition(BaseModel):
    """Where in the query an error is."""

    offset: int = Field(description="0-based character offset in the query.")
    line: int = Field(description="1-based line.")
    column: int = Field(description="1-based column.")


class SqlOutput(BaseModel):
    """Structured output of the sql tool (the rows are in the observation's table part)."""

    db_id: str = Field(description="The database queried.")
    engine: Literal["sqlite", "postgresql", "mariadb"] = Field(description="Its engine.")
    columns: list[str] = Field(default_factory=list, description="Column names, in order.")
    types: list[str | None] = Field(
        default_factory=list,
        description="Per column: the engine's type name (PostgreSQL, MariaDB), or the storage "
        "classes of the returned values (SQLite: INTEGER, REAL, TEXT, BLOB; 'INTEGER|TEXT' "
        "when mixed; null when all NULL).",
    )
    row_count: int = Field(
        default=0, description="Rows in the full result (a lower bound if not exact)."
    )
    row_count_exact: bool = Field(
        default=True, description="False when counting stopped at the server's count limit."
    )
    returned_rows: int = Field(default=0, description="Rows in the table part.")
    truncated: bool = Field(default=False, description="True when rows were left out.")
    has_result_set: bool = Field(
        default=True, description="False for a statement that returns no rows at all."
    )
    error_position: ErrorPosition | None = Field(
        default=None, description="Where the error is in the query, when the engine says."
    )
    engine_message: str | None = Field(
        default=None, description="The engine's own error message, verbatim."
    )


class SchemaArgs(ToolArguments):
    """Arguments of the sql_schema tool."""

    db_id: str = DB_ID
    tables: list[str] | None = Field(
        default=None, max_length=200, description="Only these tables (default: all)."
    )
    sample_rows: int | None = Field(
        default=None, ge=0, le=20, description="Sample rows per table (default 3)."
    )


class SchemaOutput(BaseModel):
    """Structured output of the sql_schema tool."""

    db_id: str = Field(description="The database described.")
    engine: Literal["sqlite", "postgresql", "mariadb"] = Field(description="Its engine.")
    tables: list[TableInfo] = Field(description="Tables and views, with keys and samples.")


class DatabaseArgs(ToolArguments):
    """Arguments of the hidden sql_database tool (a session's own SQLite databases)."""

    action: Literal["put", "delete", "list"] = Field(description="What to do.")
    db_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
        description="Name of the database in the session (put, delete).",
    )
    data: str | None = Field(default=None, description="put: the SQLite file, base64.")


class UploadInfo(BaseModel):
    """A database a session holds."""

    db_id: str = Field(description="Its name in the session.")
    bytes: int = Field(description="Size of the file.")
    tables: list[str] = Field(default_factory=list, description="Its tables and views.")


class DatabaseOutput(BaseModel):
    """Structured output of the sql_database tool."""

    databases: list[UploadInfo] = Field(description="The session's databases after the action.")
