"""A search index: a directory holding a corpus's passages and its retrievers' data.

``build_index`` makes one from a JSON Lines corpus in one streaming pass (plus a second,
sequential one over the stored passages for dense embeddings); ``SearchIndex`` serves it,
memory-mapped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolfleet.search.corpus import Passage, PassageStore, PassageWriter, read_corpus
from toolfleet.search.encoder import MODEL_NAME, Encoder
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
    """The text a passage is indexed by: its title and its text."""
    return f"{passage.title}\n{passage.text}" if passage.title else passage.text


def build_index(
    corpus: Path,
    out: Path,
    dense: bool = False,
    progress: bool = False,
    limit: int | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Index the corpus into ``out`` (BM25, and dense embeddings when ``dense``); the index's
    description (also written to ``meta.json``)."""
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
    retrievers = ["bm25"]
    timings = {"bm25_s": round(time.perf_counter() - started, 3)}
    if dense:
        t0 = time.perf_counter()
        store = PassageStore(out)
        try:
            texts = (document(store.get(i)) for i in range(count))
            bar = tqdm(
                total=count, desc="embedding (dense)", unit=" passages", disable=not progress
            )
            DenseRetriever.build(bar_iter(texts, bar), count, out, encoder or Encoder())
            bar.close()
        finally:
            store.close()
        retrievers.append("dense")
        timings["dense_s"] = round(time.perf_counter() - t0, 3)
    meta = {
        "passages": count,
        "retrievers": retrievers,
        "dense_model": MODEL_NAME if dense else None,
        "source": str(corpus),
        "build_seconds": timings,
    }
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def bar_iter(items: Iterator[Any], bar: tqdm) -> Iterator[Any]:
    for item in items:
        bar.update(1)
        yield item


class IndexError_(LookupError):
    """The index cannot answer (no such retriever)."""


class SearchIndex:
    """A served index: its passages and retrievers."""

    def __init__(self, name: str, directory: Path, encoder: Encoder | None = None) -> None:
        self.name = name
        self.directory = directory
        self.meta = json.loads((directory / META).read_text())
        self.store = PassageStore(directory)
        self.retrievers: dict[str, Retriever] = {}
        bm25 = BM25Retriever(directory)
        self.retrievers["bm25"] = bm25
        if "dense" in self.meta.get("retrievers", []):
            dense = DenseRetriever(directory, encoder or Encoder())
            self.retrievers["dense"] = dense
            self.retrievers["hybrid"] = HybridRetriever(bm25, dense)

    def __len__(self) -> int:
        return len(self.store)

    @property
    def default_retriever(self) -> str:
        return "hybrid" if "hybrid" in self.retrievers else "bm25"

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
