"""Search-R1's own artefacts served unchanged: a corpus in wiki-18's shape (``{"id",
"contents": "\\"Title\\"\\ntext"}``) and FAISS index files made as Search-R1's
``index_builder.py`` makes them (``passage: `` + contents, mean pooling, unit length,
``index_factory(d, faiss_type, METRIC_INNER_PRODUCT)``), with the model they were built with
given as a local directory. Through ``POST /retrieve``, toolfleet must answer what Search-R1's
``retrieval_server.py`` logic answers: ``query: `` + question, the same pooling, the FAISS
file searched as it is, the corpus's rows as they are.

The reference embeddings come from the numpy encoder (an implementation independent of the
ONNX graph toolfleet serves with), on real SQuAD passages and questions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np
import pytest
from toolfleet.search.cli import main as search_cli
from toolfleet.search.encoder import Encoder
from toolfleet.search.encoders import EncoderSpec

from tests.helpers import SHARED_DATA, gateway
from tests.search.test_search import search_registry

DATA = SHARED_DATA / "search"
PASSAGES = 150


@pytest.fixture(scope="module")
def reference() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory, reference: Encoder) -> dict:
    """wiki-18-shaped corpus, Flat and HNSW FAISS files, and the questions."""
    out = tmp_path_factory.mktemp("search-r1")
    rows, ids = [], set()
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f:
        for line in f:
            p = json.loads(line)
            if p["id"].startswith("squad-dev-"):
                rows.append({"id": str(len(rows)), "contents": f'"{p["title"]}"\n{p["text"]}'})
                ids.add(p["id"])
                if len(rows) == PASSAGES:
                    break
    corpus = out / "wiki-18.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vectors = reference.encode([f"passage: {r['contents']}" for r in rows])
    files = {}
    for faiss_type in ("Flat", "HNSW32"):
        index = faiss.index_factory(vectors.shape[1], faiss_type, faiss.METRIC_INNER_PRODUCT)
        index.add(vectors)
        files[faiss_type] = out / f"e5_{faiss_type}.index"
        faiss.write_index(index, str(files[faiss_type]))
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        questions = [q["question"] for q in map(json.loads, f) if q["passage_id"] in ids]
    return {"corpus": corpus, "rows": rows, "files": files, "questions": questions[::4][:40]}


def search_r1_answers(
    artefacts: dict, reference: Encoder, faiss_type: str, queries: list[str], k: int
) -> list[list[dict]]:
    """What retrieval_server.py's dense retriever answers: ``query: `` prefix (e5), mean
    pooling, normalised, the FAISS file searched as is, the corpus rows by position."""
    index = faiss.read_index(str(artefacts["files"][faiss_type]))
    scores, idxs = index.search(reference.encode([f"query: {q}" for q in queries]), k)
    return [
        [{"document": artefacts["rows"][i], "score": float(s)} for i, s in zip(r, sc, strict=True)]
        for r, sc in zip(idxs, scores, strict=True)
    ]


def imported(artefacts: dict, out: Path, faiss_type: str, *extra: str) -> Path:
    model = EncoderSpec().directory()  # the model the index was built with, on local disk
    argv = [
        "import",
        "--corpus",
        str(artefacts["corpus"]),
        "--faiss-index",
        str(artefacts["files"][faiss_type]),
        "--encoder",
        str(model),
        "--retriever-name",
        "e5",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    assert search_cli(argv) == 0
    return out


def assert_same(found: list[list[dict]], want: list[list[dict]]) -> None:
    """Identical documents in identical order, scores to float tolerance; a swap is allowed
    only between passages whose reference scores tie within 2e-3."""
    for got, ref in zip(found, want, strict=True):
        assert len(got) == len(ref)
        for g, r in zip(got, ref, strict=True):
            assert g["score"] == pytest.approx(r["score"], abs=2e-3)
            if g["document"] != r["document"]:
                twin = [x for x in ref if x["document"] == g["document"]]
                assert twin and abs(twin[0]["score"] - r["score"]) < 2e-3, (g, r)


@pytest.mark.parametrize("faiss_type", ["Flat", "HNSW32"])
async def test_search_r1_index_served_unchanged(
    artefacts: dict, reference: Encoder, tmp_path: Path, faiss_type: str
) -> None:
    index = imported(artefacts, tmp_path / "ix", faiss_type)
    meta = json.loads((index / "meta.json").read_text())
    assert meta["dense"]["faiss_type"] == (
        "IndexFlatIP" if faiss_type == "Flat" else "IndexHNSWFlat"
    )
    assert not (index / "passages.jsonl").exists()  # the corpus is read where it is
    queries = artefacts["questions"]
    want = search_r1_answers(artefacts, reference, faiss_type, queries, 5)
    async with gateway(search_registry(indexes={"wiki": index})) as client:
        r = await client.post(
            "/retrieve", json={"queries": queries, "topk": 5, "return_scores": True}
        )
        assert r.status_code == 200, r.text
        assert_same(r.json()["result"], want)
        # the document is the corpus's row unchanged: wiki-18's quoted title included
        first = r.json()["result"][0][0]["document"]
        assert first["contents"].startswith('"') and set(first) == {"id", "contents"}
        plain = (await client.post("/retrieve", json={"queries": queries[:2], "topk": 3})).json()
        assert [[d["id"] for d in docs] for docs in plain["result"]] == [
            [d["document"]["id"] for d in docs[:3]] for docs in want[:2]
        ]


async def test_bm25_beside_an_imported_index_keeps_dense_as_the_default(
    artefacts: dict, reference: Encoder, tmp_path: Path
) -> None:
    index = imported(artefacts, tmp_path / "ix", "Flat", "--bm25")
    queries = artefacts["questions"][:10]
    want = search_r1_answers(artefacts, reference, "Flat", queries, 3)
    async with gateway(search_registry(indexes={"wiki": index})) as client:
        r = await client.post("/retrieve", json={"queries": queries, "return_scores": True})
        assert_same(r.json()["result"], want)
        hybrid = (
            await client.post(
                "/v1/tools/search/call",
                json={"arguments": {"query": queries[0], "retriever": "hybrid"}},
            )
        ).json()
        assert hybrid["ok"] and hybrid["content"][0]["text"].startswith("Doc 1(Title: ")


def test_artefacts_that_do_not_match_are_refused(artefacts: dict, tmp_path: Path, capsys) -> None:
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps(r) + "\n" for r in artefacts["rows"][:-1]))
    argv = ["import", "--faiss-index", str(artefacts["files"]["Flat"]), "--out", str(tmp_path)]
    assert search_cli([*argv, "--corpus", str(short), "--quiet"]) == 2
    assert f"holds {PASSAGES} vectors but the corpus {PASSAGES - 1}" in capsys.readouterr().err
    wide = faiss.IndexFlatIP(768)  # as if made by a base-size model
    wide.add(np.zeros((PASSAGES, 768), np.float32))
    faiss.write_index(wide, str(tmp_path / "wide.index"))
    argv = ["import", "--corpus", str(artefacts["corpus"]), "--out", str(tmp_path / "w")]
    assert search_cli([*argv, "--faiss-index", str(tmp_path / "wide.index"), "--quiet"]) == 2
    assert "384-d embeddings, the FAISS index holds 768-d" in capsys.readouterr().err
    assert search_cli([*argv, "--faiss-index", str(tmp_path / "none.index")]) == 2
    assert "no such file" in capsys.readouterr().err
    not_a_corpus = tmp_path / "bad.jsonl"
    not_a_corpus.write_text('{"id": "1", "contents": "t\\nx"}\nnot json\n')
    argv = ["import", "--faiss-index", str(artefacts["files"]["Flat"]), "--out", str(tmp_path)]
    assert search_cli([*argv, "--corpus", str(not_a_corpus), "--quiet"]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err


async def test_a_corpus_changed_after_import_is_refused_at_start(
    artefacts: dict, tmp_path: Path
) -> None:
    corpus = tmp_path / "wiki.jsonl"
    corpus.write_bytes(artefacts["corpus"].read_bytes())
    moved = dict(artefacts, corpus=corpus)
    index = imported(moved, tmp_path / "ix", "Flat")
    with corpus.open("a") as f:
        f.write(json.dumps({"id": "x", "contents": "new\npassage"}) + "\n")
    os.utime(corpus)
    with pytest.raises(ValueError, match="changed since it was imported"):
        async with gateway(search_registry(indexes={"wiki": index})):
            pass
