"""The process that runs SQLite queries: ``python -m toolfleet.sql.sqlite_worker MEMORY_MB``.

SQLite runs in these worker processes, never in the service's own, because one VM step of a
query can run in C for seconds where neither the progress handler nor ``interrupt()`` reach
it (``printf('%.*c', 2147483647, 'x')``): a thread stuck there used to stall every later
SQLite query of the service for as long. The service (:mod:`sqlite_pool`) kills a worker that
overruns its query's deadline and starts another. A worker also keeps engine bugs reachable
from SQL (``fts3_tokenizer`` wrote pointers; the authorizer refuses it now) out of the
service's memory, and its address space is capped (``RLIMIT_AS``), temporary b-trees
included (``temp_store = MEMORY``), so a memory bomb fails here.

It imports the standard library and the stdlib-only modules of this package (guard, result
caps, value conversion): a replacement starts in tens of milliseconds. One request at a time
comes on stdin and one reply goes to stdout, each a frame: 4-byte big-endian length, then
JSON. The reply is plain JSON (never pickle): the service trusts nothing a worker sends but
its shape and size.

Requests: ``{"op": "query", "path", "untrusted", "max_value_bytes", "sql", "deadline",
"max_rows", "max_bytes", "count_limit"}``, ``{"op": "schema", "path", "untrusted",
"max_value_bytes", "deadline"}``, ``{"op": "ping"}``; each may carry ``"forget": [paths]``
(close those databases first: they were deleted or evicted). Replies: ``{"ok": true, ...}``
or ``{"ok": false, "failure": {...}}`` (see :func:`failure`), with ``"recycle": true`` when
the worker holds much memory after it (a memory bomb's heap): the service then replaces it.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import sqlite3
import struct
import sys
import urllib.parse
from collections import OrderedDict
from typing import Any, BinaryIO

from toolfleet.sql.results import Limits, RowCollector
from toolfleet.sql.sqlite_guard import Guard

HEADER = struct.Struct(">I")
FETCH = 256
MAX_SQL_CHARS = 1_000_000
OPEN_DATABASES = 16  # connections a worker keeps open (least recently used closed first)
#: SQLite's storage class of each Python type its driver returns.
STORAGE_CLASSES = {int: "INTEGER", float: "REAL", str: "TEXT", bytes: "BLOB"}
#: A worker whose resident memory stays above this after a request asks to be replaced: the
#: heap a memory bomb grew is not given back to the system.
RECYCLE_RSS_BYTES = 256 << 20
PAGE_BYTES = resource.getpagesize()


def encode_frame(message: dict[str, Any]) -> bytes:
    """``message`` as a frame: length, then ASCII JSON (NaN refused: values are converted)."""
    body = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return HEADER.pack(len(body)) + body.encode("ascii")


def failure(
    kind: str,
    message: str = "",
    *,
    engine_message: str | None = None,
    offset: int | None = None,
    hint: str | None = None,
    subject: tuple[str, str] | None = None,
    refused: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """A failed request: ``kind`` is an ErrorKind value, or ``too_big`` / ``refused`` /
    ``timeout`` for the service to word (it holds the limits and the shared wording)."""
    return {
        "ok": False,
        "failure": {
            "kind": kind,
            "message": message,
            "engine_message": engine_message,
            "offset": offset,
            "hint": hint,
            "subject": list(subject) if subject else None,
            "refused": list(refused) if refused else None,
        },
    }


# ---------------------------------------------------------------------- connections


class Connections:
    """This worker's open read-only connections, by (path, untrusted), with their guards."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple[str, bool], tuple[sqlite3.Connection, Guard]] = OrderedDict()

    def get(
        self, path: str, untrusted: bool, max_value_bytes: int
    ) -> tuple[sqlite3.Connection, Guard]:
        key = (path, untrusted)
        found = self._open.get(key)
        if found is not None:
            self._open.move_to_end(key)
            found[0].setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
            return found
        conn = sqlite3.connect(
            f"file:{urllib.parse.quote(path)}?mode=ro",
            uri=True,
            isolation_level=None,
            timeout=1.0,
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        # temporary b-trees (DISTINCT, ORDER BY, recursive CTEs) in memory, under RLIMIT_AS,
        # rather than in files of unbounded size
        conn.execute("PRAGMA temp_store = MEMORY")
        if untrusted:
            conn.execute("PRAGMA cell_size_check = ON")
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_CHARS)
        guard = Guard()
        guard.install(conn)  # last: the PRAGMAs above are the service's own
        self._open[key] = (conn, guard)
        while len(self._open) > OPEN_DATABASES:
            self._open.popitem(last=False)[1][0].close()
        return conn, guard

    def forget(self, path: str) -> None:
        for key in [k for k in self._open if k[0] == path]:
            self._open.pop(key)[0].close()


