"""The sql service in worker processes (distributed mode over the Redis on this machine): the
configured databases answer from any worker, and a session's uploaded database lives on the
worker holding the session, where its queries, its forks' queries and its end reach it."""

from __future__ import annotations

import base64
import json
import sqlite3

from tests.helpers import call
from tests.helpers.cluster import Cluster
from tests.helpers.sql import DATA


def _database(path, rows: int) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()
    return path.read_bytes()


async def test_sql_workers_hold_session_databases(cluster: Cluster, tmp_path) -> None:
    uploads = tmp_path / "uploads"
    for _ in range(2):  # two workers: a session's calls must all reach the one holding it
        cluster.start_worker(
            "sql", sql_sqlite_dirs=json.dumps([str(DATA)]), sql_upload_dir=str(uploads)
        )
    cluster.wait_workers(2, timeout_s=120)
    async with cluster.gateway() as client:
        obs = await call(client, "sql", {"db_id": "chinook", "query": "SELECT count(*) FROM Genre"})
        assert obs["ok"] and obs["content"][0]["rows"] == [[25]]
        sids = [(await client.post("/v1/sessions")).json()["session_id"] for _ in range(4)]
        for n, sid in enumerate(sids):
            data = base64.b64encode(_database(tmp_path / f"{n}.sqlite", n + 1)).decode()
            arguments = {"action": "put", "db_id": "task", "data": data}
            obs = await call(client, "sql_database", arguments, session_id=sid)
            assert obs["ok"], obs["error"]
        assert len(list(uploads.iterdir())) == 4
        for n, sid in enumerate(sids):
            for _ in range(3):
                obs = await call(
                    client,
                    "sql",
                    {"db_id": "task", "query": "SELECT count(*) FROM t"},
                    session_id=sid,
                )
                assert obs["ok"], obs["error"]
                assert obs["content"][0]["rows"] == [[n + 1]]
        fork = (await client.post(f"/v1/sessions/{sids[2]}/fork")).json()["session_id"]
        obs = await call(
            client, "sql", {"db_id": "task", "query": "SELECT max(n) FROM t"}, session_id=fork
        )
        assert obs["content"][0]["rows"] == [[2]]
        for sid in [*sids, fork]:
            assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 200
    assert list(uploads.iterdir()) == []
