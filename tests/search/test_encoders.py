"""The dense encoders on real SQuAD passages: the ONNX graph written from the packaged
all-MiniLM-L6-v2 weights, run by ONNX Runtime and by OpenVINO, embeds as the numpy
reference path does; bf16 stays within a hair of fp32, int8 (NNCF-quantized, calibrated on
other passages) within 0.01 of fp32's cosine and ranks as it does; an int8 index built and
served again from an empty cache quantizes to the same model; batches of similar token
length come back in order and unpadded; the multi-process pool answers as one process;
Search-R1's encoder conventions; bad specs are refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from toolfleet.search.encode_pool import EncoderPool
from toolfleet.search.encoder import Encoder
from toolfleet.search.encoders import (
    BGE_INSTRUCTION,
    EncoderError,
    EncoderSpec,
    TextEncoder,
    bucketed,
    onnx_path,
)
from toolfleet.search.index import SearchIndex, build_index
from toolfleet.search.quantize import calibrate, calibration_digest

from tests.helpers import SHARED_DATA

DATA = SHARED_DATA / "search"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """48 real passages of varied length, and 16 real questions."""
    passages, questions = [], []
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f:
        for i, line in enumerate(f):
            if i % 400 == 0:
                p = json.loads(line)
                passages.append(f"{p['title']}\n{p['text']}")
            if len(passages) == 48:
                break
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        questions = [json.loads(line)["question"] for _, line in zip(range(16), f, strict=False)]
    return passages + questions


@pytest.fixture(scope="module")
def calibration() -> list[str]:
    """128 real passages none of the tested ones are among (the corpus's 10,000th on)."""
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f:
        rows = [json.loads(line) for i, line in enumerate(f) if 10_000 <= i < 10_128]
    return [f"{p['title']}\n{p['text']}" for p in rows]


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    """The numpy path's embeddings (the encoder the service ran before ONNX)."""
    return Encoder().encode(texts)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_onnx_fp32_embeds_as_the_numpy_path(
    texts: list[str], reference: np.ndarray, runtime: str
) -> None:
    encoder = TextEncoder(EncoderSpec(runtime=runtime, precision="fp32"), threads=1)
    found = encoder.encode(texts, kind="passage")
    assert found.shape == reference.shape == (len(texts), 384)
    assert np.abs(found - reference).max() < 2e-3  # the numpy path's GELU is the tanh form
    assert np.linalg.norm(found, axis=1) == pytest.approx(1.0, abs=1e-5)
    # same ranking of passages for each question
    passages, questions = found[:48], found[48:]
    want = np.argsort(-(reference[48:] @ reference[:48].T), axis=1)[:, :3]
    assert (np.argsort(-(questions @ passages.T), axis=1)[:, :3] == want).mean() > 0.95


def test_bf16_stays_close_to_fp32(texts: list[str]) -> None:
    fp32 = TextEncoder(EncoderSpec(precision="fp32"), threads=1).encode(texts)
    bf16 = TextEncoder(EncoderSpec(precision="bf16"), threads=1).encode(texts)
    assert (fp32 * bf16).sum(1).min() > 0.999  # cosine


def test_int8_stays_close_to_fp32_and_ranks_as_it_does(
    texts: list[str], calibration: list[str]
) -> None:
    spec = calibrate(EncoderSpec(precision="int8"), lambda: calibration)
    assert spec.calibration == calibration_digest(calibration)
    int8 = TextEncoder(spec, threads=1).encode(texts, kind="passage")
    fp32 = TextEncoder(EncoderSpec(precision="fp32"), threads=1).encode(texts, kind="passage")
    cosine = (fp32 * int8).sum(1)
    # measured (AVX-512 VNNI, 8-bit weights): 0.998 and 0.996
    assert cosine.mean() > 0.99 and cosine.min() > 0.98
    assert np.linalg.norm(int8, axis=1) == pytest.approx(1.0, abs=1e-5)
    # each question's best passage by int8 is fp32's best, or a near tie of it (measured:
    # 14 of 16 the same, two swaps of passages 0.003 apart in fp32's score)
    exact, quantized = fp32[48:] @ fp32[:48].T, int8[48:] @ int8[:48].T
    best = quantized.argmax(1)
    assert (best == exact.argmax(1)).mean() >= 0.75
    assert (exact.max(1) - exact[np.arange(len(best)), best]).max() < 0.01
    assert np.abs(quantized - exact).max() < 0.05


def test_an_int8_index_is_served_again_from_an_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, texts: list[str]
) -> None:
    """The build calibrates on the corpus's first passages and records their digest; a
    service whose cache lost the quantized graph makes it again from the index's passages:
    the same model (queries embed as at build time). A changed corpus is refused."""
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w") as f:
        for i, text in enumerate(texts[:40]):
            title, body = text.split("\n", 1)
            f.write(json.dumps({"id": f"p{i}", "title": title, "text": body}) + "\n")
    monkeypatch.setenv("TOOLFLEET_SEARCH_ENCODER_CACHE", str(tmp_path / "cache-a"))
    meta = build_index(corpus, tmp_path / "index", dense=True, encoder=EncoderSpec(
        precision="int8"))  # fmt: skip
    spec = EncoderSpec.model_validate(meta["dense"]["encoder"])
    assert spec.precision == "int8" and spec.calibration is not None
    built = SearchIndex("a", tmp_path / "index")
    questions = texts[48:]
    first = built.retrievers["dense"].encoder.encode(questions)
    hits = built.search(questions, 3, "dense")
    monkeypatch.setenv("TOOLFLEET_SEARCH_ENCODER_CACHE", str(tmp_path / "cache-b"))
    again = SearchIndex("b", tmp_path / "index")
    assert list((tmp_path / "cache-b").glob("*-int8-*.xml"))
    assert np.abs(again.retrievers["dense"].encoder.encode(questions) - first).max() < 1e-6
    assert again.search(questions, 3, "dense") == hits
    built.close()
    again.close()
    monkeypatch.setenv("TOOLFLEET_SEARCH_ENCODER_CACHE", str(tmp_path / "cache-c"))
    with pytest.raises(EncoderError, match="corpus changed"):
        TextEncoder(spec, calibration=lambda: ["another passage"])
    with pytest.raises(EncoderError, match="not in the encoder cache"):
        TextEncoder(spec)
    with pytest.raises(EncoderError, match="calibration passages"):
        TextEncoder(EncoderSpec(precision="int8"))


