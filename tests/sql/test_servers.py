"""The sql service on the real PostgreSQL and MariaDB of this machine (Chinook loaded by
deploy/ensure-databases.sh, read through the read-only role toolfleet_ro): the same rows as
SQLite, every write refused with the data unchanged, runaway queries stopped with the
connection kept, diagnostics, schemas, and servers refused when their role can write.

Without the servers the tests skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import psycopg
import pymysql
import pytest
import pytest_asyncio

from tests.helpers import call, text
from tests.helpers.sql import (
    CHINOOK,
    MARIA_ADMIN,
    PG_ADMIN,
    SERVER_URLS,
    direct,
    require_servers,
    rows,
    sql,
    sql_gateway,
    table,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENGINES = ["postgresql", "mariadb"]
DB = {"postgresql": "chinook_pg", "mariadb": "chinook_maria"}


def q(engine: str, query: str) -> str:
    """A query written with "double quoted" names, for the engine (MariaDB: backquotes)."""
    return query.replace('"', "`") if engine == "mariadb" else query


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    require_servers()
    async with sql_gateway(urls=SERVER_URLS) as c:
        yield c


# ------------------------------------------------------------------ results

GOLD = [
    'SELECT "ArtistId", "Name" FROM "Artist" ORDER BY "ArtistId" LIMIT 5',
    'SELECT "BillingCountry", COUNT(*) AS invoices, ROUND(SUM("Total"), 2) AS total '
    'FROM "Invoice" GROUP BY "BillingCountry" ORDER BY total DESC, "BillingCountry" LIMIT 5',
    'SELECT g."Name", COUNT(*) AS tracks FROM "Track" t JOIN "Genre" g '
    'ON g."GenreId" = t."GenreId" GROUP BY g."Name" ORDER BY tracks DESC, g."Name" LIMIT 5',
    'SELECT "BillingCountry", "BillingState" FROM "Invoice" WHERE "CustomerId" = 2 '
    'ORDER BY "InvoiceId"',
    'SELECT t."Name", t."Milliseconds", t."UnitPrice" FROM "Track" t WHERE t."AlbumId" = 1 '
    'ORDER BY t."TrackId"',
    'SELECT "FirstName", "LastName" FROM "Customer" WHERE "CustomerId" IN (SELECT '
    '"CustomerId" FROM "Invoice" GROUP BY "CustomerId" HAVING SUM("Total") > 45) '
    'ORDER BY "CustomerId"',
    'SELECT "InvoiceDate", "Total" FROM "Invoice" WHERE "InvoiceId" IN (1, 412) '
    'ORDER BY "InvoiceId"',
]


@pytest.mark.parametrize("engine", ENGINES)
async def test_gold_queries_return_the_rows_sqlite_returns(client, engine):
    for query in GOLD:
        obs = await sql(client, DB[engine], q(engine, query))
        assert rows(obs) == direct(CHINOOK, query), query
        assert obs["data"]["engine"] == engine
    # duplicates kept, NULL as null, numbers as numbers, dates as SQL text
    obs = await sql(client, DB[engine], q(engine, GOLD[3]))
    assert rows(obs) == [["Germany", None]] * 7
    obs = await sql(client, DB[engine], q(engine, GOLD[6]))
    assert rows(obs) == [["2021-01-01 00:00:00", 1.98], ["2025-12-22 00:00:00", 1.99]]
    assert table(obs)["columns"] == ["InvoiceDate", "Total"]
    assert obs["data"]["types"][1] in ("numeric(10,2)", "DECIMAL")


@pytest.mark.parametrize("engine", ENGINES)
async def test_empty_result_still_names_its_columns(client, engine):
    obs = await sql(
        client, DB[engine], q(engine, 'SELECT "Name", "ArtistId" FROM "Artist" WHERE 1 = 0')
    )
    assert table(obs) == {
        "type": "table",
        "columns": ["Name", "ArtistId"],
        "rows": [],
        "row_count": 0,
    }
    assert text(obs).endswith("(0 rows)")


@pytest.mark.parametrize("engine", ENGINES)
async def test_large_results_are_capped_and_counted(client, engine):
    obs = await sql(
        client, DB[engine], q(engine, 'SELECT "TrackId" FROM "Track" ORDER BY "TrackId"')
    )
    assert obs["truncated"] and len(rows(obs)) == 1000 and table(obs)["row_count"] == 3503
    obs = await sql(client, DB[engine], q(engine, 'SELECT * FROM "PlaylistTrack" a, "Genre" b'))
    assert obs["data"]["row_count"] == 10_000 and obs["data"]["row_count_exact"] is False
    # the query stopped at the count limit left the pool healthy
    assert rows(await sql(client, DB[engine], q(engine, 'SELECT COUNT(*) FROM "Genre"'))) == [[25]]


# ------------------------------------------------------------------ read-only


def _snapshot(engine: str) -> str:
    """A digest of every table's rows and of the list of tables, read as admin."""
    tables = ["Album", "Artist", "Customer", "Employee", "Genre", "Invoice", "InvoiceLine",
              "MediaType", "Playlist", "PlaylistTrack", "Track"]  # fmt: skip
    digest = hashlib.sha256()
    if engine == "postgresql":
        with psycopg.connect(PG_ADMIN) as conn:
            names = conn.execute(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
            ).fetchall()
            digest.update(repr(names).encode())
            for t in tables:
                digest.update(
                    repr(conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()).encode()
                )
        return digest.hexdigest()
    conn = pymysql.connect(**MARIA_ADMIN)
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        digest.update(repr(cur.fetchall()).encode())
        for t in tables:
            cur.execute(f"SELECT * FROM `{t}` ORDER BY 1")
            digest.update(repr(cur.fetchall()).encode())
    conn.close()
    return digest.hexdigest()


