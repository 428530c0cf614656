"""The search service over an index built from a slice of the real SQuAD passages
(../shared/data/search), through the gateway: the tool, the drop-in Search-R1 and FlashRAG
routes, web search against a local stand-in of a provider, and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from toolfleet.core.registry import ToolRegistry
from toolfleet.search.cli import main as search_cli
from toolfleet.search.retrievers import BM25Retriever
from toolfleet.search.service import SearchService
from toolfleet.search.settings import SearchSettings
from toolfleet.search.topk import top_k

from tests.helpers import SHARED_DATA, free_port, gateway, serve_app

DATA = SHARED_DATA / "search"
SLICE = 120  # passages: enough for real competition between them, quick to embed


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The first SLICE dev passages, half in Search-R1's shape, and their questions."""
    if not DATA.is_dir():
        pytest.fail(f"the search tests need the shared data at {DATA}")
    out = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    ids = set()
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f, out.open("w") as w:
        for line in f:
            p = json.loads(line)
            if not p["id"].startswith("squad-dev"):
                continue
            if len(ids) % 2:
                w.write(
                    json.dumps({"id": p["id"], "contents": f"{p['title']}\n{p['text']}"}) + "\n"
                )
            else:
                w.write(line)
            ids.add(p["id"])
            if len(ids) == SLICE:
                break
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        questions = [q for q in map(json.loads, f) if q["passage_id"] in ids]
    return out, questions


