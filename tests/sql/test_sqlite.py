"""The sql service on SQLite, through the REST API, on the real Chinook, Northwind and
GeoQuery databases: results as the engine returns them, caps, renderings, read-only
enforcement, time limits, diagnostics, schemas, and where databases are found."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
import time
import warnings

import pytest
import pytest_asyncio
from toolfleet.core import Settings
from toolfleet.core.registry import ToolRegistry

from tests.helpers import call, gateway, text
from tests.helpers.sql import (
    CHINOOK,
    DATA,
    GEOGRAPHY,
    NORTHWIND,
    direct,
    rows,
    sql,
    sql_gateway,
    table,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAPS = dict(max_rows=500, count_limit=5000, max_bytes=128 << 10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    async with sql_gateway(**CAPS) as c:
        yield c


# ------------------------------------------------------------------ results


async def test_tools_listed_upload_tool_hidden(client):
    tools = {t["name"]: t for t in (await client.get("/v1/tools")).json()["tools"]}
    assert {"sql", "sql_schema"} <= set(tools) and "sql_database" not in tools
    assert tools["sql"]["input_schema"]["required"] == ["db_id", "query"]
    assert "row_count" in tools["sql"]["output_schema"]["properties"]


async def test_gold_queries_return_the_rows_sqlite3_returns(client):
    for path, db_id, query in [
        (CHINOOK, "chinook", "SELECT Name FROM Artist WHERE ArtistId = 1"),
        (
            CHINOOK,
            "chinook",
            "SELECT BillingCountry, COUNT(*) AS invoices, ROUND(SUM(Total), 2) AS total "
            "FROM Invoice GROUP BY BillingCountry ORDER BY total DESC LIMIT 5",
        ),
        (
            CHINOOK,
            "chinook",
            "SELECT a.Title, t.Name, t.Milliseconds, t.UnitPrice FROM Album a "
            "JOIN Track t ON t.AlbumId = a.AlbumId WHERE a.ArtistId = 1 ORDER BY t.TrackId",
        ),
        (
            NORTHWIND,
            "northwind",
            'SELECT p.ProductName, SUM(od.Quantity) AS units FROM "Order Details" od '
            "JOIN Products p ON p.ProductID = od.ProductID GROUP BY p.ProductName "
            "ORDER BY units DESC LIMIT 3",
        ),
        (GEOGRAPHY, "geography", "SELECT state_name, population FROM state ORDER BY area DESC"),
    ]:
        obs = await sql(client, db_id, query)
        assert rows(obs) == direct(path, query), query
    obs = await sql(client, "chinook", "SELECT Name FROM Artist WHERE ArtistId = 1")
    assert rows(obs) == [["AC/DC"]]


async def test_columns_in_order_with_duplicates_and_types_kept(client):
    obs = await sql(client, "chinook", "SELECT 1 AS i, 2.0 AS f, 'x' AS s, NULL AS n, X'00FF' AS b")
    part = table(obs)
    assert part["columns"] == ["i", "f", "s", "n", "b"]
    [[i, f, s, n, b]] = part["rows"]
    assert (i, s, n, b) == (1, "x", None, "X'00FF'")
    assert type(i) is int and type(f) is float and f == 2.0
    assert obs["data"]["types"] == ["INTEGER", "REAL", "TEXT", None, "BLOB"]
    # text that is not UTF-8 (some benchmark databases have it) is decoded leniently
    assert rows(await sql(client, "chinook", "SELECT CAST(X'FF41' AS TEXT)")) == [["\ufffdA"]]

    # duplicate rows and duplicate column names are kept, in the engine's order
    query = (
        "SELECT c.Country, i.BillingCountry FROM Invoice i JOIN Customer c "
        "ON c.CustomerId = i.CustomerId WHERE c.CustomerId IN (2, 4) ORDER BY i.InvoiceDate DESC"
    )
    obs = await sql(client, "chinook", query)
    assert table(obs)["columns"] == ["Country", "BillingCountry"]
    assert rows(obs) == direct(CHINOOK, query)
    assert len(rows(obs)) == 14 and rows(obs).count(["Germany", "Germany"]) == 7


async def test_row_cap_keeps_the_count(client):
    obs = await sql(client, "chinook", "SELECT TrackId FROM Track ORDER BY TrackId")
    assert obs["truncated"] is True and obs["data"]["truncated"] is True
    assert len(rows(obs)) == CAPS["max_rows"] and rows(obs)[0] == [1]
    assert table(obs)["row_count"] == obs["data"]["row_count"] == 3503
    assert obs["data"]["row_count_exact"] is True
    assert "(50 of 3503 rows shown" in text(obs)

    obs = await sql(client, "chinook", "SELECT Name FROM Track ORDER BY TrackId", max_rows=3)
    assert len(rows(obs)) == 3 and table(obs)["row_count"] == 3503


async def test_count_stops_at_the_count_limit(client):
    obs = await sql(client, "chinook", "SELECT * FROM PlaylistTrack")  # 8715 rows
    assert obs["ok"] and obs["truncated"]
    assert obs["data"]["row_count"] == CAPS["count_limit"]
    assert obs["data"]["row_count_exact"] is False
    assert "more than 5000 rows" in text(obs)


async def test_byte_cap(client):
    # Northwind's employee photos are ~12 KB blobs (24 KB as hex); the cap is 128 KiB of JSON.
    obs = await sql(client, "northwind", "SELECT EmployeeID, Photo FROM Employees")
    assert obs["ok"] and obs["truncated"]
    kept = rows(obs)
    assert 0 < len(kept) < 9 and table(obs)["row_count"] == 9
    assert sum(len(p) for _, p in kept) <= CAPS["max_bytes"]
    assert kept[0][1].startswith("X'")


async def test_statement_without_result_set(client):
    obs = await sql(client, "chinook", "BEGIN")
    assert obs["ok"] and obs["data"]["has_result_set"] is False
    assert not [p for p in obs["content"] if p["type"] == "table"]
    assert "returns no rows" in text(obs)
    # the transaction it opened was not left on the pooled connection
    assert rows(await sql(client, "chinook", "SELECT count(*) FROM Genre")) == [[25]]


# ------------------------------------------------------------------ renderings


async def test_markdown_and_csv_renderings(client):
    query = "SELECT InvoiceId, BillingState, Total FROM Invoice WHERE InvoiceId <= 2"
    md = text(await sql(client, "chinook", query))
    assert md.splitlines() == [
        "| InvoiceId | BillingState | Total |",
        "| --- | --- | --- |",
        "| 1 | NULL | 1.98 |",
        "| 2 | NULL | 3.96 |",
        "(2 rows)",
    ]
    csv_text = text(await sql(client, "chinook", query, format="csv"))
    assert csv_text.splitlines() == [
        '"InvoiceId","BillingState","Total"',
        "1,,1.98",
        "2,,3.96",
        "(2 rows)",
    ]


def _pandas_text(found: list[list]) -> str:
    """What SkyRL-SQL / verl-tool print: pandas (2's object inference) on the distinct rows."""
    import pandas as pd

    distinct = list(dict.fromkeys(tuple(r) for r in found))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pd.option_context("future.infer_string", False):
            frame = pd.DataFrame(distinct)
            out = frame.to_string(index=False)
            if len(out) > 9000:
                out = "Truncated to 50 lines since returned response too long: " + frame.head(
                    50
                ).to_string(index=False)
    return out


async def test_skyrl_rendering_matches_pandas(client):
    for db_id, path, query in [
        ("chinook", CHINOOK, "SELECT * FROM Invoice WHERE InvoiceId < 40"),
        ("chinook", CHINOOK, "SELECT * FROM Invoice"),  # longer than 9,000 characters
        ("chinook", CHINOOK, "SELECT BillingCountry FROM Invoice ORDER BY InvoiceId"),  # dups
        ("chinook", CHINOOK, "SELECT AVG(Total), MIN(Total), SUM(Total) FROM Invoice"),
        ("chinook", CHINOOK, "SELECT Composer, Milliseconds FROM Track WHERE AlbumId < 4"),
        ("northwind", NORTHWIND, "SELECT ProductName, UnitPrice, Discontinued FROM Products"),
        ("geography", GEOGRAPHY, "SELECT * FROM state"),
        ("geography", GEOGRAPHY, "SELECT city_name, population FROM city WHERE 1 = 0"),
        ("chinook", CHINOOK, "SELECT 1e-9, 1234567.5, NULL, 'a\tb'"),
    ]:
        obs = await sql(client, db_id, query, format="skyrl")
        assert text(obs) == _pandas_text(direct(path, query)), query
        assert table(obs)["row_count"] == len(direct(path, query))  # the table has every row
    obs = await sql(client, "chinook", "SELECT Nme FROM Artist", format="skyrl")
    assert text(obs) == "Error executing SQL: no such column: Nme, db file: chinook/chinook.sqlite"
    assert obs["error"]["kind"] == "not_found"


# ------------------------------------------------------------------ read-only


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def writable(tmp_path_factory):
    """A copy of Chinook the OS would let anyone write, in a Spider-layout directory."""
    root = tmp_path_factory.mktemp("spider")
    (root / "victim").mkdir()
    path = root / "victim" / "victim.sqlite"
    shutil.copy(CHINOOK, path)
    path.chmod(0o666)
    async with sql_gateway(sqlite_dirs=[root]) as c:
        yield c, path


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_every_write_path_is_refused_and_the_file_unchanged(writable):
    client, path = writable
    before, listing = _digest(path), sorted(p.name for p in path.parent.iterdir())
    mtime = path.stat().st_mtime_ns
    statements = {
        "INSERT INTO Genre VALUES (99, 'x')": "INSERT",
        "INSERT INTO Genre VALUES (99, 'x') RETURNING *": "INSERT",
        "REPLACE INTO Genre VALUES (1, 'x')": "INSERT",
        "UPDATE Artist SET Name = 'x' WHERE ArtistId = 1": "UPDATE",
        "DELETE FROM InvoiceLine": "DELETE",
        "WITH x AS (SELECT 1) INSERT INTO Genre SELECT 100, 'y' FROM x": "INSERT",
        "DROP TABLE Album": "DROP TABLE",
        "CREATE TABLE t (x)": "CREATE TABLE",
        "CREATE TEMP TABLE t (x)": "CREATE TEMP TABLE",
        "CREATE TEMP VIEW v AS SELECT 1": "CREATE TEMP VIEW",
        "CREATE INDEX i ON Album (Title)": "CREATE INDEX",
        "CREATE TRIGGER tr AFTER INSERT ON Genre BEGIN SELECT 1; END": "CREATE TRIGGER",
        "ALTER TABLE Album ADD COLUMN x": "ALTER TABLE",
        "CREATE VIRTUAL TABLE f USING fts5(x)": "CREATE VIRTUAL TABLE",
        f"ATTACH DATABASE '{path.parent}/other.db' AS other": "ATTACH",
        "VACUUM": "",
        f"VACUUM INTO '{path.parent}/copy.db'": "ATTACH",
        "REINDEX": "REINDEX",
        "ANALYZE": "CREATE TABLE",  # sqlite_stat1
        "PRAGMA query_only = 0": "PRAGMA query_only",
        "PRAGMA journal_mode = WAL": "PRAGMA journal_mode",
        "PRAGMA user_version = 7": "PRAGMA user_version",
        "PRAGMA writable_schema = 1": "PRAGMA writable_schema",
        "SELECT load_extension('/tmp/evil.so')": "load_extension",
        "UPDATE sqlite_master SET sql = ''": "",
    }
    for statement, what in statements.items():
        obs = await sql(client, "victim", statement)
        assert obs["ok"] is False, statement
        assert obs["error"]["kind"] == "permission_denied", (statement, obs["error"])
        assert what in obs["error"]["message"], (statement, obs["error"]["message"])
        # load_extension is refused as code loading (tests/test_sql_hostile.py), not a write
        assert "read-only" in obs["error"]["hint"] or "not allowed here" in obs["error"]["message"]
    # informational pragmas and table-valued pragma functions still answer
    assert rows(await sql(client, "victim", "PRAGMA table_info(Genre)"))[0][1] == "GenreId"
    obs = await sql(client, "victim", "SELECT name FROM pragma_table_info('Album')")
    assert rows(obs) == [["AlbumId"], ["Title"], ["ArtistId"]]
    assert rows(await sql(client, "victim", "SELECT count(*) FROM Genre")) == [[25]]
    assert _digest(path) == before and path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in path.parent.iterdir()) == listing  # no copy.db, other.db


