"""toolfleet's sql service: read-only SQL over SQLite, PostgreSQL and MariaDB.

The service is :class:`toolfleet.sql.service.SqlService`, named by the ``toolfleet.services``
entry point ``sql``; adding a tool is one module and one line in its ``tools()`` list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nothing at import time: the SQLite workers import this package
    from toolfleet.core.tool import Tool
    from toolfleet.sql.settings import SqlSettings


def tools_for(settings: SqlSettings) -> list[Tool]:
    """sql, sql_schema and the hidden sql_database, over a new service of ``settings``."""
    from toolfleet.sql.service import SqlService

    return SqlService(settings).tools()
