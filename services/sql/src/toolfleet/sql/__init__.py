"""toolfleet's sql service: read-only SQL over SQLite, PostgreSQL and MariaDB.

Its tools are registered with the toolfleet.services entry point named ``sql``, which
points at :func:`tools`. Adding a tool here is one module and one line in :func:`tools_for`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nothing at import time: the SQLite workers import this package
    from toolfleet.core.settings import Settings
    from toolfleet.core.tool import Tool
    from toolfleet.sql.settings import SqlSettings


def tools(settings: Settings) -> list[Tool]:
    """The tools this service serves, over the databases the ``TOOLFLEET_SQL_*`` settings
    name."""
    from toolfleet.sql.settings import SqlSettings

    return tools_for(SqlSettings())


def tools_for(settings: SqlSettings) -> list[Tool]:
    """sql, sql_schema and the hidden sql_database, sharing one service."""
    from toolfleet.sql.describe import SchemaTool
    from toolfleet.sql.query import QueryTool
    from toolfleet.sql.service import SqlService
    from toolfleet.sql.uploads import DatabaseTool

    sql = SqlService(settings)
    return [QueryTool(sql), SchemaTool(sql), DatabaseTool(sql)]