async def test_several_statements_are_refused(client):
    obs = await sql(client, "chinook", "SELECT 1; DELETE FROM Genre")
    assert obs["error"]["kind"] == "syntax_error"
    assert obs["error"]["message"] == "only one SQL statement per call"
    assert rows(await sql(client, "chinook", "SELECT count(*) FROM Genre ;  ")) == [[25]]


# ------------------------------------------------------------------ time limits


async def test_runaway_queries_stop_on_time(client):
    for query in (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "SELECT count(*) FROM Track a, Track b, Track c",
    ):
        started = time.monotonic()
        obs = await sql(client, "chinook", query, timeout_s=1)
        elapsed = time.monotonic() - started
        assert obs["error"]["kind"] == "timeout", obs["error"]
        assert "limit and was stopped" in obs["error"]["message"]
        assert 0.7 < elapsed < 1.3, elapsed
    # the same pooled connections answer right after
    assert rows(await sql(client, "chinook", "SELECT Name FROM Artist WHERE ArtistId = 2"))


async def test_a_long_query_does_not_block_other_calls(client):
    slow = asyncio.create_task(
        sql(client, "chinook", "SELECT count(*) FROM Track a, Track b, Track c", timeout_s=1.5)
    )
    await asyncio.sleep(0.2)  # the slow query is running in its thread
    started = time.monotonic()
    quick = await asyncio.gather(
        *(
            sql(client, "chinook", f"SELECT Name FROM Artist WHERE ArtistId = {i}")
            for i in range(1, 21)
        )
    )
    elapsed = time.monotonic() - started
    assert all(q["ok"] for q in quick)
    assert elapsed < 0.8, elapsed
    assert not slow.done()
    assert (await slow)["error"]["kind"] == "timeout"


