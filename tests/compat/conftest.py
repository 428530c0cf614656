"""Fixtures of the compat tests: a live toolfleet gateway (a server process of its own, as a
trainer reaches it) serving the sandbox, a Search-R1 wiki-18-shaped index, the SQL databases,
the vision tools and web search (through a local stand-in of Serper)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA, free_port, serve_app, serving
from tests.helpers.compat import CORPUS_SIZE, SerperStandIn, search_r1_corpus
from tests.helpers.sql import DATA as SQL_DATA


@pytest.fixture(scope="session")
def wiki_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A corpus in Search-R1's shape (``"Title"\\ntext`` contents) and its passages."""
    out = tmp_path_factory.mktemp("wiki") / "wiki-18.jsonl"
    return out, search_r1_corpus(SHARED_DATA / "search" / "squad_v1.1_corpus.jsonl", out)


@pytest.fixture(scope="session")
def wiki_index(wiki_corpus: tuple[Path, list[dict]], tmp_path_factory) -> Path:
    """The corpus built into a BM25 index by ``toolfleet search build``."""
    from toolfleet.search.cli import main as search_cli

    out = tmp_path_factory.mktemp("wiki-index")
    assert search_cli(["build", str(wiki_corpus[0]), "--out", str(out), "--quiet"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["passages"] == CORPUS_SIZE
    return out


@pytest.fixture(scope="session")
def serper() -> Iterator[SerperStandIn]:
    """A stand-in of Serper's API on this machine."""
    stand_in = SerperStandIn(free_port())
    with serve_app(stand_in.app, stand_in.port):
        yield stand_in


@pytest.fixture(scope="session")
def live_gateway(wiki_index: Path, serper: SerperStandIn) -> Iterator[str]:
    """``toolfleet serve`` with every service; its URL."""
    env = {
        "TOOLFLEET_SEARCH_INDEXES": json.dumps({"wiki": str(wiki_index)}),
        "TOOLFLEET_SEARCH_PROCESSES": "0",
        "TOOLFLEET_SEARCH_WEB_PROVIDER": "serper",
        "TOOLFLEET_SEARCH_WEB_API_KEY": "test-key",
        "TOOLFLEET_SEARCH_WEB_ENDPOINT": f"http://127.0.0.1:{serper.port}/search",
        "TOOLFLEET_SEARCH_WEB_RATE_PER_S": "100",
        "TOOLFLEET_SQL_SQLITE_DIRS": json.dumps([str(SQL_DATA)]),
        "TOOLFLEET_SANDBOX_POOL_SIZE": "1",
        "TOOLFLEET_SANDBOX_LIGHT_POOL_SIZE": "1",
        "TOOLFLEET_MAX_BODY_BYTES": str(64 << 20),
    }
    with serving(env=env, timeout_s=180) as url:
        yield url