WRITES: dict[str, list[str]] = {
    "postgresql": [
        "INSERT INTO \"Genre\" VALUES (99, 'x')",
        'UPDATE "Artist" SET "Name" = \'x\' WHERE "ArtistId" = 1',
        'DELETE FROM "InvoiceLine"',
        'TRUNCATE "PlaylistTrack"',
        'DROP TABLE "Album"',
        "CREATE TABLE t (x int)",
        "CREATE TEMP TABLE t (x int)",
        'ALTER TABLE "Album" ADD COLUMN x int',
        'CREATE INDEX i ON "Album" ("Title")',
        'WITH d AS (DELETE FROM "Genre" RETURNING *) SELECT * FROM d',
        'SELECT * FROM "Genre" FOR UPDATE',
        'LOCK TABLE "Genre"',
        "COPY \"Genre\" TO '/tmp/toolfleet-genre.csv'",
        'DO $$ BEGIN DELETE FROM "Genre"; END $$',
        "SET ROLE postgres",
        "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        'GRANT ALL ON "Genre" TO PUBLIC',
    ],
    "mariadb": [
        "INSERT INTO `Genre` VALUES (99, 'x')",
        "REPLACE INTO `Genre` VALUES (1, 'x')",
        "UPDATE `Artist` SET `Name` = 'x' WHERE `ArtistId` = 1",
        "DELETE FROM `InvoiceLine`",
        "TRUNCATE `PlaylistTrack`",
        "DROP TABLE `Album`",
        "CREATE TABLE t (x int)",
        "CREATE TEMPORARY TABLE t (x int)",
        "ALTER TABLE `Album` ADD COLUMN x int",
        "CREATE INDEX i ON `Album` (`Title`)",
        "SELECT * FROM `Genre` INTO OUTFILE '/tmp/toolfleet-genre.csv'",
        "LOAD DATA INFILE '/etc/hostname' INTO TABLE `Genre`",
        "GRANT ALL ON `Genre` TO 'toolfleet_ro'@'127.0.0.1'",
        "CREATE USER 'x'@'127.0.0.1'",
        "SET GLOBAL max_connections = 1",
        "CREATE PROCEDURE p() SELECT 1",
    ],
}


@pytest.mark.parametrize("engine", ENGINES)
async def test_every_write_is_refused_and_the_data_unchanged(client, engine):
    before = _snapshot(engine)
    for statement in WRITES[engine]:
        obs = await sql(client, DB[engine], statement)
        assert obs["ok"] is False, statement
        assert obs["error"]["kind"] == "permission_denied", (statement, obs["error"])
        assert obs["error"]["message"].startswith("refused: the database is read-only")
    assert _snapshot(engine) == before


