"""A session's own SQLite databases (the hidden sql_database tool): uploaded, queried by that
session and its forks only, read-only like any other, bounded, and deleted with the last
session holding them."""

from __future__ import annotations

import base64
import sqlite3

import pytest
import pytest_asyncio

from tests.helpers import call, new_session
from tests.helpers.sql import CHINOOK, rows, sql, sql_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 256 << 10


def _database(tmp_path, name: str = "task.sqlite") -> bytes:
    """A small task database: a table with a few rows."""
    path = tmp_path / name
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE scores (player TEXT PRIMARY KEY, points INTEGER, ratio REAL);"
        "INSERT INTO scores VALUES ('ana', 12, 0.5), ('bo', 7, 0.25), ('cy', 12, NULL);"
    )
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")
    async with sql_gateway(
        upload_dir=uploads, max_upload_bytes=LIMIT, max_session_databases=2
    ) as client:
        yield client, uploads


async def _put(client, session: str, db_id: str, data: bytes) -> dict:
    arguments = {"action": "put", "db_id": db_id, "data": base64.b64encode(data).decode()}
    return await call(client, "sql_database", arguments, session_id=session)


async def test_a_session_queries_its_own_database_and_nobody_else_does(served, tmp_path):
    client, uploads = served
    mine, other = await new_session(client), await new_session(client)
    obs = await _put(client, mine, "task", _database(tmp_path))
    assert obs["ok"], obs["error"]
    assert obs["data"]["databases"] == [
        {"db_id": "task", "bytes": len(_database(tmp_path)), "tables": ["scores"]}
    ]
    query = "SELECT player, points, ratio FROM scores ORDER BY points DESC, player"
    obs = await sql(client, "task", query, session_id=mine)
    assert rows(obs) == [["ana", 12, 0.5], ["cy", 12, None], ["bo", 7, 0.25]]
    schema = await call(client, "sql_schema", {"db_id": "task"}, session_id=mine)
    assert schema["data"]["tables"][0]["primary_key"] == ["player"]

    assert (await sql(client, "task", query, session_id=other))["error"]["kind"] == "not_found"
    assert (await sql(client, "task", query))["error"]["kind"] == "not_found"
    # read-only like every database
    obs = await sql(client, "task", "DELETE FROM scores", session_id=mine)
    assert obs["error"]["kind"] == "permission_denied"
    assert len(rows(await sql(client, "task", query, session_id=mine))) == 3
    await client.delete(f"/v1/sessions/{mine}")
    await client.delete(f"/v1/sessions/{other}")
    assert list(uploads.iterdir()) == []


async def test_forks_share_it_and_the_last_session_deletes_it(served, tmp_path):
    client, uploads = served
    parent = await new_session(client)
    assert (await _put(client, parent, "task", _database(tmp_path)))["ok"]
    child = (await client.post(f"/v1/sessions/{parent}/fork")).json()["session_id"]
    [stored] = list(uploads.iterdir())
    await client.delete(f"/v1/sessions/{parent}")
    obs = await sql(client, "task", "SELECT count(*) FROM scores", session_id=child)
    assert rows(obs) == [[3]]
    assert stored.exists()
    await client.delete(f"/v1/sessions/{child}")
    assert not stored.exists() and list(uploads.iterdir()) == []


async def test_a_trajectory_gets_a_database_and_releasing_it_deletes_it(served, tmp_path):
    client, uploads = served
    arguments = {
        "action": "put",
        "db_id": "chinook",  # shadows the shared chinook for this trajectory only
        "data": base64.b64encode(_database(tmp_path)).decode(),
    }
    obs = await call(client, "sql_database", arguments, trajectory_id="traj-sql-1")
    assert obs["ok"], obs["error"]
    obs = await sql(client, "chinook", "SELECT count(*) FROM scores", trajectory_id="traj-sql-1")
    assert rows(obs) == [[3]]
    assert rows(await sql(client, "chinook", "SELECT count(*) FROM Artist")) == [[275]]
    assert (await client.delete("/v1/trajectories/traj-sql-1")).status_code == 200
    assert list(uploads.iterdir()) == []


async def test_replace_delete_and_list(served, tmp_path):
    client, uploads = served
    sid = await new_session(client)
    assert (await _put(client, sid, "a", _database(tmp_path)))["ok"]
    assert (await _put(client, sid, "a", CHINOOK.read_bytes()[: LIMIT // 2]))["ok"] is False
    assert (await _put(client, sid, "b", _database(tmp_path, "b.sqlite")))["ok"]
    obs = await _put(client, sid, "c", _database(tmp_path, "c.sqlite"))
    assert obs["error"]["kind"] == "output_limit"  # two per session
    assert len(list(uploads.iterdir())) == 2
    obs = await call(client, "sql_database", {"action": "delete", "db_id": "a"}, session_id=sid)
    assert [d["db_id"] for d in obs["data"]["databases"]] == ["b"]
    assert len(list(uploads.iterdir())) == 1
    obs = await call(client, "sql_database", {"action": "delete", "db_id": "a"}, session_id=sid)
    assert obs["error"]["kind"] == "not_found"
    obs = await call(client, "sql_database", {"action": "list"}, session_id=sid)
    assert [d["db_id"] for d in obs["data"]["databases"]] == ["b"]
    await client.delete(f"/v1/sessions/{sid}")
    assert list(uploads.iterdir()) == []


async def test_bad_uploads_are_refused(served, tmp_path):
    client, uploads = served
    sid = await new_session(client)
    obs = await _put(client, sid, "big", CHINOOK.read_bytes())  # 1 MB, over the 256 KiB limit
    assert obs["error"]["kind"] == "output_limit"
    obs = await _put(client, sid, "text", b"not a database at all")
    assert obs["error"]["kind"] == "invalid_arguments" and "not a SQLite" in obs["error"]["message"]
    broken = _database(tmp_path)[:4096] + b"\0" * 4096  # the header, then garbage
    obs = await _put(client, sid, "broken", broken)
    assert obs["error"]["kind"] == "invalid_arguments", obs["error"]
    arguments = {"action": "put", "db_id": "x", "data": "!!"}
    obs = await call(client, "sql_database", arguments, session_id=sid)
    assert obs["error"]["kind"] == "invalid_arguments"
    obs = await _put(client, sid, "../escape", _database(tmp_path))
    assert obs["error"]["kind"] == "invalid_arguments"
    obs = await call(client, "sql_database", {"action": "list"})  # no session
    assert obs["error"]["kind"] == "invalid_arguments"
    await client.delete(f"/v1/sessions/{sid}")
    assert list(uploads.iterdir()) == []