def test_length_buckets_cover_every_text_once_shortest_first() -> None:
    lengths = [30, 5, 17, 5, 64, 9, 12, 1]
    batches = bucketed(lengths, 3)
    rows = np.concatenate([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(lengths)))
    assert [lengths[r] for r in rows] == sorted(lengths)
    for batch, width in batches:
        assert (
            width % 8 == 0
            and max(lengths[r] for r in batch) <= width < max(lengths[r] for r in batch) + 8
        )


def test_bucketed_batches_come_back_in_order_and_unpadded(texts: list[str]) -> None:
    """Texts of mixed lengths in a shuffled order, run in batches of 5 padded to each
    batch's longest: every row is the embedding of its own text, as when run alone."""
    encoder = TextEncoder(EncoderSpec(runtime="onnxruntime"), threads=1)
    mixed = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:20]]
    batched = encoder.encode(mixed, batch_size=5)
    alone = np.concatenate([encoder.encode([t]) for t in mixed])
    assert np.abs(batched - alone).max() < 1e-5
    assert np.abs(encoder.encode(mixed[::-1], batch_size=7)[::-1] - alone).max() < 1e-5


def test_process_pool_embeds_as_one_process(texts: list[str]) -> None:
    spec = EncoderSpec(runtime="onnxruntime")
    with EncoderPool(spec, processes=2) as pool:
        parts = list(pool.stream(iter(texts), "passage", chunk=10))
        assert pool.dimension == 384
    assert [len(p) for p in parts] == [10] * 6 + [4]
    alone = TextEncoder(spec).encode(texts, kind="passage")
    assert np.abs(np.concatenate(parts) - alone).max() < 1e-5


