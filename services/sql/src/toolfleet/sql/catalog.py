"""Which database a ``db_id`` names: SQLite files found in the configured directories
(Spider/BIRD layout or flat) or named one by one, and server databases named by URL.

SQLite databases are opened on first use and kept open, least recently used first out, up
to ``max_open_databases``; directories are not scanned up front (a SynSQL directory holds
thousands of databases), only looked up by name.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from toolfleet.sql.database import Database
from toolfleet.sql.mariadb import MariaDatabase
from toolfleet.sql.postgres import PostgresDatabase
from toolfleet.sql.server import ServerDatabase, make_url
from toolfleet.sql.settings import SqlSettings
from toolfleet.sql.sqlite import SqliteDatabase
from toolfleet.sql.sqlite_pool import SqlitePool

#: What a db_id may look like (it becomes part of a file path).
DB_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
SQLITE_SUFFIXES = (".sqlite", ".db", ".sqlite3")
LISTING_TTL_S = 30.0


def valid_db_id(db_id: str) -> bool:
    """True when ``db_id`` is a plain name (no path separators, no '..')."""
    return bool(DB_ID.match(db_id)) and ".." not in db_id


class UnsupportedEngineError(ValueError):
    """A URL of an engine the service does not serve."""


def server_database(db_id: str, url: str, settings: SqlSettings) -> ServerDatabase:
    """The database a SQLAlchemy URL names."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    kinds: dict[str, type[ServerDatabase]] = {
        "postgresql": PostgresDatabase,
        "mysql": MariaDatabase,
        "mariadb": MariaDatabase,
    }
    if backend not in kinds:
        raise UnsupportedEngineError(
            f"database {db_id!r}: {backend} is not supported (PostgreSQL, MariaDB, MySQL are)"
        )
    return kinds[backend](
        db_id,
        parsed,
        pool_size=settings.threads,
        require_read_only=settings.require_read_only_role,
    )


class Catalog:
    """The databases configured in settings, opened on demand."""

    def __init__(self, settings: SqlSettings, sqlite_pool: SqlitePool) -> None:
        self.settings = settings
        self.sqlite_pool = sqlite_pool
        self.servers: dict[str, ServerDatabase] = {
            db_id: server_database(db_id, url, settings) for db_id, url in settings.urls.items()
        }
        self._open: OrderedDict[str, SqliteDatabase] = OrderedDict()
        self._lock = threading.Lock()
        self._listing: tuple[float, list[str]] | None = None

    def find(self, db_id: str) -> Database | None:
        """The database called ``db_id``, or None."""
        if db_id in self.servers:
            return self.servers[db_id]
        with self._lock:
            db = self._open.get(db_id)
            if db is not None:
                self._open.move_to_end(db_id)
                return db
        path = self.sqlite_path(db_id)
        if path is None:
            return None
        with self._lock:
            db = self._open.get(db_id)
            if db is None:
                db = SqliteDatabase(
                    db_id,
                    path,
                    pool=self.sqlite_pool,
                    max_value_bytes=self.settings.max_value_bytes,
                    untrusted=False,
                )
                self._open[db_id] = db
            evicted = []
            while len(self._open) > self.settings.max_open_databases:
                evicted.append(self._open.popitem(last=False)[1])
        for old in evicted:
            old.close()
        return db

    def sqlite_path(self, db_id: str) -> Path | None:
        """The file of SQLite database ``db_id``: named in sqlite_files, else the first of
        ``{dir}/{db_id}/{db_id}.sqlite``, ``{dir}/{db_id}.sqlite`` (.db, .sqlite3) in the
        directories, in order."""
        if db_id in self.settings.sqlite_files:
            return self.settings.sqlite_files[db_id]
        if not valid_db_id(db_id):
            return None
        for directory in self.settings.sqlite_dirs:
            for candidate in (
                directory / db_id / f"{db_id}.sqlite",
                *(directory / f"{db_id}{suffix}" for suffix in SQLITE_SUFFIXES),
            ):
                if candidate.is_file():
                    return candidate
        return None

    def names(self) -> list[str]:
        """Every db_id served, for hints (directories are listed at most every 30 s; a
        subdirectory counts as a Spider-layout database without looking inside)."""
        now = time.monotonic()
        if self._listing is not None and now - self._listing[0] < LISTING_TTL_S:
            return self._listing[1]
        found = dict.fromkeys([*self.servers, *self.settings.sqlite_files])
        for directory in self.settings.sqlite_dirs:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:  # d_type only: no stat per entry (SynSQL has thousands)
                stem, suffix = os.path.splitext(entry.name)
                if entry.is_dir():
                    found[entry.name] = None
                elif suffix in SQLITE_SUFFIXES:
                    found[stem] = None
        names = list(found)
        self._listing = (now, names)
        return names

    def close(self) -> None:
        """Close every database."""
        with self._lock:
            opened, self._open = list(self._open.values()), OrderedDict()
        for db in [*opened, *self.servers.values()]:
            db.close()

    def status(self) -> dict[str, Any]:
        """What operators see in /readyz."""
        return {
            "sqlite_dirs": [str(d) for d in self.settings.sqlite_dirs],
            "sqlite_open": len(self._open),
            "servers": {db_id: db.status() for db_id, db in self.servers.items()},
        }
