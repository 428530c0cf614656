"""Dense indexes of real SQuAD passages, as `toolfleet search build --dense --index-type`
and `toolfleet search ann` make them: flat answers exactly, HNSW and IVF-PQ find most of the
exact top-10, each is served through the gateway, and bad requests are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from toolfleet.search.cli import main as search_cli
from toolfleet.search.dense import FILES, DenseSearcher
from toolfleet.search.encoders import EncoderSpec, TextEncoder

from tests.helpers import SHARED_DATA, gateway
from tests.search.test_search import search_registry

DATA = SHARED_DATA / "search"
PASSAGES = 1200  # real passages: enough for 138 IVF cells and PQ's 256 codes per byte


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """The first PASSAGES dev passages and their questions."""
    out = tmp_path_factory.mktemp("dense-corpus") / "corpus.jsonl"
    ids = set()
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f, out.open("w") as w:
        for line in f:
            if '"squad-dev-' in line:
                w.write(line)
                ids.add(json.loads(line)["id"])
                if len(ids) == PASSAGES:
                    break
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        questions = [q for q in map(json.loads, f) if q["passage_id"] in ids]
    return out, questions


@pytest.fixture(scope="module")
def index(corpus: tuple[Path, list[dict]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat (exact) dense index, then HNSW and IVF-PQ made from its embeddings."""
    out = tmp_path_factory.mktemp("dense-index")
    argv = ["build", str(corpus[0]), "--out", str(out), "--dense", "--quiet"]
    assert search_cli([*argv, "--processes", "2", "--precision", "int8"]) == 0
    for kind in ("hnsw", "ivf-pq"):
        assert search_cli(["ann", str(out), "--index-type", kind]) == 0
        assert (out / FILES[kind]).is_file()
    return out


@pytest.fixture(scope="module")
def query_vectors(corpus: tuple[Path, list[dict]], index: Path) -> np.ndarray:
    meta = json.loads((index / "meta.json").read_text())
    encoder = TextEncoder(EncoderSpec.model_validate(meta["dense"]["encoder"]))
    return encoder.encode([q["question"] for q in corpus[1][:300]], kind="query")


def exact_top(index: Path, queries: np.ndarray, k: int) -> np.ndarray:
    matrix = np.load(index / "dense.npy")
    return np.argsort(-(queries @ matrix.T), axis=1, kind="stable")[:, :k]


def test_build_records_the_encoder_and_the_embeddings(index: Path) -> None:
    meta = json.loads((index / "meta.json").read_text())
    assert meta["retrievers"] == ["bm25", "dense"] and meta["passages"] == PASSAGES
    dense = meta["dense"]
    assert dense["encoder"]["model"] == "all-MiniLM-L6-v2"
    assert dense["encoder"]["precision"] == "int8"
    assert dense["encoder"]["calibration"]  # the digest of the passages it was calibrated on
    assert dense["dimension"] == 384 and dense["embeddings"] == "dense.npy"
    assert dense["ann"]["index_type"] == "ivf-pq"  # the last one made
    assert dense["ann_build"]["nlist"] == int(4 * PASSAGES**0.5)
    matrix = np.load(index / "dense.npy", mmap_mode="r")
    assert matrix.shape == (PASSAGES, 384)
    assert np.linalg.norm(matrix[:50], axis=1) == pytest.approx(1.0, abs=1e-4)


def test_flat_is_exact(index: Path, query_vectors: np.ndarray) -> None:
    searcher = DenseSearcher(index / "dense.npy", None)
    scores, _ = searcher.search(query_vectors, 10)
    want = exact_top(index, query_vectors, 10)
    matrix = np.load(index / "dense.npy")
    for i in range(len(query_vectors)):
        # same rows, or a tie at float rounding
        exact = query_vectors[i] @ matrix.T
        assert np.allclose(scores[i], exact[want[i]], atol=1e-5)


@pytest.mark.parametrize(("kind", "floor"), [("hnsw", 0.95), ("ivf-pq", 0.9)])
def test_ann_recall_at_10_against_exact(
    index: Path, query_vectors: np.ndarray, kind: str, floor: float
) -> None:
    searcher = DenseSearcher(
        index / "dense.npy" if kind == "ivf-pq" else None,
        index / FILES[kind],
        rerank=4 if kind == "ivf-pq" else 0,
    )
    _, rows = searcher.search(query_vectors, 10)
    want = exact_top(index, query_vectors, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want, strict=True)])
    assert recall >= floor, (kind, recall)