async def test_session_changes_do_not_outlive_the_call(client):
    # the changed connection is not reused: the next write is refused all the same
    for engine, change, probe in [
        ("mariadb", "SET SESSION TRANSACTION READ WRITE", "SELECT @@session.tx_read_only"),
        ("mariadb", "SET @leak = 42", "SELECT @leak"),
        ("postgresql", "SET default_transaction_read_only = off", "SHOW transaction_read_only"),
    ]:
        before = _snapshot(engine)
        for _ in range(8):  # whatever pooled connection each call gets
            assert (await sql(client, DB[engine], change))["ok"]
            found = rows(await sql(client, DB[engine], probe))
            assert found in ([[1]], [["on"]], [[None]]), (change, found)
            obs = await sql(client, DB[engine], q(engine, "INSERT INTO \"Genre\" VALUES (99, 'x')"))
            assert obs["error"]["kind"] == "permission_denied"
        assert _snapshot(engine) == before


@pytest.mark.parametrize("engine", ENGINES)
async def test_several_statements_are_refused(client, engine):
    obs = await sql(client, DB[engine], q(engine, 'SELECT 1; DELETE FROM "Genre"'))
    assert obs["error"]["kind"] == "syntax_error"
    assert obs["error"]["message"] == "only one SQL statement per call"


# ------------------------------------------------------------------ time limits

RUNAWAY = {
    "postgresql": [
        "SELECT pg_sleep(30)",
        'SELECT COUNT(*) FROM "Track" a, "Track" b, "Track" c',
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c",
    ],
    "mariadb": [
        "SELECT SLEEP(30)",
        "SELECT COUNT(*) FROM `Track` a, `Track` b, `Track` c",
        "SELECT BENCHMARK(10000000000, MD5('x'))",  # (recursive CTEs stop at 1000 rounds)
    ],
}
SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}


@pytest.mark.parametrize("engine", ENGINES)
async def test_runaway_queries_stop_on_time_and_the_connection_is_kept(engine):
    require_servers()
    # one thread, one pooled connection: the same server session before and after
    async with sql_gateway(urls=SERVER_URLS, threads=1) as client:
        session = rows(await sql(client, DB[engine], SESSION_ID[engine]))
        for query in RUNAWAY[engine]:
            started = time.monotonic()
            obs = await sql(client, DB[engine], query, timeout_s=1)
            elapsed = time.monotonic() - started
            assert obs["error"]["kind"] == "timeout", (query, obs["error"])
            assert 0.7 < elapsed < 1.3, (query, elapsed)
            assert rows(await sql(client, DB[engine], SESSION_ID[engine])) == session


# ------------------------------------------------------------------ diagnostics


@pytest.mark.parametrize("engine", ENGINES)
async def test_syntax_error_with_position(client, engine):
    obs = await sql(client, DB[engine], q(engine, 'SELECT "Name"\nFORM "Artist"'))
    assert obs["error"]["kind"] == "syntax_error"
    assert obs["data"]["error_position"] == {"offset": 19, "line": 2, "column": 6}
    assert "'FORM' looks like a misspelt FROM" in obs["error"]["hint"]
    assert "line 2, column 6" in text(obs)


async def test_unknown_names_get_did_you_mean_from_the_real_schema(client):
    obs = await sql(client, "chinook_pg", "SELECT * FROM Artist")
    assert obs["error"]["kind"] == "not_found"
    assert obs["error"]["message"] == 'relation "artist" does not exist'
    assert "Did you mean Artist?" in obs["error"]["hint"]
    assert 'double quotes, e.g. "Artist"' in obs["error"]["hint"]
    assert obs["data"]["error_position"]["offset"] == 14

    obs = await sql(client, "chinook_pg", 'SELECT "Nmae" FROM "Artist"')
    assert obs["error"]["kind"] == "not_found" and "Artist.Name" in obs["error"]["hint"]
    obs = await sql(client, "chinook_maria", "SELECT Nmae FROM Artist")
    assert obs["error"]["message"].startswith("Unknown column 'Nmae'")
    assert obs["error"]["hint"] == "Did you mean Artist.Name?"
    obs = await sql(client, "chinook_maria", "SELECT Name FROM Artists")
    assert obs["error"]["kind"] == "not_found" and obs["error"]["hint"] == "Did you mean Artist?"

    for db_id, query in [
        ("chinook_pg", 'SELECT "Name" FROM "Artist" JOIN "Track" ON true LIMIT 1'),
        ("chinook_maria", "SELECT Name FROM Artist JOIN Track ON true LIMIT 1"),
    ]:
        obs = await sql(client, db_id, query)
        assert obs["error"]["kind"] == "runtime_error" and "ambiguous" in obs["error"]["message"]
        assert "(Artist, Track)" in obs["error"]["hint"]

    obs = await sql(client, "chinook_pg", 'SELECT strftime(\'%Y\', "InvoiceDate") FROM "Invoice"')
    assert obs["error"]["kind"] == "not_found" and "to_char" in obs["error"]["hint"]
    obs = await sql(client, "chinook_maria", "SELECT strftime('%Y', InvoiceDate) FROM Invoice")
    assert obs["error"]["kind"] == "not_found" and "DATE_FORMAT" in obs["error"]["hint"]