async def test_queries_run_in_worker_processes_that_ordinary_queries_keep(client):
    before = (await client.get("/readyz")).json()["services"]["sql"]
    assert before["sqlite_workers_running"] == before["sqlite_workers"] > 0
    query = "SELECT count(*) FROM Track a, Track b WHERE a.TrackId <= 300"  # ~50 ms
    assert rows(await sql(client, "chinook", query)) == [[300 * 3503]]
    assert (await sql(client, "chinook", "SELEC 1"))["error"]["kind"] == "syntax_error"
    assert rows(await sql(client, "chinook", "SELECT 1")) == [[1]]
    after = (await client.get("/readyz")).json()["services"]["sql"]
    # no worker was replaced: slow queries and errors are answered by the engine itself
    assert after["sqlite_workers_killed"] == before["sqlite_workers_killed"]
    assert after["sqlite_workers_started"] == before["sqlite_workers_started"]


# ------------------------------------------------------------------ diagnostics


async def test_syntax_error_with_position_and_misspelt_keyword(client):
    obs = await sql(client, "chinook", "SELECT Name\nFORM Artist WHERE ArtistId = 1")
    error = obs["error"]
    assert error["kind"] == "syntax_error"
    # SQLite reads FORM as an alias and stops at the next word: the position is the engine's
    assert obs["data"]["error_position"] == {"offset": 17, "line": 2, "column": 6}
    assert "line 2, column 6" in error["detail"] and "FORM Artist" in error["detail"]
    assert "'FORM' looks like a misspelt FROM" in error["hint"]
    assert "line 2, column 6" in text(obs) and "Hint:" in text(obs)

    # the position of the token that failed, not of an earlier identical one
    obs = await sql(client, "chinook", "SELECT Name FROM Artist WHERE (ArtistId = 1))")
    assert obs["data"]["error_position"]["offset"] == 44
    obs = await sql(client, "chinook", "SELECT Name FROM Artist WHERE Name = 'AC/DC")
    assert obs["error"]["kind"] == "syntax_error" and "unclosed quote" in obs["error"]["message"]
    obs = await sql(client, "chinook", "SELECT Name FROM Artist WHERE (ArtistId = 1")
    assert obs["data"]["error_position"]["offset"] == 43