# ---------------------------------------------------------------------- requests


def handle(request: dict[str, Any], conns: Connections) -> dict[str, Any]:
    """The reply to one request."""
    for path in request.get("forget") or ():
        conns.forget(path)
    op = request.get("op")
    if op == "ping":
        return {"ok": True}
    try:
        conn, guard = conns.get(request["path"], request["untrusted"], request["max_value_bytes"])
    except sqlite3.Error as exc:
        return failure("unavailable", f"the database cannot be opened: {exc}")
    guard.arm(request["deadline"])
    try:
        if op == "query":
            return query(conn, guard, request)
        if op == "schema":
            return schema(conn)
        return failure("internal", f"unknown request {op!r}")
    except (sqlite3.Error, sqlite3.Warning) as exc:
        return classify_failure(exc, request.get("sql", ""), conn, guard)
    finally:
        guard.disarm()
        try:
            if conn.in_transaction:  # a BEGIN of the query's own
                conn.rollback()
        except sqlite3.Error:
            conns.forget(request["path"])


def query(conn: sqlite3.Connection, guard: Guard, request: dict[str, Any]) -> dict[str, Any]:
    """Run the query; its result within the caps."""
    limits = Limits(request["max_rows"], request["max_bytes"], request["count_limit"])
    sql = request["sql"]
    try:
        try:
            return _fetch(conn, sql, limits)
        except UnicodeDecodeError:
            pass
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc):
                raise
        # Text that is not UTF-8 (seen in some benchmark databases): decode leniently.
        conn.text_factory = _lenient_text
        return _fetch(conn, sql, limits)
    finally:
        conn.text_factory = str


def _fetch(conn: sqlite3.Connection, sql: str, limits: Limits) -> dict[str, Any]:
    cursor = conn.execute(sql)
    try:
        if cursor.description is None:
            return {"ok": True, "columns": [], "types": [], "has_result_set": False}
        columns = [d[0] for d in cursor.description]
        collector = RowCollector(limits, track_types=True)
        while batch := cursor.fetchmany(FETCH):
            if not all(collector.add(row) for row in batch):
                break
        types = [
            "|".join(STORAGE_CLASSES.get(t, "TEXT") for t in seen) or None
            for seen in collector.value_types
        ] or [None] * len(columns)
        return {
            "ok": True,
            "columns": columns,
            "types": types,
            "rows": collector.rows,
            "row_count": collector.count,
            "row_count_exact": collector.exhausted,
            "has_result_set": True,
        }
    finally:
        cursor.close()


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """The tables and views (columns, keys), and which tables are virtual."""
    master = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).fetchall()
    tables = []
    virtual = []
    for kind, name, sql in master:
        if " ".join((sql or "").split()[:3]).upper() == "CREATE VIRTUAL TABLE":
            virtual.append(name)
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            info = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
        except sqlite3.OperationalError:  # a view over a column that is gone
            info = []
        pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        fks: dict[int, dict[str, Any]] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({quoted})").fetchall():
            fk = fks.setdefault(row[0], {"columns": [], "ref_table": row[2], "ref_columns": []})
            fk["columns"].append(row[3])
            if row[4] is not None:
                fk["ref_columns"].append(row[4])
        tables.append(
            {
                "name": name,
                "kind": "view" if kind == "view" else "table",
                "columns": [
                    {
                        "name": r[1],
                        "type": r[2] or "",
                        "nullable": not r[3],
                        "primary_key": bool(r[5]),
                    }
                    for r in info
                ],
                "primary_key": pk,
                "foreign_keys": list(fks.values()),
            }
        )
    return {"ok": True, "tables": tables, "virtual_tables": virtual}


# ---------------------------------------------------------------------- failures

_NEAR = re.compile(r'^near "(.*)": syntax error$', re.S)
_UNRECOGNIZED = re.compile(r'^unrecognized token: "(.*)"$', re.S)
_NO_TABLE = re.compile(r"^no such table: (.+)$")
_NO_COLUMN = re.compile(r"^no such column: (.+)$")
_AMBIGUOUS = re.compile(r"^ambiguous column name: (.+)$")
_NO_FUNCTION = re.compile(r"^no such function: (.+)$")


