"""Helpers for the sql service's tests: the real databases, a gateway serving them, calls."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from toolfleet.core.registry import ToolRegistry
from toolfleet.sql import tools_for
from toolfleet.sql.settings import SqlSettings
from toolfleet.sql.values import row_to_json

from tests.helpers import SHARED_DATA, call, gateway

DATA = Path(os.environ.get("TOOLFLEET_SQL_DATA", SHARED_DATA / "sql"))
CHINOOK = DATA / "chinook.sqlite"
NORTHWIND = DATA / "northwind.sqlite"
GEOGRAPHY = DATA / "geography.sqlite"
GEOQUERY = DATA / "geography_questions.jsonl"

# What deploy/ensure-databases.sh sets up: Chinook in each server, a read-only role.
PG_URL = "postgresql://toolfleet_ro@127.0.0.1:5432/toolfleet_chinook"
MARIA_URL = "mysql://toolfleet_ro@127.0.0.1:3306/toolfleet_chinook"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=toolfleet_chinook"
MARIA_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "toolfleet_chinook"}
SERVER_URLS = {"chinook_pg": PG_URL, "chinook_maria": MARIA_URL}


def require_servers() -> None:
    """Skip (fail under CI) unless PostgreSQL and MariaDB answer with Chinook loaded."""
    problem = None
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            conn.execute('SELECT 1 FROM "Artist" LIMIT 1')
        import pymysql

        conn = pymysql.connect(connect_timeout=3, **MARIA_ADMIN)
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM Artist LIMIT 1")
        conn.close()
    except Exception as exc:
        problem = (
            f"PostgreSQL/MariaDB with Chinook not reachable ({exc}): run deploy/ensure-databases.sh"
        )
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def sql_registry(**settings: Any) -> ToolRegistry:
    """The sql tools over the shared data directory (and whatever else ``settings`` say)."""
    settings.setdefault("sqlite_dirs", [DATA])
    return ToolRegistry(tools_for(SqlSettings(**settings)))


@asynccontextmanager
async def sql_gateway(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A started gateway serving the sql tools built from ``settings``."""
    async with gateway(sql_registry(**settings), max_body_bytes=8 << 20) as client:
        yield client


async def sql(client: httpx.AsyncClient, db_id: str, query: str, **options: Any) -> dict:
    """Call the sql tool; the observation. ``options``: tool arguments (format, max_rows)
    and call options (timeout_s, session_id ...)."""
    arguments = {"db_id": db_id, "query": query}
    for key in ("format", "max_rows"):
        if key in options:
            arguments[key] = options.pop(key)
    return await call(client, "sql", arguments, **options)


def table(obs: dict) -> dict:
    """The observation's table part."""
    assert obs["ok"], obs.get("error")
    return next(p for p in obs["content"] if p["type"] == "table")


def rows(obs: dict) -> list[list[Any]]:
    """The rows of the observation's table part."""
    return table(obs)["rows"]


def direct(path: Path, query: str) -> list[list[Any]]:
    """The rows of ``query`` run with sqlite3 directly (values as the tool converts them)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row_to_json(r) for r in conn.execute(query).fetchall()]
    finally:
        conn.close()