async def test_unknown_table_and_column_suggest_the_real_names(client):
    obs = await sql(client, "chinook", "SELECT Name FROM Artists")
    assert obs["error"]["kind"] == "not_found"
    assert obs["error"]["message"] == "no such table: Artists"
    assert obs["error"]["hint"] == "Did you mean Artist?"
    assert obs["data"]["error_position"]["offset"] == 17

    obs = await sql(client, "chinook", "SELECT t.Nmae FROM Track t WHERE t.AlbumId = 1")
    assert obs["error"]["message"] == "no such column: t.Nmae"
    assert obs["error"]["hint"] == "Did you mean Track.Name?"

    obs = await sql(client, "northwind", "SELECT ProductNme FROM Products")
    assert "Products.ProductName" in obs["error"]["hint"]

    obs = await sql(
        client,
        "chinook",
        "SELECT Name FROM Artist JOIN Album USING (ArtistId) JOIN Track USING (AlbumId)",
    )
    assert obs["error"]["message"] == "ambiguous column name: Name"
    assert "(Artist, Track)" in obs["error"]["hint"] and "Artist.Name" in obs["error"]["hint"]

    obs = await sql(client, "northwind", "SELECT YEAR(OrderDate) FROM Orders")
    assert obs["error"]["message"] == "no such function: YEAR"
    assert "strftime('%Y'" in obs["error"]["hint"]


async def test_unknown_database_suggests_close_ids(client):
    obs = await sql(client, "chinok", "SELECT 1")
    assert obs["error"]["kind"] == "not_found"
    assert obs["error"]["hint"] == "Did you mean 'chinook'?"
    obs = await sql(client, "../chinook", "SELECT 1")
    assert obs["error"]["kind"] == "not_found"


