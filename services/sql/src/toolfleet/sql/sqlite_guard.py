"""What makes a SQLite connection read-only, harmless and time-limited, enforced by SQLite
itself. It runs in the SQLite worker processes (:mod:`sqlite_worker`): standard library only.

Layers, each sufficient for writes to the file:
1. the file is opened with ``mode=ro`` (the OS-level open is read-only);
2. ``PRAGMA query_only`` refuses every statement that would change the database;
3. an authorizer refuses, at compile time, every action that writes or changes the
   connection: DML, DDL (temporary objects too, which query_only allows), ATTACH/DETACH
   (also ``SQLITE_LIMIT_ATTACHED`` = 0), VACUUM (INTO), REINDEX, ANALYZE, virtual tables,
   and every PRAGMA but the informational ones; and every function or table-valued function
   that loads code, touches memory behind SQL's back or reads files (:data:`REFUSED_FUNCTIONS`,
   :data:`REFUSED_TABLES`: ``load_extension``, ``fts3_tokenizer`` ...);
4. a progress handler stops a statement past its deadline. One VM step that never returns
   (``printf('%.*c', 2147483647, 'x')`` loops in C for seconds) is beyond it: the worker
   process is then killed by the service and replaced.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

# Authorizer action codes (sqlite3.h), with what a refusal says.
WRITES = {
    1: "CREATE INDEX",
    2: "CREATE TABLE",
    3: "CREATE TEMP INDEX",
    4: "CREATE TEMP TABLE",
    5: "CREATE TEMP TRIGGER",
    6: "CREATE TEMP VIEW",
    7: "CREATE TRIGGER",
    8: "CREATE VIEW",
    10: "DROP INDEX",
    11: "DROP TABLE",
    12: "DROP TEMP INDEX",
    13: "DROP TEMP TABLE",
    14: "DROP TEMP TRIGGER",
    15: "DROP TEMP VIEW",
    16: "DROP TRIGGER",
    17: "DROP VIEW",
    24: "ATTACH",
    25: "DETACH",
    26: "ALTER TABLE",
    27: "REINDEX",
    28: "ANALYZE",
    29: "CREATE VIRTUAL TABLE",
    30: "DROP VIRTUAL TABLE",
}
DML = {9: "DELETE", 18: "INSERT", 23: "UPDATE"}
PRAGMA, READ, FUNCTION = 19, 20, 31
SCHEMA_TABLES = {"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"}

#: PRAGMAs that only describe the database; any other is refused (they set things).
INFORMATIONAL_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "collation_list",
    "function_list",
    "module_list",
    "pragma_list",
    "database_list",
}
#: PRAGMAs that may be read (without an argument) but not set.
READABLE_PRAGMAS = {"encoding", "user_version", "application_id", "schema_version", "page_size"}
#: Functions refused, with why (the diagnostic says it). SQLite's own list for this build is
#: reviewed by a test (tests/test_sql_hostile.py): a new function fails it until it is judged.
REFUSED_FUNCTIONS = {
    "load_extension": "it loads native code into the process",
    "fts3_tokenizer": "it reads and overwrites tokenizer pointers in the process's memory",
    "fts5": "it hands out a pointer to the FTS5 API",
    "rtreenode": "it is a debugging function that parses raw r-tree node blobs",
    "rtreedepth": "it is a debugging function that parses raw r-tree node blobs",
    "rtreecheck": "it is a debugging function that reads r-tree shadow tables",
    "readfile": "it reads files",
    "writefile": "it writes files",
    "edit": "it starts an editor",
    "lsmode": "it belongs to the file-system functions",
}
#: Table-valued functions (eponymous virtual tables) refused, with why.
REFUSED_TABLES = {
    "dbstat": "it parses raw database pages",
    "sqlite_dbpage": "it reads raw database pages",
    "sqlite_dbdata": "it parses raw database pages",
    "sqlite_dbptr": "it parses raw database pages",
    "fsdir": "it lists and reads files",
    "zipfile": "it reads files",
}
PROGRESS_STEPS = 10_000  # VM instructions between deadline checks (well under a millisecond)


class Guard:
    """The authorizer and progress handler of one connection, and why it last refused."""

    def __init__(self) -> None:
        self.deadline = float("inf")
        #: what the authorizer refused in the last statement, and why (None: it writes)
        self.refused: tuple[str, str | None] | None = None
        self.stopped_late = False  # the progress handler stopped the statement at its deadline

    def arm(self, deadline: float) -> None:
        """Limit the next statements to ``deadline`` (time.monotonic())."""
        self.deadline = deadline
        self.refused = None
        self.stopped_late = False

    def disarm(self) -> None:
        """Back to idle (no deadline) between calls."""
        self.deadline = float("inf")

    def install(self, conn: sqlite3.Connection) -> None:
        """Attach the authorizer and progress handler to ``conn``."""
        conn.set_authorizer(self.authorize)
        conn.set_progress_handler(self.progress, PROGRESS_STEPS)

    def authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: Any
    ) -> int:
        """sqlite3 authorizer callback: refuse what writes or changes the connection, and
        the functions and tables that reach past SQL."""
        what = WRITES.get(action)
        why: str | None = None
        if what is None and action == PRAGMA:
            name = (arg1 or "").lower()
            if name in INFORMATIONAL_PRAGMAS or (name in READABLE_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
            what = f"PRAGMA {name}" + ("" if arg2 is None else f" = {arg2}")
        elif what is None and action in DML and (arg1 or "").lower() not in SCHEMA_TABLES:
            what = DML[action]
        # DML on sqlite_master is SQLite's own bookkeeping of DDL (refused above by its own
        # action code) or of table-valued PRAGMA functions; written directly, SQLite refuses
        # it ("may not be modified", and query_only, mode=ro).
        elif what is None and action == FUNCTION and (arg2 or "").lower() in REFUSED_FUNCTIONS:
            what, why = f"{arg2}()", REFUSED_FUNCTIONS[(arg2 or "").lower()]
        elif what is None and action == READ and (arg1 or "").lower() in REFUSED_TABLES:
            what, why = arg1, REFUSED_TABLES[(arg1 or "").lower()]
        if what is None:
            return sqlite3.SQLITE_OK
        if self.refused is None:
            self.refused = (what, why)
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        """sqlite3 progress handler: non-zero stops the running statement."""
        if time.monotonic() >= self.deadline:
            self.stopped_late = True
            return 1
        return 0
