"""SQLite databases a session uploaded: kept as the session's state, so forks share them and
they are deleted when the last session holding them ends.

An uploaded database is never written (it is opened read-only like any other), so a fork
shares the file instead of copying it; a reference count says when to delete it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from toolfleet.sql.sqlite import SqliteDatabase

STATE_KEY = "sql.databases"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class UploadedDatabase:
    """One uploaded file and its connections, shared by the sessions that hold it."""

    db: SqliteDatabase
    path: Path
    size: int
    refs: int = 1

    def release(self) -> None:
        """Drop one reference; the last one closes the connections and deletes the file."""
        self.refs -= 1
        if self.refs == 0:
            self.db.close()
            self.path.unlink(missing_ok=True)


@dataclass
class SessionDatabases:
    """The databases of one session, by db_id (a :class:`SessionState`)."""

    databases: dict[str, UploadedDatabase] = field(default_factory=dict)

    async def fork(self) -> SessionDatabases:
        """A copy holding the same databases (shared, read-only)."""
        for upload in self.databases.values():
            upload.refs += 1
        return SessionDatabases(dict(self.databases))

    async def close(self) -> None:
        """Release every database of the session."""
        databases, self.databases = self.databases, {}
        for upload in databases.values():
            upload.release()

    def put(self, db_id: str, upload: UploadedDatabase) -> None:
        """Hold ``upload`` as ``db_id``, releasing what had that name."""
        old = self.databases.pop(db_id, None)
        self.databases[db_id] = upload
        if old is not None:
            old.release()

    def drop(self, db_id: str) -> bool:
        """Release ``db_id``; False when the session had no such database."""
        upload = self.databases.pop(db_id, None)
        if upload is None:
            return False
        upload.release()
        return True


def store(data: bytes, directory: Path) -> Path:
    """Write an uploaded database to a new private file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".sqlite", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