def classify_failure(
    exc: Exception, sql: str, conn: sqlite3.Connection, guard: Guard
) -> dict[str, Any]:
    """A SQLite error as a failure reply (kind, position, subject for did-you-mean hints)."""
    message = str(exc)
    code = getattr(exc, "sqlite_errorname", "")
    if guard.refused is not None:
        return failure("refused", engine_message=message, refused=guard.refused)
    if message == "interrupted":
        return failure("timeout", engine_message=message)
    if code == "SQLITE_READONLY" or "readonly database" in message:
        return failure("refused", engine_message=message, refused=("a write", None))
    if message.endswith("may not be modified"):
        return failure("refused", engine_message=message, refused=(message, None))
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in message:
        return failure("one_statement", engine_message=message)
    if code == "SQLITE_TOOBIG" or "too big" in message:
        return failure("too_big", engine_message=message)
    if code == "SQLITE_NOMEM" or message == "out of memory":
        return failure("memory_limit", engine_message=message)
    if m := _NEAR.match(message):
        token = m.group(1)
        return failure(
            "syntax_error",
            f"syntax error near {token!r}",
            engine_message=message,
            offset=_syntax_error_offset(conn, sql, token),
        )
    if message == "incomplete input":
        return failure(
            "syntax_error",
            "syntax error: the query ends too early (unclosed parenthesis, quote or clause?)",
            engine_message=message,
            offset=len(sql.rstrip().rstrip(";").rstrip()),
            hint="Complete the statement: close every parenthesis and quote.",
        )
    if m := _UNRECOGNIZED.match(message):
        offset = sql.find(m.group(1))
        return failure(
            "syntax_error",
            f"unrecognized token {m.group(1)!r} (an unclosed quote?)",
            engine_message=message,
            offset=None if offset < 0 else offset,
            hint="Strings use single quotes ('text'); identifiers double quotes (\"name\").",
        )
    for pattern, kind, what, text in (
        (_NO_TABLE, "not_found", "table", "no such table: {}"),
        (_NO_COLUMN, "not_found", "column", "no such column: {}"),
        (_AMBIGUOUS, "runtime_error", "ambiguous_column", "ambiguous column name: {}"),
        (_NO_FUNCTION, "not_found", "function", "no such function: {}"),
    ):
        if m := pattern.match(message):
            name = m.group(1)
            return failure(
                kind,
                text.format(name),
                engine_message=message,
                offset=_find_word(sql, name.rsplit(".", 1)[-1]),
                subject=(what, name),
            )
    return failure("runtime_error", message, engine_message=message)


def _syntax_error_offset(conn: sqlite3.Connection, query: str, token: str) -> int | None:
    """Where SQLite's parser stopped: the occurrence of ``token`` such that the query cut
    right after it fails to compile with the same error (compiled with EXPLAIN, not run)."""
    candidates = _occurrences(query, token)
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    expected = f'near "{token}": syntax error'
    for offset in candidates[:20]:
        try:
            conn.execute("EXPLAIN " + query[: offset + len(token)]).close()
        except sqlite3.Error as exc:
            if str(exc) == expected:
                return offset
    return candidates[0]


def _occurrences(query: str, token: str) -> list[int]:
    """Offsets of ``token`` in the query outside string literals and comments, at word
    boundaries when the token is a word."""
    if not token:
        return []
    code = _blank_literals(query)
    word = token[0].isalnum() or token[0] == "_"
    found, start = [], 0
    while (i := code.find(token, start)) >= 0:
        start = i + 1
        if word and (
            (i > 0 and (code[i - 1].isalnum() or code[i - 1] == "_"))
            or (
                i + len(token) < len(code)
                and (code[i + len(token)].isalnum() or code[i + len(token)] == "_")
            )
        ):
            continue
        found.append(i)
    if not found and token in query:  # the token is itself a literal
        found.append(query.find(token))
    return found


def _find_word(query: str, word: str) -> int | None:
    word = word.strip('"`[]')
    found = _occurrences(query, word) or _occurrences(query.lower(), word.lower())
    return found[0] if found else None


_LITERAL = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/", re.S)


def _blank_literals(query: str) -> str:
    """The query with string literals and comments blanked out (same length)."""
    return _LITERAL.sub(lambda m: " " * len(m.group(0)), query)


# ---------------------------------------------------------------------- the process


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def _confine(memory_mb: int) -> None:
    """Cap the address space and write no core files. (No PR_SET_PDEATHSIG: it fires when
    the *thread* that started the worker ends; a closed stdin ends the worker instead.)"""
    if memory_mb > 0:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the service


def main(argv: list[str]) -> int:
    """Serve requests from stdin until it closes."""
    _confine(int(argv[1]) if len(argv) > 1 else 0)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    conns = Connections()
    while True:
        header = _read_exactly(stdin, HEADER.size)
        if header is None:
            return 0
        body = _read_exactly(stdin, HEADER.unpack(header)[0])
        if body is None:
            return 0
        try:
            reply = handle(json.loads(body), conns)
            if _resident_bytes() > RECYCLE_RSS_BYTES:
                reply["recycle"] = True
            frame = encode_frame(reply)
        except MemoryError:
            frame = encode_frame(failure("memory_limit"))
        except Exception as exc:  # a bug here must not end the worker: say what it was
            frame = encode_frame(failure("internal", f"{type(exc).__name__}: {exc}"))
        stdout.write(frame)
        stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