async def test_type_errors_say_so(client):
    obs = await sql(client, "chinook_pg", 'SELECT "Name" + 1 FROM "Artist"')
    assert obs["error"]["kind"] == "runtime_error"
    assert obs["error"]["message"] == "operator does not exist: character varying + integer"
    assert "Cast explicitly" in obs["error"]["hint"]
    assert obs["data"]["error_position"]["offset"] == 14
    obs = await sql(client, "chinook_pg", 'SELECT * FROM "Invoice" WHERE "InvoiceDate" = \'soon\'')
    assert obs["error"]["kind"] == "runtime_error" and "soon" in obs["error"]["message"]


# ------------------------------------------------------------------ schema


@pytest.mark.parametrize("engine", ENGINES)
async def test_schema_of_chinook(client, engine):
    obs = await call(
        client, "sql_schema", {"db_id": DB[engine], "tables": ["Album", "PlaylistTrack"]}
    )
    assert obs["ok"], obs["error"]
    album, playlist_track = obs["data"]["tables"]
    assert [c["name"] for c in album["columns"]] == ["AlbumId", "Title", "ArtistId"]
    assert album["primary_key"] == ["AlbumId"]
    assert album["foreign_keys"] == [
        {"columns": ["ArtistId"], "ref_table": "Artist", "ref_columns": ["ArtistId"]}
    ]
    assert playlist_track["primary_key"] == ["PlaylistId", "TrackId"]
    assert album["sample"]["rows"] == direct(CHINOOK, "SELECT * FROM Album LIMIT 3")
    ddl = text(obs)
    assert ddl.startswith(f"-- database {DB[engine]} ({engine}): 2 tables")
    name = '"Album"' if engine == "postgresql" else "Album"
    assert f"CREATE TABLE {name} (" in ddl and "VARCHAR(160) NOT NULL" in ddl


# ------------------------------------------------------------------ operators


async def test_a_role_that_can_write_is_refused():
    require_servers()
    urls = {
        "pg_admin": "postgresql://postgres@127.0.0.1:5432/toolfleet_chinook",
        "maria_admin": "mysql://root@127.0.0.1:3306/toolfleet_chinook",
    }
    async with sql_gateway(urls=urls) as client:
        for db_id in urls:
            obs = await sql(client, db_id, "SELECT 1")
            assert obs["error"]["kind"] == "unavailable", obs["error"]
            assert "its connection role can write" in obs["error"]["message"]
            obs = await call(client, "sql_schema", {"db_id": db_id})
            assert obs["error"]["kind"] == "unavailable", obs["error"]
        servers = (await client.get("/readyz")).json()["services"]["sql"]["servers"]
        assert {k: v["read_only_role"] for k, v in servers.items()} == dict.fromkeys(urls, False)
    async with sql_gateway(urls=urls, require_read_only_role=False) as client:
        # still read-only transactions: even a superuser cannot write through the tool
        for db_id in urls:
            obs = await sql(
                client, db_id, "DELETE FROM " + ('"Genre"' if "pg" in db_id else "Genre")
            )
            assert obs["error"]["kind"] == "permission_denied", obs["error"]


async def test_unreachable_server_is_a_retryable_failure():
    async with sql_gateway(urls={"gone": "postgresql://toolfleet_ro@127.0.0.1:1/nothing"}) as c:
        obs = await sql(c, "gone", "SELECT 1")
        assert obs["error"]["kind"] == "unavailable" and obs["error"]["retryable"] is True


def _ids(values: list[Any]) -> list[str]:
    return [str(v) for v in values]
