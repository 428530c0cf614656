"""A search index: a directory holding a corpus's passages and its retrievers' data.

``build_index`` makes one from a JSON Lines corpus in one streaming pass (plus a second,
sequential one over the stored passages for dense embeddings); ``import_faiss`` makes one
around a Search-R1 corpus and FAISS index file left where they are; ``SearchIndex`` serves
either, memory-mapped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap
from toolfleet.search.corpus import (
    CorpusError,
    Passage,
    PassageStore,
    PassageWriter,
    read_corpus,
    scan_offsets,
)
from toolfleet.search.dense import EMBEDDINGS, AnnParams, DenseSearcher, build_ann, read_index
from toolfleet.search.encode_pool import EncoderPool
from toolfleet.search.encoders import PACKAGED, EncoderSpec, TextEncoder, onnx_path
from toolfleet.search.quantize import CALIBRATION_PASSAGES, calibrate
from toolfleet.search.retrievers import (
    BM25Retriever,
    DenseRetriever,
    Hits,
    HybridRetriever,
    Retriever,
)
from tqdm import tqdm

META = "meta.json"


def document(passage: Passage) -> str:
    """The text a passage is indexed by: its title and its text (Search-R1's ``contents``)."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


def build_index(
    corpus: Path,
    out: Path,
    dense: bool = False,
    progress: bool = False,
    limit: int | None = None,
    encoder: EncoderSpec | None = None,
    ann: AnnParams | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Index the corpus into ``out`` (BM25, and dense embeddings and an ANN index when
    ``dense``); the index's description (also written to ``meta.json``)."""
    spec = encoder or EncoderSpec()
    if dense:
        onnx_path(spec)  # a bad encoder fails now, not after BM25
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    writer = PassageWriter(out)
    passages: Iterator[Passage] = read_corpus(corpus)
    if limit is not None:
        passages = (p for _, p in zip(range(limit), passages, strict=False))
    bar = tqdm(desc="indexing (bm25)", unit=" passages", disable=not progress)
    try:
        BM25Retriever.build((document(p) for p in bar_iter(writer.tee(passages), bar)), out)
    finally:
        count = writer.close()
        bar.close()
    meta: dict[str, Any] = {
        "passages": count,
        "retrievers": ["bm25"],
        "source": str(corpus),
        "build_seconds": {"bm25_s": round(time.perf_counter() - started, 3)},
    }
    if dense:
        store = PassageStore(out)
        try:
            spec = calibrate(spec, lambda: calibration_texts(store, count))
            texts = (document(store.get(i)) for i in range(count))
            meta["dense"] = embed_and_index(
                texts,
                count,
                out,
                spec,
                ann or AnnParams(),
                processes,
                progress,
            )
        finally:
            store.close()
        meta["retrievers"].append("dense")
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def embed_and_index(
    texts: Iterator[str],
    count: int,
    out: Path,
    spec: EncoderSpec,
    ann: AnnParams,
    processes: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Embed ``count`` passages into ``out/dense.npy`` (a stream, over ``processes``
    processes) and make the ANN index; the meta.json entry describing them."""
    started = time.perf_counter()
    bar = tqdm(total=count, desc="embedding (dense)", unit=" passages", disable=not progress)
    with EncoderPool(spec, processes) as pool:
        dimension = pool.dimension
        matrix = open_memmap(
            out / EMBEDDINGS, mode="w+", dtype=np.float32, shape=(count, dimension)
        )
        row = 0
        for block in pool.stream(texts, "passage"):
            matrix[row : row + len(block)] = block
            row += len(block)
            bar.update(len(block))
        matrix.flush()
        del matrix
    bar.close()
    embed_s = time.perf_counter() - started
    made = build_ann(out, ann)
    return {
        "encoder": spec.model_dump(),
        "ann": ann.model_dump(),
        "dimension": dimension,
        "embeddings": EMBEDDINGS,
        "index_file": made.get("file"),
        "embed_s": round(embed_s, 3),
        "passages_per_s": round(count / embed_s, 1) if embed_s else None,
        "ann_build": made,
    }


def remake_ann(directory: Path, ann: AnnParams) -> dict[str, Any]:
    """Make another ANN index type from an index's embeddings (no re-embedding)."""
    meta = json.loads((directory / META).read_text())
    dense = meta.get("dense")
    if not dense or not dense.get("embeddings"):
        raise CorpusError(f"{directory} has no embeddings of its own (build it with --dense)")
    made = build_ann(directory, ann)
    dense.update(ann=ann.model_dump(), index_file=made.get("file"), ann_build=made)
    (directory / META).write_text(json.dumps(meta, indent=2))
    return meta


def import_faiss(
    corpus: Path,
    index_file: Path,
    spec: EncoderSpec,
    out: Path,
    bm25: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """An index around a Search-R1 corpus (JSON Lines, ``{id, contents}``) and its FAISS index
    file, both served from where they are, unchanged; queries are embedded by ``spec`` (it
    must be the encoder the FAISS index was built with). ``bm25`` also builds a BM25 index
    of the corpus (for BM25 and hybrid search)."""
    corpus, index_file = corpus.resolve(), index_file.resolve()
    out.mkdir(parents=True, exist_ok=True)
    count = scan_offsets(corpus, out)
    index = read_index(index_file)
    if index.ntotal != count:
        raise CorpusError(
            f"the FAISS index holds {index.ntotal} vectors but the corpus {count} passages: "
            "they are not of the same corpus"
        )
    store = PassageStore(out, corpus)
    try:
        spec = calibrate(spec, lambda: calibration_texts(store, count))
    finally:
        store.close()
    encoder = TextEncoder(spec)
    if encoder.dimension != index.d:
        raise CorpusError(
            f"{spec.model} makes {encoder.dimension}-d embeddings, the FAISS index holds "
            f"{index.d}-d vectors: give the encoder it was built with"
        )
    stat = corpus.stat()
    meta: dict[str, Any] = {
        "passages": count,
        "retrievers": ["dense"],
        "default_retriever": "dense",  # what Search-R1's server answers, even beside BM25
        "source": str(corpus),
        "corpus": {"path": str(corpus), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns},
        "dense": {
            "encoder": spec.model_dump(),
            "dimension": int(index.d),
            "embeddings": None,
            "index_file": str(index_file),
            "faiss_type": type(index).__name__,
        },
        "build_seconds": {},
    }
    if bm25:
        started = time.perf_counter()
        store = PassageStore(out, corpus)
        try:
            texts = (document(store.get(i)) for i in range(count))
            bar = tqdm(total=count, desc="indexing (bm25)", unit=" passages", disable=not progress)
            BM25Retriever.build(bar_iter(texts, bar), out)
            bar.close()
        finally:
            store.close()
        meta["retrievers"].insert(0, "bm25")
        meta["build_seconds"]["bm25_s"] = round(time.perf_counter() - started, 3)
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def calibration_texts(store: PassageStore, count: int) -> list[str]:
    """The passages an int8 encoder is calibrated on: the corpus's first ones (the build and
    a service that must quantize again take the same, so they make the same model)."""
    return [document(store.get(i)) for i in range(min(CALIBRATION_PASSAGES, count))]


def bar_iter(items: Iterator[Any], bar: tqdm) -> Iterator[Any]:
    for item in items:
        bar.update(1)
        yield item


class IndexError_(LookupError):
    """The index cannot answer (no such retriever)."""


def dense_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The index's dense entry (indexes built before FAISS: exact over dense.npy, MiniLM)."""
    if "dense" in meta:
        return meta["dense"]
    return {
        "encoder": EncoderSpec(model=PACKAGED).model_dump(),
        "embeddings": EMBEDDINGS,
        "index_file": None,
        "ann": AnnParams().model_dump(),
    }


class SearchIndex:
    """A served index: its passages and retrievers. ``encoders`` is shared between indexes
    (one encoder per spec); ``threads`` bounds the encoder's threads (0: every core)."""

    def __init__(
        self,
        name: str,
        directory: Path,
        encoders: dict[str, TextEncoder] | None = None,
        threads: int = 0,
        gpu: bool = False,
    ) -> None:
        self.name = name
        self.directory = directory
        self.meta = json.loads((directory / META).read_text())
        self.store = PassageStore(directory, self._corpus())
        self.retrievers: dict[str, Retriever] = {}
        bm25 = BM25Retriever(directory) if "bm25" in self.meta["retrievers"] else None
        if bm25 is not None:
            self.retrievers["bm25"] = bm25
        if "dense" in self.meta["retrievers"]:
            config = dense_config(self.meta)
            spec = EncoderSpec.model_validate(config["encoder"])
            if gpu:  # the same model, run by ONNX Runtime's CUDA provider
                spec = spec.model_copy(update={"runtime": "onnxruntime", "precision": "fp32"})
            encoders = {} if encoders is None else encoders
            key = spec.model_dump_json()
            if key not in encoders:
                count = int(self.meta["passages"])
                encoders[key] = TextEncoder(
                    spec,
                    threads=threads,
                    gpu=gpu,
                    calibration=lambda: calibration_texts(self.store, count),
                )
            dense = DenseRetriever(self._searcher(config, gpu), encoders[key])
            self.retrievers["dense"] = dense
            if bm25 is not None:
                self.retrievers["hybrid"] = HybridRetriever(bm25, dense)

    def _corpus(self) -> Path | None:
        """The corpus file of an imported index, checked unchanged since the import."""
        corpus = self.meta.get("corpus")
        if corpus is None:
            return None
        path = Path(corpus["path"])
        if not path.is_file():
            raise CorpusError(f"index {self.name!r}: its corpus {path} is gone")
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != (corpus["bytes"], corpus["mtime_ns"]):
            raise CorpusError(
                f"index {self.name!r}: its corpus {path} changed since it was imported "
                "(import it again: passages are found by their byte offsets)"
            )
        return path

    def _searcher(self, config: dict[str, Any], gpu: bool) -> DenseSearcher:
        embeddings = config.get("embeddings")
        index_file = config.get("index_file")
        ann = AnnParams.model_validate(config.get("ann") or {})
        # an index built here is searched with its meta.json's parameters (edit them there);
        # an imported one with those stored in its FAISS file, as Search-R1 searches it
        tuning = {"hnsw": {"efSearch": ann.ef_search}, "ivf-pq": {"nprobe": ann.nprobe}}
        searcher = DenseSearcher(
            self.directory / embeddings if embeddings else None,
            self.directory / index_file if index_file else None,  # absolute paths stay so
            rerank=ann.rerank if ann.index_type == "ivf-pq" else 0,
            tuning=tuning.get(ann.index_type) if "ann" in config else None,
        )
        if gpu:
            searcher.to_gpu()
        return searcher

    def __len__(self) -> int:
        return len(self.store)

    @property
    def default_retriever(self) -> str:
        if self.meta.get("default_retriever") in self.retrievers:
            return self.meta["default_retriever"]
        if "hybrid" in self.retrievers:
            return "hybrid"
        return "bm25" if "bm25" in self.retrievers else "dense"

    def check(self, retriever: str | None) -> Retriever:
        """The retriever of that name (default: the index's); raises :class:`IndexError_`."""
        name = retriever or self.default_retriever
        found = self.retrievers.get(name)
        if found is None:
            raise IndexError_(
                f"index {self.name!r} has no {name} retriever (it has: "
                f"{', '.join(sorted(self.retrievers))})"
            )
        return found

    def search(self, queries: list[str], k: int, retriever: str | None = None) -> list[Hits]:
        """Per query, the ``k`` best ``(row, score)``."""
        return self.check(retriever).search(queries, k)

    def passage(self, row: int) -> Passage:
        return self.store.get(row)

    def close(self) -> None:
        self.store.close()