def test_ivf_pq_without_rerank_scores_approximately(index: Path, query_vectors: np.ndarray) -> None:
    raw = DenseSearcher(None, index / FILES["ivf-pq"])
    reranked = DenseSearcher(index / "dense.npy", index / FILES["ivf-pq"], rerank=4)
    s_raw, _ = raw.search(query_vectors[:20], 5)
    s_exact, rows = reranked.search(query_vectors[:20], 5)
    matrix = np.load(index / "dense.npy")
    for i in range(20):  # reranked scores are exact inner products
        assert np.allclose(s_exact[i], matrix[rows[i]] @ query_vectors[i], atol=1e-5)
    assert not np.allclose(s_raw, s_exact, atol=1e-4)  # PQ's are approximations


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf-pq"])
async def test_each_index_type_is_served(
    index: Path, corpus: tuple[Path, list[dict]], kind: str, tmp_path: Path
) -> None:
    """The same embeddings behind each index type, served through the gateway: the gold
    passage of most questions is found (dense and hybrid)."""
    served = tmp_path / kind
    served.mkdir()
    for item in index.iterdir():
        if item.is_file():
            (served / item.name).symlink_to(item)
        else:
            (served / item.name).symlink_to(item, target_is_directory=True)
    meta = json.loads((index / "meta.json").read_text())
    meta["dense"]["ann"]["index_type"] = kind
    meta["dense"]["index_file"] = FILES.get(kind)
    (served / "meta.json").unlink()
    (served / "meta.json").write_text(json.dumps(meta))
    questions = corpus[1][::25][:40]
    async with gateway(search_registry(indexes={"squad": served})) as client:
        for retriever in ("dense", "hybrid"):
            obs = (
                await client.post(
                    "/v1/tools/search/call",
                    json={
                        "arguments": {
                            "queries": [q["question"] for q in questions],
                            "top_k": 5,
                            "retriever": retriever,
                        }
                    },
                )
            ).json()
            assert obs["ok"], obs
            found = sum(
                q["passage_id"] in [h["id"] for h in hits]
                for q, hits in zip(questions, obs["data"]["results"], strict=True)
            )
            assert found / len(questions) >= 0.7, (kind, retriever, found)


def test_bad_ann_requests_are_refused(
    index: Path, corpus: tuple[Path, list[dict]], tmp_path: Path, capsys
) -> None:
    lexical = tmp_path / "lexical"
    assert search_cli(["build", str(corpus[0]), "--out", str(lexical), "--quiet"]) == 0
    assert search_cli(["ann", str(lexical), "--index-type", "hnsw"]) == 2
    assert "no embeddings" in capsys.readouterr().err
    assert search_cli(["ann", str(index), "--index-type", "ivf-pq", "--nlist", "5000"]) == 2
    assert "at least nlist" in capsys.readouterr().err
    assert search_cli(["ann", str(index), "--index-type", "ivf-pq", "--pq-m", "7"]) == 2
    assert "does not divide" in capsys.readouterr().err
    argv = ["build", str(corpus[0]), "--out", str(tmp_path / "x"), "--dense", "--quiet"]
    assert search_cli([*argv, "--encoder", str(tmp_path / "nowhere"), "--limit", "5"]) == 2
    assert "local directory" in capsys.readouterr().err


def test_the_build_quantizes_only_corpora_that_repay_it(tmp_path: Path) -> None:
    """`--precision auto` (the build's default): int8 from INT8_FROM passages, else bf16."""
    from toolfleet.search import cli

    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"id": i, "contents": "x"}) + "\n" for i in range(50)))
    big = tmp_path / "big.jsonl"
    big.write_text(small.read_text() * (cli.INT8_FROM // 50))
    assert cli._auto_precision(small, None) == "bf16"
    assert cli._auto_precision(big, None) == "int8"
    assert cli._auto_precision(big, 100) == "bf16"  # --limit counts
