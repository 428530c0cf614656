"""Hostile SQL through the gateway (issue 14, item 4): each attack fails with a diagnostic the
model can learn from, and a benign query answers right after.

Before: ``SELECT printf('%.*c', 2147483647, 'x')`` twice with ``timeout_s: 1`` answered
timeout, then every SQLite query timed out for as long as that C loop ran (one VM step:
neither the progress handler nor interrupt reached it); ``fts3_tokenizer`` leaked a pointer
of the gateway process and could overwrite one. Now SQLite runs in worker processes, killed
and replaced at the deadline, and functions that reach past SQL are refused."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_asyncio
from toolfleet.sql.sqlite_guard import REFUSED_FUNCTIONS

from tests.helpers import call
from tests.helpers.sql import SERVER_URLS, require_servers, rows, sql, sql_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRINTF_BOMB = "SELECT printf('%.*c', 2147483647, 'x')"
BENIGN = "SELECT Name FROM Artist WHERE ArtistId = 1"

#: Every function of this build's SQLite judged harmless: a new SQLite that adds one fails
#: test_every_sqlite_function_is_judged until it is put here or in REFUSED_FUNCTIONS.
HARMLESS_FUNCTIONS = {
    *("->", "->>", "abs", "avg", "changes", "char", "coalesce", "count", "format", "glob"),
    *("group_concat", "hex", "ifnull", "iif", "instr", "last_insert_rowid", "length", "like"),
    *("likelihood", "likely", "lower", "ltrim", "max", "min", "nullif", "printf", "quote"),
    *("random", "randomblob", "replace", "round", "rtrim", "sign", "soundex", "substr"),
    *("substring", "subtype", "sum", "total", "total_changes", "trim", "typeof", "unicode"),
    *("unlikely", "upper", "zeroblob", "sqlite_compileoption_get", "sqlite_compileoption_used"),
    *("sqlite_log", "sqlite_source_id", "sqlite_version", "fts5_source_id"),
    # math, dates, windows, JSON
    *("acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling", "cos"),
    *("cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod", "pi", "pow"),
    *("power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc"),
    *("current_date", "current_time", "current_timestamp", "date", "datetime", "julianday"),
    *("strftime", "time", "unixepoch"),
    *("cume_dist", "dense_rank", "first_value", "lag", "last_value", "lead", "nth_value"),
    *("ntile", "percent_rank", "rank", "row_number"),
    *("json", "json_array", "json_array_length", "json_extract", "json_group_array"),
    *("json_group_object", "json_insert", "json_object", "json_patch", "json_quote"),
    *("json_remove", "json_replace", "json_set", "json_type", "json_valid"),
    # FTS auxiliary functions: only usable on FTS tables, which uploads may not hold
    *("bm25", "highlight", "snippet", "matchinfo", "offsets", "optimize", "match"),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    async with sql_gateway(sqlite_workers=4, sqlite_worker_memory_mb=512) as c:
        yield c


async def sql_status(client) -> dict:
    return (await client.get("/readyz")).json()["services"]["sql"]


async def replaced(client, killed_before: int, count: int) -> dict:
    """The sql status once ``count`` more workers were killed and every one was replaced
    (replacements start in the background)."""
    for _ in range(100):
        status = await sql_status(client)
        if (
            status["sqlite_workers_killed"] >= killed_before + count
            and status["sqlite_workers_running"] == status["sqlite_workers"]
        ):
            return status
        await asyncio.sleep(0.05)
    return status


async def assert_benign(client, **options) -> None:
    obs = await sql(client, "chinook", BENIGN, timeout_s=1, **options)
    assert obs["ok"], obs["error"]
    assert rows(obs) == [["AC/DC"]]


async def test_printf_bomb_is_killed_and_other_queries_keep_answering(client) -> None:
    before = await sql_status(client)
    bombs = await asyncio.gather(*(sql(client, "chinook", PRINTF_BOMB, timeout_s=1) for _ in "ab"))
    for obs in bombs:
        # "the query ran longer than its 0.9 s limit and was stopped ... killed (and
        # replaced)"; on a loaded machine the call's own timeout may answer first
        assert obs["error"]["kind"] == "timeout"
    await assert_benign(client)  # was: timeout, for every SQLite query, for seconds
    after = await replaced(client, before["sqlite_workers_killed"], 2)
    assert after["sqlite_workers_killed"] == before["sqlite_workers_killed"] + 2
    assert after["sqlite_workers_running"] == after["sqlite_workers"]


async def test_many_stuck_steps_in_one_query_do_not_stall_concurrent_calls(client) -> None:
    bomb = "SELECT " + " || ".join(["printf('%.*c', 2147483647, 'x')"] * 20)
    stuck = asyncio.create_task(sql(client, "chinook", bomb, timeout_s=2))
    await asyncio.sleep(0.3)  # the bomb is running in its worker
    quick = await asyncio.gather(*(sql(client, "chinook", BENIGN, timeout_s=1) for _ in range(20)))
    assert all(q["ok"] for q in quick)
    assert not stuck.done()
    assert (await stuck)["error"]["kind"] == "timeout"
    await assert_benign(client)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT zeroblob(2000000000)",
        "SELECT length(replace(hex(zeroblob(1000000)), '0', hex(zeroblob(1000))))",
        "SELECT length(group_concat(hex(zeroblob(100000)))) FROM Track",
        "SELECT randomblob(100000000)",
    ],
)
async def test_value_bombs_stop_at_the_length_limit(client, query: str) -> None:
    obs = await sql(client, "chinook", query, timeout_s=5)
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "memory_limit", obs["error"]
    assert "larger than 16777216 bytes" in obs["error"]["message"]
    assert "printf" in obs["error"]["hint"]
    await assert_benign(client)


async def test_printf_within_the_limit_works_and_past_it_is_null(client) -> None:
    obs = await sql(client, "chinook", "SELECT length(printf('%.*c', 1000000, 'x'))")
    assert rows(obs) == [[1000000]]
    # SQLite's printf() answers NULL, not an error, past the length limit (its own way)
    obs = await sql(client, "chinook", "SELECT printf('%.*c', 100000000, 'x') IS NULL")
    assert rows(obs) == [[1]]


async def test_recursive_cte_memory_bomb_is_a_memory_limit(client) -> None:
    query = (
        "WITH RECURSIVE r(x, b) AS (SELECT 1, randomblob(10000000) UNION "
        "SELECT x + 1, randomblob(10000000) FROM r WHERE x < 100000) SELECT count(*) FROM r"
    )
    obs = await sql(client, "chinook", query, timeout_s=20)
    assert obs["error"]["kind"] == "memory_limit", obs["error"]
    assert "more memory than a query may use" in obs["error"]["message"]
    await assert_benign(client)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("SELECT fts3_tokenizer('simple')", "fts3_tokenizer()"),
        ("SELECT fts3_tokenizer('simple', x'4141414141414141')", "fts3_tokenizer()"),
        ("SELECT load_extension('/tmp/evil.so')", "load_extension()"),
        ("SELECT rtreenode(2, x'00000000')", "rtreenode()"),
        ("SELECT count(*) FROM dbstat", "dbstat"),
        ("SELECT fts5(NULL)", "fts5()"),
    ],
)
async def test_functions_that_reach_past_sql_are_refused(client, query: str, named: str) -> None:
    obs = await sql(client, "chinook", query)
    assert obs["ok"] is False
    error = obs["error"]
    assert error["kind"] == "permission_denied", error
    assert error["message"].startswith(f"refused: {named} is not allowed here (it ")
    assert "ordinary functions" in error["hint"]
    assert "X'" not in str(obs["content"])  # no pointer comes back
    await assert_benign(client)


async def test_every_sqlite_function_is_judged() -> None:
    conn = sqlite3.connect(":memory:")
    present = {r[0] for r in conn.execute("SELECT name FROM pragma_function_list")}
    unjudged = present - HARMLESS_FUNCTIONS - set(REFUSED_FUNCTIONS)
    assert not unjudged, f"judge these SQLite functions (harmless or refused): {unjudged}"


async def test_the_worker_imports_only_the_standard_library() -> None:
    # a replacement must start in tens of milliseconds: nothing of the service is imported
    code = "import sys, toolfleet.sql.sqlite_worker; print(sorted(m for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules = done.stdout
    assert "toolfleet.sql.sqlite_worker" in modules
    for heavy in ("pydantic", "toolfleet.core", "sqlalchemy", "psycopg", "fastapi"):
        assert f"'{heavy}" not in modules, heavy


async def test_an_upload_with_virtual_tables_is_refused(client, tmp_path: Path) -> None:
    path = tmp_path / "fts.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE VIRTUAL TABLE docs USING fts4(body)")
    conn.execute("INSERT INTO docs VALUES ('hello')")
    conn.commit()
    conn.close()
    sid = (await client.post("/v1/sessions")).json()["session_id"]
    arguments = {
        "action": "put",
        "db_id": "fts",
        "data": base64.b64encode(path.read_bytes()).decode(),
    }
    r = await client.post(
        "/v1/tools/sql_database/call", json={"arguments": arguments, "session_id": sid}
    )
    obs = r.json()
    assert obs["ok"] is False and obs["error"]["kind"] == "invalid_arguments"
    assert "virtual tables (docs" in obs["error"]["message"]
    await assert_benign(client, session_id=sid)


async def test_abandoned_calls_kill_their_worker(client) -> None:
    before = await sql_status(client)
    # the call's own timeout ends before the query's engine deadline can be checked
    obs = await call(
        client,
        "sql",
        {"db_id": "chinook", "query": PRINTF_BOMB + " || " + PRINTF_BOMB[7:]},
        timeout_s=0.5,
    )
    assert obs["error"]["kind"] == "timeout"
    await assert_benign(client)
    after = await replaced(client, before["sqlite_workers_killed"], 1)
    assert after["sqlite_workers_killed"] == before["sqlite_workers_killed"] + 1
    assert after["sqlite_workers_running"] == after["sqlite_workers"]


# ------------------------------------------------------------------ PostgreSQL and MariaDB


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers():
    require_servers()
    async with sql_gateway(urls=SERVER_URLS) as c:
        yield c


@pytest.mark.parametrize(
    ("db_id", "query"),
    [
        ("chinook_pg", "SELECT pg_read_file('/etc/passwd')"),
        ("chinook_pg", "SELECT pg_read_binary_file('/etc/hostname')"),
        ("chinook_pg", "SELECT pg_ls_dir('.')"),
        ("chinook_pg", "SELECT lo_import('/etc/passwd')"),
        ("chinook_pg", "COPY (SELECT 1) TO PROGRAM 'id'"),
        ("chinook_pg", "SELECT current_setting('data_directory')"),
        ("chinook_maria", "SELECT 1 INTO OUTFILE '/tmp/toolfleet-hostile'"),
    ],
)
async def test_server_file_and_program_access_is_refused(servers, db_id: str, query: str) -> None:
    obs = await sql(servers, db_id, query)
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "permission_denied", obs["error"]
    await assert_server_benign(servers, db_id)


async def test_mariadb_load_file_reads_nothing(servers) -> None:
    # the role has no FILE privilege: the engine answers NULL (MariaDB's way of refusing)
    assert rows(await sql(servers, "chinook_maria", "SELECT LOAD_FILE('/etc/passwd')")) == [[None]]


@pytest.mark.parametrize(
    ("db_id", "query"),
    [
        ("chinook_pg", "SELECT pg_sleep(30)"),
        ("chinook_pg", "SELECT set_config('statement_timeout', '0', false), pg_sleep(30)"),
        ("chinook_pg", "SELECT count(*) FROM generate_series(1, 100000000000)"),
        ("chinook_maria", "SELECT SLEEP(30)"),
        ("chinook_maria", "SELECT BENCHMARK(10000000000, MD5('x'))"),
    ],
)
async def test_server_sleeps_stop_at_the_limit(servers, db_id: str, query: str) -> None:
    obs = await sql(servers, db_id, query, timeout_s=1)
    assert obs["error"]["kind"] == "timeout", obs["error"]
    await assert_server_benign(servers, db_id)


async def test_server_string_bombs_are_bounded(servers) -> None:
    # PostgreSQL refuses a value past 1 GB and runs out of memory building one
    obs = await sql(servers, "chinook_pg", "SELECT repeat('x', 2000000000)")
    assert obs["ok"] is False and "too large" in obs["error"]["message"]
    obs = await sql(
        servers,
        "chinook_pg",
        "SELECT string_agg(repeat('x', 1000000), '') FROM generate_series(1, 2000)",
        timeout_s=5,
    )
    assert obs["ok"] is False and obs["error"]["kind"] in ("runtime_error", "timeout")
    # a value over the result's byte cap is counted, not returned: truncated says so
    obs = await sql(servers, "chinook_pg", "SELECT repeat('x', 5000000)")
    assert obs["ok"] and obs["data"]["row_count"] == 1 and obs["data"]["returned_rows"] == 0
    assert obs["truncated"] is True
    # MariaDB: max_allowed_packet (16 MB) and group_concat_max_len (1 MB)
    assert rows(await sql(servers, "chinook_maria", "SELECT REPEAT('x', 300000000)")) == [[None]]
    obs = await sql(servers, "chinook_maria", "SELECT length(GROUP_CONCAT(Name)) FROM Track")
    assert rows(obs)[0][0] <= 1 << 20
    await assert_server_benign(servers, "chinook_pg")
    await assert_server_benign(servers, "chinook_maria")


async def assert_server_benign(client, db_id: str) -> None:
    query = (
        'SELECT "Name" FROM "Artist" WHERE "ArtistId" = 1'
        if db_id == "chinook_pg"
        else "SELECT Name FROM Artist WHERE ArtistId = 1"
    )
    assert rows(await sql(client, db_id, query, timeout_s=2)) == [["AC/DC"]]
