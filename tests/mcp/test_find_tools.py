"""find_tools over a 1,000-tool catalogue (the generated server as an upstream), recall@5 on
held-out queries, filters, and the index following changes of the catalogue."""

from __future__ import annotations

import asyncio
import logging

from toolfleet.core.protocol import ToolSpec
from toolfleet.core.registry import ToolRegistry
from toolfleet.mcp.catalogue import Index, document, words_of_name
from toolfleet.mcp.service import McpService
from toolfleet.mcp.settings import McpSettings

from tests.helpers import call, gateway
from tests.helpers.mcp import synthetic
from tests.helpers.tools import Echo
from tests.mcp.queries import QUERIES

log = logging.getLogger(__name__)


def recall_at(hits: list[list[str]], k: int) -> float:
    return sum(target in found[:k] for target, found in hits) / len(hits)


async def test_recall_at_5_on_a_thousand_tools() -> None:
    service = McpService(
        McpSettings(upstreams=[synthetic("cat", tools=1000)], catalogue_refresh_s=0.5)
    )
    registry = ToolRegistry(service.tools())
    assert len([n for n in registry.names() if n.startswith("cat.")]) == 1008
    async with gateway(registry) as client:
        # the dense encoder loads in the background (a catalogue this large asks for it)
        for _ in range(600):
            if service.catalogue and service.catalogue.index.method == "hybrid":
                break
            await asyncio.sleep(0.5)
        assert service.catalogue.index.method == "hybrid"
        results = []
        for query, target in QUERIES:
            obs = await call(client, "find_tools", {"query": query, "top_k": 5})
            assert obs["ok"], obs
            results.append((f"cat.{target}", [t["name"] for t in obs["data"]["tools"]]))
        hybrid = recall_at(results, 5)
        first = recall_at(results, 1)
        bm25_only = Index(service.catalogue.index.specs)
        bm25 = recall_at(
            [(f"cat.{t}", [h.spec.name for h in bm25_only.search(q, 5)]) for q, t in QUERIES], 5
        )
        print(f"find_tools recall@5 hybrid {hybrid:.3f} (recall@1 {first:.3f}), bm25 {bm25:.3f}"
              f" over {len(QUERIES)} held-out queries, 1,009 tools")  # fmt: skip
        assert hybrid >= 0.8, results
        assert bm25 >= 0.5
        # the schema comes with each tool, so the model can call it next
        found = obs["data"]["tools"][0]
        assert found["input_schema"]["type"] == "object"
        assert obs["data"]["catalogue"] == 1009
        # filters
        only = await call(
            client, "find_tools",
            {"query": "delete", "top_k": 10, "filters": {"prefix": ["cat.hr_"]}},
        )  # fmt: skip
        assert {t["name"][:7] for t in only["data"]["tools"]} == {"cat.hr_"}
        none = await call(client, "find_tools", {"query": "x", "filters": {"service": ["sql"]}})
        assert none["ok"] and none["data"]["tools"] == []
        bad = await call(client, "find_tools", {"query": "", "top_k": 0})
        assert bad["error"]["kind"] == "invalid_arguments"


async def test_the_index_follows_the_catalogue() -> None:
    service = McpService(McpSettings(catalogue_refresh_s=0.2))
    registry = ToolRegistry(service.tools())
    async with gateway(registry) as client:
        before = await call(client, "find_tools", {"query": "say the text back"})
        assert before["data"]["tools"] == [] and before["data"]["method"] == "bm25"
        registry.register(Echo())  # a tool served from now on
        for _ in range(100):
            after = await call(client, "find_tools", {"query": "echo the text back"})
            if after["data"]["tools"]:
                break
            await asyncio.sleep(0.1)
        assert after["data"]["tools"][0]["name"] == "echo"
        assert service.catalogue.builds >= 2


def test_documents_split_names_and_keep_parameters() -> None:
    assert words_of_name("memory.create_entities") == "memory create entities"
    assert words_of_name("getTinyImage") == "get Tiny Image"
    spec = ToolSpec(
        name="a.read_file",
        description="Reads a file.",
        input_schema={"properties": {"filePath": {"description": "Where."}}},
        service="mcp",
    )
    assert document(spec) == "a read file\nReads a file.\nfile Path Where."