@pytest.fixture(scope="module")
def index_dir(
    corpus_slice: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("index")
    assert search_cli(["build", str(corpus_slice[0]), "--out", str(out), "--dense", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def bm25_only(
    corpus_slice: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("bm25")
    assert search_cli(["build", str(corpus_slice[0]), "--out", str(out), "--quiet"]) == 0
    return out


def search_registry(**settings: object) -> ToolRegistry:
    return ToolRegistry(SearchService(SearchSettings(**{"processes": 0, **settings})).tools())


@pytest.fixture
async def client(index_dir: Path, bm25_only: Path) -> AsyncIterator[httpx.AsyncClient]:
    registry = search_registry(indexes={"squad": index_dir, "lexical": bm25_only}, max_top_k=20)
    async with gateway(registry) as c:
        yield c


def sample(questions: list[dict], n: int = 40) -> list[dict]:
    return questions[:: max(1, len(questions) // n)][:n]


@pytest.mark.parametrize(("retriever", "floor"), [("bm25", 0.8), ("dense", 0.7), ("hybrid", 0.8)])
async def test_known_questions_find_their_gold_passage(
    client: httpx.AsyncClient, corpus_slice: tuple[Path, list[dict]], retriever: str, floor: float
) -> None:
    questions = sample(corpus_slice[1])
    r = await client.post(
        "/v1/tools/search/call",
        json={
            "arguments": {
                "queries": [q["question"] for q in questions],
                "top_k": 5,
                "retriever": retriever,
            }
        },
    )
    obs = r.json()
    assert obs["ok"], obs
    results = obs["data"]["results"]
    found = sum(
        q["passage_id"] in [h["id"] for h in hits]
        for q, hits in zip(questions, results, strict=True)
    )
    assert found / len(questions) >= floor, (retriever, found, len(questions))
    assert obs["usage"]["cost"] == len(questions)  # one unit per query
    assert all(len(hits) == 5 for hits in results)
    scores = [h["score"] for h in results[0]]
    assert scores == sorted(scores, reverse=True)


async def test_batches_split_over_processes_answer_the_same(
    client: httpx.AsyncClient, corpus_slice: tuple[Path, list[dict]], index_dir: Path
) -> None:
    queries = [q["question"] for q in sample(corpus_slice[1], 20)]
    body = {"arguments": {"queries": queries, "top_k": 5, "retriever": "hybrid"}}
    alone = (await client.post("/v1/tools/search/call", json=body)).json()
    async with gateway(search_registry(indexes={"squad": index_dir}, processes=2)) as split:
        shared = (await split.post("/v1/tools/search/call", json=body)).json()
        bad = {"arguments": {"queries": queries, "index": "squad", "retriever": "nope"}}
        assert (await split.post("/v1/tools/search/call", json=bad)).status_code == 200
    assert shared["ok"] and shared["data"] == alone["data"]


async def test_one_query_renders_passages_for_the_model(
    client: httpx.AsyncClient, corpus_slice: tuple[Path, list[dict]]
) -> None:
    q = corpus_slice[1][0]
    obs = (
        await client.post("/v1/tools/search/call", json={"arguments": {"query": q["question"]}})
    ).json()
    assert obs["ok"]
    text = obs["content"][0]["text"]
    assert text.startswith("Doc 1(Title: ")
    assert text.count("\nDoc ") == 2  # default top_k 3
    top = obs["data"]["results"][0][0]
    assert top["id"] == q["passage_id"]
    assert top["title"] == q["title"]


async def test_search_r1_retrieve_route(
    client: httpx.AsyncClient, corpus_slice: tuple[Path, list[dict]]
) -> None:
    questions = corpus_slice[1][:3]
    r = await client.post(
        "/retrieve",
        json={"queries": [q["question"] for q in questions], "topk": 3, "return_scores": True},
    )
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert len(result) == 3 and all(len(docs) == 3 for docs in result)
    first = result[0][0]
    assert set(first) == {"document", "score"}
    assert set(first["document"]) == {"id", "contents"}
    title, _, text = first["document"]["contents"].partition("\n")
    assert title == questions[0]["title"] and text
    assert questions[0]["passage_id"] in [d["document"]["id"] for d in result[0]]
    plain = (await client.post("/retrieve", json={"query": questions[0]["question"]})).json()
    assert set(plain["result"][0][0]) == {"id", "contents"}
    assert (await client.post("/retrieve", json={"topk": 3})).status_code == 422


async def test_flashrag_search_routes(
    client: httpx.AsyncClient, corpus_slice: tuple[Path, list[dict]]
) -> None:
    q = corpus_slice[1][0]
    docs = (await client.post("/search", json={"query": q["question"], "top_n": 2})).json()
    assert len(docs) == 2 and docs[0]["id"] == q["passage_id"]
    docs, scores = (
        await client.post("/search", json={"query": q["question"], "return_score": True})
    ).json()
    assert len(docs) == len(scores) == 10 and scores[0] >= scores[-1]
    batch = (
        await client.post(
            "/batch_search", json={"query": [q["question"], "Super Bowl 50"], "top_n": 4}
        )
    ).json()
    assert [len(b) for b in batch] == [4, 4]


@pytest.mark.parametrize(
    ("arguments", "kind", "says"),
    [
        ({"query": "   "}, "invalid_arguments", "empty"),
        ({"query": "x" * 5000}, "invalid_arguments", "characters"),
        ({"query": "a", "top_k": 21}, "invalid_arguments", "top_k"),
        ({"query": "a", "top_k": 0}, "invalid_arguments", "top_k"),
        ({"query": "a", "queries": ["b"]}, "invalid_arguments", "either"),
        ({"query": "a", "index": "nope"}, "not_found", "nope"),
        ({"query": "a", "index": "lexical", "retriever": "dense"}, "invalid_arguments", "dense"),
        ({"queries": ["a"] * 300}, "invalid_arguments", "300 queries"),
    ],
)
async def test_bad_input_gets_a_diagnostic(
    client: httpx.AsyncClient, arguments: dict, kind: str, says: str
) -> None:
    obs = (await client.post("/v1/tools/search/call", json={"arguments": arguments})).json()
    assert obs["ok"] is False
    assert obs["error"]["kind"] == kind
    assert says in obs["error"]["message"]
    # and the service still answers
    ok = (await client.post("/v1/tools/search/call", json={"arguments": {"query": "ABC"}})).json()
    assert ok["ok"]


async def test_compat_route_passes_the_diagnostic_as_an_http_error(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/retrieve", json={"query": "a", "topk": 500})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_arguments"


async def test_words_outside_the_vocabulary_find_nothing(client: httpx.AsyncClient) -> None:
    obs = (
        await client.post(
            "/v1/tools/search/call",
            json={"arguments": {"query": "qqqzzzxxy", "retriever": "bm25"}},
        )
    ).json()
    assert obs["ok"] and obs["data"]["results"] == [[]]
    assert "No passage matches" in obs["content"][0]["text"]


def test_bm25_ranks_exactly_as_bm25s_scores(
    bm25_only: Path, corpus_slice: tuple[Path, list[dict]]
) -> None:
    """The compiled scorer returns bm25s's exhaustive ranking: same rows, same scores, for
    every question of the slice, a repeated word counting twice, and k past the matches."""
    retriever = BM25Retriever(bm25_only)
    queries = [q["question"] for q in corpus_slice[1]] + ["embargo embargo", "OPEC"]
    for query, known in zip(queries, retriever.token_ids(queries), strict=True):
        full = retriever.model.get_scores_from_ids(known) if known else np.zeros(SLICE)
        for k in (1, 10, SLICE + 5):
            found = retriever.search([query], k)[0]
            want = sorted((row for row in range(SLICE) if full[row] > 0), key=lambda r: -full[r])
            assert len(found) == min(k, len(want)), query
            assert [score for _, score in found] == pytest.approx(
                [float(full[row]) for row in want[:k]], abs=1e-5
            )
            assert all(full[row] == pytest.approx(score, abs=1e-5) for row, score in found)
    repeated = retriever.search(["embargo embargo"], 1)[0][0][1]
    assert repeated == pytest.approx(2 * retriever.search(["embargo"], 1)[0][0][1], rel=1e-5)


def test_top_k_over_a_million_rows_equals_a_full_sort() -> None:
    """Block top-k (the path of large indexes) against sorting every row, ties included."""
    rng = np.random.default_rng(7)
    scores = rng.random(1_000_003, dtype=np.float32)
    scores[rng.choice(len(scores), 5000, replace=False)] = 0.75  # a run of ties
    scores[rng.choice(len(scores), 3, replace=False)] = 2.0
    for k in (1, 3, 10, 50):
        found = top_k(scores, k)
        assert [s for _, s in found] == sorted(scores[scores >= 0.99].tolist(), reverse=True)[:k]
        assert all(scores[row] == s for row, s in found) and len({r for r, _ in found}) == k
    tied = top_k(np.where(scores > 0.99, 0.0, 0.75).astype(np.float32), 20)
    assert [s for _, s in tied] == [0.75] * 20 and len({r for r, _ in tied}) == 20


def test_build_refuses_a_corpus_line_that_is_not_a_passage(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"id": "1", "title": "t", "text": "fine"}\n{"title": "no id"}\n')
    assert search_cli(["build", str(corpus), "--out", str(tmp_path / "ix"), "--quiet"]) == 2
    assert "line 2" in capsys.readouterr().err


# ---------------------------------------------------------------- web search (stand-in)


class StandIn:
    """A local server speaking Serper's response shape; counts requests."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.app = FastAPI()
        self.port = free_port()

        @self.app.post("/search")
        async def search(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append({"body": body, "key": request.headers.get("x-api-key")})
            if body["q"] == "overloaded":
                return JSONResponse({"message": "rate limited"}, status_code=429)
            organic = [
                {"title": f"{body['q']} {i}", "link": f"https://example.org/{i}", "snippet": "s"}
                for i in range(body["num"])
            ]
            return JSONResponse({"organic": organic})


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    s = StandIn()
    with serve_app(s.app, s.port):
        yield s


async def test_web_search_through_a_provider_with_cache_and_rate_limit(
    stand_in: StandIn, index_dir: Path
) -> None:
    registry = search_registry(
        indexes={"squad": index_dir},
        web_provider="serper",
        web_api_key="k-123",
        web_endpoint=f"http://127.0.0.1:{stand_in.port}/search",
        web_rate_per_s=10,
        web_cost_per_query=2.5,
    )
    async with gateway(registry) as client:
        tools = {t["name"] for t in (await client.get("/v1/tools")).json()["tools"]}
        assert {"search", "web_search"} <= tools

        async def web(**arguments: object) -> dict:
            r = await client.post("/v1/tools/web_search/call", json={"arguments": arguments})
            return r.json()

        first = await web(query="toolfleet", top_k=2)
        assert first["ok"], first
        assert [r["url"] for r in first["data"]["results"][0]] == [
            "https://example.org/0",
            "https://example.org/1",
        ]
        assert first["usage"]["cost"] == 2.5
        assert stand_in.requests[0]["key"] == "k-123"
        again = await web(query="toolfleet", top_k=2)
        assert again["data"]["paid"] == 0 and again["usage"]["cost"] == 0  # from the cache
        assert len(stand_in.requests) == 1
        started = time.monotonic()
        await asyncio.gather(*(web(query=f"q{i}") for i in range(3)))
        assert time.monotonic() - started >= 0.2  # 10 per second: spaced 0.1 s apart
        limited = await web(query="overloaded")
        assert limited["error"]["kind"] == "rate_limited" and limited["error"]["retryable"]
