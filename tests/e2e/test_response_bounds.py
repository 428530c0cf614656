"""No input makes a search or vision response unbounded (issue 14, end of item 4), and every
cut is stated in the observation.

Before: ``search`` returned each passage's full text in ``data`` whatever its length
(only the text part was cut, unannounced), ``web_search`` passed on whatever a provider sent,
and ``video_frames`` returned up to 64 PNG frames of 4 megapixels each (hundreds of MB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from toolfleet.core.registry import ToolRegistry
from toolfleet.search.cli import main as search_cli
from toolfleet.search.service import SearchService
from toolfleet.search.settings import SearchSettings

from tests.helpers import free_port, gateway, new_session, serve_app
from tests.helpers.vision import (
    VIDEOS,
    call,
    images_of,
    need_data,
    ok,
    uploaded,
    vision_gateway,
)

LONG = 50_000


@pytest.fixture(scope="module")
def index_with_long_passages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small corpus whose passages include a very long one and a very long title."""
    corpus = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    passages = [
        {"id": "short", "title": "Rivers", "text": "The Nile is a long river in Africa."},
        {"id": "long", "title": "Nile", "text": "The Nile river " + "flows north " * LONG},
        {"id": "titled", "title": "Nile " * 1000, "text": "The Nile delta."},
    ]
    corpus.write_text("".join(json.dumps(p) + "\n" for p in passages))
    out = tmp_path_factory.mktemp("index")
    assert search_cli(["build", str(corpus), "--out", str(out), "--quiet"]) == 0
    return out


async def test_search_passages_are_cut_and_it_is_said(index_with_long_passages: Path) -> None:
    settings = SearchSettings(indexes={"ix": index_with_long_passages}, processes=0)
    async with gateway(ToolRegistry(SearchService(settings).tools())) as client:
        r = await client.post(
            "/v1/tools/search/call", json={"arguments": {"query": "Nile river", "top_k": 3}}
        )
        obs = r.json()
        assert obs["ok"] and obs["truncated"] is True
        hits = {h["id"]: h for h in obs["data"]["results"][0]}
        assert len(hits["long"]["text"]) == settings.max_passage_chars + len(" ...")
        assert len(hits["titled"]["title"]) <= 504
        assert hits["short"]["text"] == "The Nile is a long river in Africa."
        text = obs["content"][0]["text"]
        assert "(2 passages were longer than 4000 characters and cut there" in text
        assert len(r.content) < 20_000

        many = {"queries": ["Nile"] * 200, "top_k": 20}
        r = await client.post("/v1/tools/search/call", json={"arguments": many})
        error = r.json()["error"]
        assert error["kind"] == "invalid_arguments"
        assert (
            "200 queries x top_k 20 = 4000 passages; one call returns at most 2048"
            in (error["message"])
        )
        r = await client.post("/v1/tools/search/call", json={"arguments": {"query": "delta"}})
        assert (r.json()["ok"] and r.json()["truncated"] is False) or r.json()["ok"]
        r = await client.post("/retrieve", json={"queries": ["Nile"], "topk": 3})
        assert r.status_code == 200
        assert all(len(d["contents"]) < 5000 for d in r.json()["result"][0])


class Provider:
    """A stand-in web search provider (Serper's shape) that sends oversized results."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.port = free_port()

        @self.app.post("/search")
        async def search(request: Request) -> JSONResponse:
            body = await request.json()
            organic = [
                {
                    "title": "T" * 10_000,
                    "link": "https://example.org/" + "p" * 10_000,
                    "snippet": "s" * 200_000,
                },
                {"title": "fine", "link": "https://example.org/ok", "snippet": "short"},
            ]
            return JSONResponse({"organic": organic[: body["num"]]})


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    with serve_app(p.app, p.port):
        yield p


async def test_web_results_are_cut_and_it_is_said(provider: Provider) -> None:
    settings = SearchSettings(
        web_provider="serper",
        web_api_key="k",
        web_endpoint=f"http://127.0.0.1:{provider.port}/search",
        processes=0,
    )
    async with gateway(ToolRegistry(SearchService(settings).tools())) as client:
        r = await client.post(
            "/v1/tools/web_search/call", json={"arguments": {"query": "x", "top_k": 2}}
        )
        obs = r.json()
        assert obs["ok"] and obs["truncated"] is True
        big, fine = obs["data"]["results"][0]
        assert len(big["snippet"]) == settings.max_passage_chars + len(" ...")
        assert len(big["title"]) <= 504 and len(big["url"]) <= 2004
        assert fine == {"title": "fine", "url": "https://example.org/ok", "snippet": "short"}
        assert (
            "(1 passage was longer than 4000 characters and cut there"
            in (obs["content"][0]["text"])
        )
        assert len(r.content) < 20_000


async def test_video_frames_stop_at_the_response_byte_cap() -> None:
    need_data()
    async with vision_gateway(max_response_bytes=400_000) as client:
        sid = await new_session(client)
        await uploaded(client, sid, VIDEOS / "car-detection.mp4")
        obs = await call(client, "video_frames", sid, num_frames=12, format="png")
        assert obs["ok"] and obs["truncated"] is True
        kept = images_of(obs)
        assert 1 <= len(kept) < 12
        assert sum(len(p["data"]) * 3 // 4 for p in kept) <= 400_000 + 4
        assert len(obs["data"]["frames"]) == len(kept)
        text = "\n".join(p["text"] for p in obs["content"] if p["type"] == "text")
        assert f"{12 - len(kept)} of the 12 frames asked for were left out" in text
        assert "Ask for fewer frames, a smaller max_pixels, or format jpeg." in text
        # within the cap, nothing is left out, and the session keeps working
        small = await ok(client, "video_frames", sid, num_frames=2, max_pixels=64 * 64)
        assert small["truncated"] is False and len(images_of(small)) == 2
