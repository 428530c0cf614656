"""One config file configures the gateway and every service: ``toolfleet serve --config`` and
``toolfleet worker --config`` reach ``[sandbox]``, ``[sql]``, ``[search]``, ``[vision]`` and
``[mcp]`` (not only a file named by TOOLFLEET_CONFIG, which these processes do not have), as
/readyz, the tool list and calls through the gateway show."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from toolfleet.search.cli import main as search_cli

from tests.helpers import call, serving
from tests.helpers.cluster import Cluster

PASSAGES = [
    {"id": "p1", "title": "Volcano", "text": "Lava flows down the slopes of the volcano."},
    {"id": "p2", "title": "Glacier", "text": "Ice moves slowly in a glacier."},
    {"id": "p3", "title": "Desert", "text": "Sand dunes cover the desert."},
]


@dataclass
class Config:
    """A config file whose every service section differs from the defaults."""

    path: Path
    databases: Path
    media: Path


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("config")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES))
    assert search_cli(["build", str(corpus), "--out", str(root / "index"), "--quiet"]) == 0
    databases = root / "databases"
    databases.mkdir()
    conn = sqlite3.connect(databases / "configured.sqlite")
    conn.execute("CREATE TABLE t (n INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    conn.commit()
    conn.close()
    media = root / "media"
    media.mkdir()
    path = root / "toolfleet.toml"

    def q(p: Path) -> str:  # a TOML string (JSON's quoting is TOML's for these paths)
        return json.dumps(str(p))

    path.write_text(
        "[sandbox]\n"
        'isolation = "none"\n'
        "pool_size = 1\n"
        "light_pool_size = 0\n"
        f"state_dir = {q(root / 'sandbox')}\n"
        "[sql]\n"
        f"sqlite_dirs = [{q(databases)}]\n"
        "threads = 3\n"
        "[search]\n"
        f"indexes = {{ tiny = {q(root / 'index')} }}\n"
        "processes = 0\n"
        "max_top_k = 2\n"
        "[vision]\n"
        "workers = 3\n"
        f"media_root = {q(media)}\n"
        "[mcp]\n"
        "find_tools = false\n"
        "[[mcp.llm]]\n"
        'name = "planner"\n'
        'url = "http://127.0.0.1:9/v1"\n'
        'model = "configured-model"\n'
    )
    return Config(path, databases, media)


def check_sections(services: dict[str, Any], config: Config) -> None:
    """/readyz shows each service configured by its section of the file."""
    assert services["sandbox"]["pool_size"] == 1, services
    assert services["sandbox"]["light_pool_size"] == 0, services
    assert services["sql"]["threads"] == 3, services
    assert services["sql"]["sqlite_dirs"] == [str(config.databases)], services
    assert services["search"]["indexes"] == {"tiny": {"passages": 3, "retrievers": ["bm25"]}}
    assert services["vision"]["threads"] == 3, services
    assert services["vision"]["media_root"] == str(config.media), services
    assert services["mcp"]["llm"] == ["planner"], services


def check_tools(listed: dict[str, Any]) -> None:
    """The tools the sections configured: [mcp]'s model tool, and no find_tools."""
    names = {t["name"] for t in listed["tools"]}
    assert "planner" in names and "find_tools" not in names, names


def check_calls(results: dict[str, dict[str, Any]]) -> None:
    """Calls use what the sections configured: the database, the index and its cap."""
    assert results["sql"]["ok"], results["sql"]
    assert results["sql"]["content"][0]["rows"] == [[6]]
    assert results["search"]["ok"], results["search"]
    assert [h["id"] for h in results["search"]["data"]["results"][0]] == ["p1"]
    too_many = results["search_top_k"]
    assert too_many["error"]["kind"] == "invalid_arguments", too_many  # max_top_k = 2
    assert "2" in too_many["error"]["message"]


CALLS = {
    "sql": ("sql", {"db_id": "configured", "query": "SELECT sum(n) FROM t"}),
    "search": ("search", {"query": "lava volcano", "top_k": 1}),
    "search_top_k": ("search", {"query": "lava", "top_k": 5}),
}


@pytest.fixture
def served(config: Config) -> Iterator[str]:
    """``toolfleet serve --config FILE`` (no TOOLFLEET_* variable in its environment)."""
    with serving("--config", str(config.path)) as url:
        yield url


def test_serve_config_reaches_every_service_section(served: str, config: Config) -> None:
    with httpx.Client(base_url=served, timeout=60) as client:
        check_sections(client.get("/readyz").json()["services"], config)
        check_tools(client.get("/v1/tools").json())
        results = {}
        for key, (tool, arguments) in CALLS.items():
            r = client.post(f"/v1/tools/{tool}/call", json={"arguments": arguments})
            assert r.status_code == 200, r.text
            results[key] = r.json()
    check_calls(results)


async def test_worker_config_reaches_every_service_section(
    cluster: Cluster, config: Config
) -> None:
    services = ("sandbox", "sql", "search", "vision", "mcp")
    cluster.start_worker(
        "--config", str(config.path), *services, command=("toolfleet.client.cli", "worker")
    )
    cluster.wait_workers(1, timeout_s=120)
    async with cluster.gateway() as client:
        ready = (await client.get("/readyz")).json()
        check_sections(ready["services"], config)
        check_tools((await client.get("/v1/tools")).json())
        results = {
            key: await call(client, tool, arguments) for key, (tool, arguments) in CALLS.items()
        }
    check_calls(results)
