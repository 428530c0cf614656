"""SQL service figures through the gateway's REST API, per engine (SQLite, PostgreSQL,
MariaDB), on Chinook.

Starts ``toolfleet serve`` (real settings, sql tools only) with Chinook as SQLite (the shared
data directory), PostgreSQL and MariaDB (deploy/ensure-databases.sh loads those), then, with
wrk, prints for a simple lookup (``SELECT Name FROM Artist WHERE ArtistId = ?``, ids
cycling over 1..200): p50/p99 at concurrency 1, and p50/p99 and calls/s at concurrency 16.
Also p50 of the same lookup run directly with the engine's driver (no gateway, no tool),
for comparison, and for SQLite through one worker process of the service's pool (no
gateway): what running queries out of process adds per query. Asserts nothing.

Usage: .venv/bin/python bench/sql.py [--duration 10] [--engines sqlite,postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port, run_wrk  # noqa: E402
from sandbox_local import lua_post  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "sql"
URLS = {
    "postgresql": "postgresql://toolfleet_ro@127.0.0.1:5432/toolfleet_chinook",
    "mariadb": "mysql://toolfleet_ro@127.0.0.1:3306/toolfleet_chinook",
}
DB_IDS = {"sqlite": "chinook", "postgresql": "chinook_pg", "mariadb": "chinook_maria"}
LOOKUP = {
    "sqlite": "SELECT Name FROM Artist WHERE ArtistId = {}",
    "postgresql": 'SELECT "Name" FROM "Artist" WHERE "ArtistId" = {}',
    "mariadb": "SELECT Name FROM Artist WHERE ArtistId = {}",
}


def direct_p50(engine: str, count: int = 2000) -> float:
    """Median ms of the lookup through the driver alone, on one open connection."""
    if engine == "sqlite":
        conn = sqlite3.connect(f"file:{DATA / 'chinook.sqlite'}?mode=ro", uri=True)
        run = lambda q: conn.execute(q).fetchall()  # noqa: E731
    elif engine == "postgresql":
        import psycopg

        conn = psycopg.connect("host=127.0.0.1 user=toolfleet_ro dbname=toolfleet_chinook")
        conn.autocommit = True
        run = lambda q: conn.execute(q).fetchall()  # noqa: E731
    else:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="toolfleet_ro", database="toolfleet_chinook")

        def run(q: str) -> object:
            with conn.cursor() as cur:
                cur.execute(q)
                return cur.fetchall()

    times = []
    for i in range(count):
        t = time.perf_counter()
        run(LOOKUP[engine].format(i % 200 + 1))
        times.append((time.perf_counter() - t) * 1000)
    conn.close()
    return statistics.median(times)


def worker_p50(count: int = 2000) -> float:
    """Median ms of the SQLite lookup sent to one worker process of the service's pool."""
    from toolfleet.sql.sqlite_pool import SqlitePool

    pool = SqlitePool(1, 1024)
    pool.start()
    path = str(DATA / "chinook.sqlite")
    times = []
    try:
        for i in range(count):
            message = {
                "op": "query",
                "path": path,
                "untrusted": False,
                "max_value_bytes": 16 << 20,
                "sql": LOOKUP["sqlite"].format(i % 200 + 1),
                "deadline": time.monotonic() + 10,
                "max_rows": 1000,
                "max_bytes": 1 << 20,
                "count_limit": 10_000,
            }
            t = time.perf_counter()
            pool.request(path, message, message["deadline"])
            times.append((time.perf_counter() - t) * 1000)
    finally:
        pool.close()
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk row")
    parser.add_argument("--engines", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    engines = args.engines.split(",")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TOOLFLEET_SERVICES": '["sql"]',
        "TOOLFLEET_SQL_SQLITE_DIRS": json.dumps([str(DATA)]),
        "TOOLFLEET_SQL_URLS": json.dumps({DB_IDS[e]: URLS[e] for e in engines if e in URLS}),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    http = httpx.Client(base_url=base, timeout=60)
    scripts: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        call = f"{base}/v1/tools/sql/call"
        print(
            f"sql tool, simple lookup on Chinook through REST; wrk -t1, {args.duration} s per "
            "row, server: 1 uvicorn process"
        )
        print(
            f"{'engine':<12}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}"
            f"{'non-2xx':>9}{'driver p50 ms':>15}{'worker p50 ms':>15}"
        )
        for engine in engines:
            bodies = [
                {"arguments": {"db_id": DB_IDS[engine], "query": LOOKUP[engine].format(i)}}
                for i in range(1, 201)
            ]
            check = http.post("/v1/tools/sql/call", json=bodies[0]).json()
            if not check["ok"]:
                print(f"{engine:<12} FAILED: {check['error']}")
                continue
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write(lua_post(bodies))
            scripts.append(f.name)
            run_wrk(call, 16, 2, f.name)  # warm-up: every pooled connection opened
            driver = direct_p50(engine)
            worker = f"{worker_p50():>15.3f}" if engine == "sqlite" else f"{'-':>15}"
            for conc in (1, 16):
                r = run_wrk(call, conc, args.duration, f.name)
                print(
                    f"{engine:<12}{conc:>5}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                    f"{r['rps']:>10.0f}{r['non_2xx']:>9}{driver:>15.3f}{worker}"
                )
    finally:
        for path in scripts:
            os.unlink(path)
        http.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
