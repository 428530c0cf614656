"""toolfleet's sql service: read-only SQL over SQLite, PostgreSQL and MariaDB.

Its tools are registered with the toolfleet.services entry point named ``sql``, which
points at :func:`tools`. Adding a tool here is one module and one line in that list.
"""

from __future__ import annotations

from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool


def tools(settings: Settings) -> list[Tool]:
    """The tools this service serves, built from settings."""
    return []
