"""Settings of the sql service: ``TOOLFLEET_SQL_*`` environment variables, or the ``[sql]``
table of the TOML config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from toolfleet.core.settings import ServiceSettings

#: What the ``sql`` tool's text part looks like (see docs/sql.md).
TextFormat = Literal["markdown", "csv", "skyrl"]


class SqlSettings(ServiceSettings):
    """Which databases the sql tools serve, and the limits every query runs under."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_SQL_", extra="forbid")
    section = "sql"

    sqlite_dirs: list[Path] = Field(
        default_factory=list,
        description="Directories of SQLite databases: Spider/BIRD layout "
        "({db_id}/{db_id}.sqlite) and flat files ({db_id}.sqlite, {db_id}.db). A JSON list in "
        "the environment.",
    )
    sqlite_files: dict[str, Path] = Field(
        default_factory=dict, description="db_id -> SQLite file, for files outside those dirs."
    )
    urls: dict[str, str] = Field(
        default_factory=dict,
        description="db_id -> SQLAlchemy URL of a PostgreSQL or MariaDB/MySQL database "
        "(postgresql://ro_user@host/db, mysql://ro_user@host/db; psycopg and PyMySQL drive "
        "them). Connect as a read-only role.",
    )
    require_read_only_role: bool = Field(
        default=True,
        description="Refuse a server database whose connection role can write (superuser, "
        "INSERT/UPDATE/DELETE/CREATE grants); every query still runs in a read-only "
        "transaction either way.",
    )
    query_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest a query may run (the call's timeout_s too)."
    )
    max_rows: int = Field(
        default=1000,
        gt=0,
        description="Most rows returned in a result table (the rest are "
        "counted, up to count_limit).",
    )
    max_bytes: int = Field(
        default=1 << 20, gt=0, description="Approximate JSON size of the rows returned."
    )
    count_limit: int = Field(
        default=10_000,
        gt=0,
        description="Rows counted for row_count before the query is stopped (row_count is "
        "then a lower bound and row_count_exact false).",
    )
    max_value_bytes: int = Field(
        default=16 << 20,
        gt=0,
        description="SQLite: largest string or blob a query may build (SQLITE_LIMIT_LENGTH: "
        "zeroblob, printf, replace, group_concat ...).",
    )
    text_format: TextFormat = Field(
        default="markdown",
        description="Default rendering of the text part: markdown, csv or "
        "skyrl (SkyRL-SQL / verl-tool).",
    )
    text_max_rows: int = Field(default=50, gt=0, description="Rows shown in the text part.")
    text_max_chars: int = Field(
        default=9000, gt=0, description="Characters of the text part (markdown and csv)."
    )
    text_max_cell_chars: int = Field(
        default=200, gt=0, description="Characters of one value in the text part."
    )
    schema_sample_rows: int = Field(
        default=3, ge=0, le=20, description="Sample rows per table shown by sql_schema."
    )
    schema_max_chars: int = Field(
        default=30_000, gt=0, description="Characters of sql_schema's text part."
    )
    threads: int = Field(
        default=8,
        gt=0,
        description="Queries running at once (blocking drivers run in this many threads; "
        "it is also each server database's connection pool size).",
    )
    sqlite_workers: int = Field(
        default=8,
        gt=0,
        description="SQLite: worker processes the queries run in (one query each at a "
        "time); one that overruns its deadline is killed and replaced.",
    )
    sqlite_worker_memory_mb: int = Field(
        default=1024,
        ge=0,
        description="SQLite: address space of each worker process (RLIMIT_AS), temporary "
        "b-trees of sorts, DISTINCT and recursive CTEs included; 0: no limit.",
    )
    max_open_databases: int = Field(
        default=64, gt=0, description="SQLite databases kept open (least recently used closed)."
    )
    max_upload_bytes: int = Field(
        default=64 << 20, gt=0, description="Largest SQLite database a session may upload."
    )
    max_session_databases: int = Field(
        default=8, gt=0, description="Databases one session may hold."
    )
    upload_dir: Path = Field(
        default=Path("/tmp/toolfleet-sql"), description="Where uploaded databases are kept."
    )