def test_prefixes_pooling_and_normalisation_follow_the_spec(texts: list[str]) -> None:
    spec = EncoderSpec(runtime="onnxruntime", query_prefix="query: ", passage_prefix="passage: ")
    encoder = TextEncoder(spec, threads=1)
    plain = TextEncoder(EncoderSpec(runtime="onnxruntime"), threads=1)
    q = encoder.encode(texts[-2:], kind="query")
    assert np.abs(q - plain.encode(["query: " + t for t in texts[-2:]])).max() < 1e-5
    p = encoder.encode(texts[:2], kind="passage")
    assert np.abs(p - plain.encode(["passage: " + t for t in texts[:2]])).max() < 1e-5
    cls = TextEncoder(EncoderSpec(runtime="onnxruntime", pooling="cls"), threads=1)
    assert np.abs(cls.encode(texts[:2]) - plain.encode(texts[:2])).max() > 0.01
    raw = TextEncoder(EncoderSpec(runtime="onnxruntime", normalize=False), threads=1)
    lengths = np.linalg.norm(raw.encode(texts[:4]), axis=1)
    assert not np.allclose(lengths, 1.0)
    pooler = TextEncoder(EncoderSpec(runtime="onnxruntime", pooling="pooler"), threads=1)
    assert pooler.encode(texts[:1]).shape == (1, 384)


def test_search_r1_conventions() -> None:
    e5 = EncoderSpec.search_r1("e5", "/models/e5-base-v2")
    assert (e5.query_prefix, e5.passage_prefix, e5.pooling, e5.normalize) == (
        "query: ",
        "passage: ",
        "mean",
        True,
    )
    bge = EncoderSpec.search_r1("bge", "/m")
    assert bge.query_prefix == BGE_INSTRUCTION and bge.passage_prefix == ""
    assert bge.pooling == "mean"  # retrieval_server.py pools by mean whatever the model
    assert EncoderSpec.search_r1("dpr", "/m").normalize is False
    assert EncoderSpec.search_r1("my-e5-large", "/m").passage_prefix == ""  # builder: == "e5"


def test_a_model_directory_of_its_own_is_served(tmp_path: Path, texts: list[str]) -> None:
    """A local Hugging Face directory (here a copy of the packaged model, its weights saved
    under a wrapper's ``bert.`` prefix) is exported to ONNX and embeds the same."""
    from safetensors.numpy import load_file, save_file

    source = EncoderSpec().directory()
    model = tmp_path / "my-model"
    model.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, model / name)
    weights = load_file(str(source / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()}, str(model / "model.safetensors"))
    spec = EncoderSpec(model=str(model), runtime="onnxruntime")
    assert onnx_path(spec).is_file()
    packaged = TextEncoder(EncoderSpec(runtime="onnxruntime"), threads=1).encode(texts[:4])
    assert np.abs(TextEncoder(spec, threads=1).encode(texts[:4]) - packaged).max() < 1e-5


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"model": "/no/such/model"}, "neither"),
        ({"precision": "bf16", "runtime": "onnxruntime"}, "openvino"),
        ({"precision": "int8", "runtime": "onnxruntime"}, "openvino"),
    ],
)
def test_bad_encoder_specs_are_refused(spec: dict, says: str) -> None:
    with pytest.raises(EncoderError, match=says):
        TextEncoder(EncoderSpec(**spec))


def test_a_directory_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EncoderError, match=r"neither model\.onnx nor model\.safetensors"):
        TextEncoder(EncoderSpec(model=str(tmp_path)))
    with pytest.raises(EncoderError, match="GPU"):
        TextEncoder(EncoderSpec(), gpu=True)