# ------------------------------------------------------------------ schema


async def test_schema_of_chinook(client):
    obs = await call(client, "sql_schema", {"db_id": "chinook"})
    assert obs["ok"], obs["error"]
    tables = {t["name"]: t for t in obs["data"]["tables"]}
    assert len(tables) == 11 and all(t["kind"] == "table" for t in tables.values())
    album = tables["Album"]
    assert [c["name"] for c in album["columns"]] == ["AlbumId", "Title", "ArtistId"]
    assert album["columns"][1] == {
        "name": "Title",
        "type": "NVARCHAR(160)",
        "nullable": False,
        "primary_key": False,
    }
    assert album["primary_key"] == ["AlbumId"]
    assert album["foreign_keys"] == [
        {"columns": ["ArtistId"], "ref_table": "Artist", "ref_columns": ["ArtistId"]}
    ]
    assert tables["PlaylistTrack"]["primary_key"] == ["PlaylistId", "TrackId"]
    assert album["sample"]["rows"] == direct(CHINOOK, "SELECT * FROM Album LIMIT 3")
    ddl = text(obs)
    assert ddl.startswith("-- database chinook (sqlite): 11 tables")
    assert "CREATE TABLE Album (\n  AlbumId INTEGER NOT NULL PRIMARY KEY," in ddl
    assert "  FOREIGN KEY (ArtistId) REFERENCES Artist (ArtistId)\n);" in ddl
    assert "  PRIMARY KEY (PlaylistId, TrackId)," in ddl
    assert "/* 3 rows of Album:\nAlbumId | Title | ArtistId\n1 | For Those About" in ddl


async def test_schema_quotes_names_lists_views_and_filters(client):
    obs = await call(
        client,
        "sql_schema",
        {"db_id": "northwind", "tables": ["order details", "Invoices"], "sample_rows": 1},
    )
    assert obs["ok"], obs["error"]
    details, invoices = obs["data"]["tables"]
    assert details["name"] == "Order Details" and details["kind"] == "table"
    assert len(details["sample"]["rows"]) == 1
    assert invoices["kind"] == "view" and invoices["sample"] is None
    assert 'CREATE TABLE "Order Details" (' in text(obs)
    assert "CREATE VIEW Invoices (" in text(obs)

    obs = await call(client, "sql_schema", {"db_id": "chinook", "tables": ["Albums"]})
    assert obs["error"]["kind"] == "not_found" and "Did you mean Album?" in obs["error"]["hint"]


# ------------------------------------------------------------------ configuration


async def test_spider_and_bird_layouts_files_and_settings_from_the_environment(
    tmp_path, monkeypatch
):
    spider = tmp_path / "spider" / "database"
    (spider / "concert").mkdir(parents=True)
    (spider / "concert" / "concert.sqlite").symlink_to(CHINOOK)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "geo.db").symlink_to(GEOGRAPHY)
    monkeypatch.setenv("TOOLFLEET_SQL_SQLITE_DIRS", json.dumps([str(spider), str(flat)]))
    monkeypatch.setenv("TOOLFLEET_SQL_SQLITE_FILES", json.dumps({"nw": str(NORTHWIND)}))
    monkeypatch.setenv("TOOLFLEET_SQL_MAX_ROWS", "7")
    registry = ToolRegistry.discover(Settings(services=["sql"]))
    assert {s.name for s in registry.specs()} == {"sql", "sql_schema"}

    async with gateway(registry) as c:
        assert rows(await sql(c, "concert", "SELECT count(*) FROM Artist")) == [[275]]
        assert rows(await sql(c, "geo", "SELECT count(*) FROM state")) == [[51]]
        obs = await sql(c, "nw", "SELECT ProductID FROM Products")
        assert len(rows(obs)) == 7 and table(obs)["row_count"] == 77
        obs = await sql(c, "concrt", "SELECT 1")
        assert obs["error"]["hint"] == "Did you mean 'concert'?"
        status = (await c.get("/readyz")).json()["services"]["sql"]
        assert status["sqlite_dirs"] == [str(spider), str(flat)]


async def test_data_files_untouched():
    # the shared databases are never opened for writing (their sizes are those of SOURCES.md)
    assert CHINOOK.stat().st_size == 1_007_616 and NORTHWIND.stat().st_size == 602_112
    assert not list(DATA.glob("*-journal")) and not list(DATA.glob("*-wal"))
    assert sqlite3.connect(f"file:{GEOGRAPHY}?mode=ro", uri=True).execute(
        "PRAGMA quick_check"
    ).fetchone() == ("ok",)
