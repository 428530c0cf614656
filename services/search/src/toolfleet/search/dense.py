"""Dense vector search with FAISS: exact (flat) or approximate (HNSW, IVF-PQ).

An index directory keeps its passages' embeddings in ``dense.npy`` (float32, one row per
passage, memory-mapped), from which every index type is made:

- ``flat``: exact inner product over ``dense.npy`` itself, a block of rows at a time (no
  score matrix of the whole corpus per batch), memory-mapped, nothing else on disk;
- ``hnsw``: a FAISS ``IndexHNSWFlat`` (``M`` links per vector; ``efSearch`` candidates per
  query), in ``dense.hnsw.faiss``, its vectors memory-mapped (``IO_FLAG_MMAP_IFC``);
- ``ivf-pq``: a FAISS ``IndexIVFPQ`` (``nlist`` k-means cells, ``nprobe`` visited per query,
  vectors compressed to ``pq_m`` bytes), in ``dense.ivfpq.faiss``, held in memory (a few
  percent of the vectors' size); its ``rerank`` x k best candidates are then scored exactly
  from ``dense.npy`` (memory-mapped: a few rows read per query), which brings recall back.

A Search-R1 index file (any FAISS index type) is served as it is, read memory-mapped where
FAISS allows, with the parameters stored in it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
from pydantic import BaseModel, Field

EMBEDDINGS = "dense.npy"
FLAT_BLOCK = 131_072  # rows per matrix product of exact search (64 queries: 32 MiB of scores)
FILES = {"hnsw": "dense.hnsw.faiss", "ivf-pq": "dense.ivfpq.faiss"}
IndexType = Literal["flat", "hnsw", "ivf-pq"]


class AnnParams(BaseModel):
    """How a dense index is built and searched (recorded in the index's meta.json)."""

    index_type: IndexType = Field(default="flat", description="flat (exact), hnsw or ivf-pq.")
    hnsw_m: int = Field(default=32, ge=4, le=256, description="HNSW links per vector.")
    ef_construction: int = Field(default=80, ge=8, description="HNSW build breadth.")
    ef_search: int = Field(default=128, ge=1, description="HNSW candidates per query.")
    nlist: int | None = Field(
        default=None, ge=1, description="IVF cells (default 4*sqrt(passages), at most 65536)."
    )
    pq_m: int | None = Field(
        default=None, ge=1, description="PQ bytes per vector (default dimension / 8)."
    )
    nprobe: int = Field(default=32, ge=1, description="IVF cells visited per query.")
    rerank: int = Field(
        default=4, ge=0, description="ivf-pq: rescore rerank*k candidates exactly (0: off)."
    )


def default_nlist(count: int) -> int:
    return max(1, min(65536, int(4 * math.sqrt(count))))


def default_pq_m(dimension: int) -> int:
    """dimension / 8 sub-quantisers (96 for 768-d, 48 for 384-d), or the largest divisor of
    the dimension below that (FAISS needs one)."""
    m = max(1, dimension // 8)
    while dimension % m:
        m -= 1
    return m


def build_ann(directory: Path, params: AnnParams, chunk: int = 65536) -> dict[str, object]:
    """Make the ``params.index_type`` index of ``directory/dense.npy``; what it made (file,
    parameters, seconds)."""
    vectors = np.load(directory / EMBEDDINGS, mmap_mode="r")
    count, dimension = vectors.shape
    started = time.perf_counter()
    made: dict[str, object] = {"index_type": params.index_type}
    if params.index_type == "flat":
        made["seconds"] = 0.0
        return made
    if params.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    else:
        nlist = params.nlist or default_nlist(count)
        pq_m = params.pq_m or default_pq_m(dimension)
        if dimension % pq_m:
            raise ValueError(f"pq_m {pq_m} does not divide the dimension {dimension}")
        if count < nlist:
            raise ValueError(f"ivf-pq needs at least nlist ({nlist}) passages; there are {count}")
        index = faiss.index_factory(dimension, f"IVF{nlist},PQ{pq_m}np", faiss.METRIC_INNER_PRODUCT)
        # FAISS wants 39+ training points per cell; 40 per cell (at most 256k) is plenty
        sample = np.linspace(0, count - 1, min(count, max(40 * nlist, 10_000), 262_144))
        index.train(np.ascontiguousarray(vectors[sample.astype(np.int64)]))
        faiss.extract_index_ivf(index).nprobe = params.nprobe
        made.update(nlist=nlist, pq_m=pq_m, train_s=round(time.perf_counter() - started, 3))
    for start in range(0, count, chunk):
        index.add(np.ascontiguousarray(vectors[start : start + chunk]))
    faiss.write_index(index, str(directory / FILES[params.index_type]))
    made["file"] = FILES[params.index_type]
    made["seconds"] = round(time.perf_counter() - started, 3)
    return made


def read_index(path: Path) -> faiss.Index:
    """A FAISS index file, its vectors memory-mapped where FAISS can (flat storage: Flat,
    HNSW-Flat), else read into memory."""
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(str(path))


class DenseSearcher:
    """Top-k rows by inner product for query embeddings, over one index."""

    def __init__(
        self,
        embeddings: Path | None,
        index_file: Path | None,
        rerank: int = 0,
        tuning: dict[str, int] | None = None,
    ) -> None:
        """``tuning``: FAISS search parameters set on the index (``efSearch``, ``nprobe``);
        none: the values stored in the file."""
        self.vectors = np.load(embeddings, mmap_mode="r") if embeddings is not None else None
        self.index = read_index(index_file) if index_file is not None else None
        if self.index is not None and tuning:
            space = faiss.ParameterSpace()
            for name, value in tuning.items():
                space.set_index_parameter(self.index, name, value)
        if self.index is None and self.vectors is None:
            raise ValueError("a dense searcher needs embeddings or an index file")
        self.rerank = rerank if self.vectors is not None else 0
        self.dimension = int(self.index.d if self.index is not None else self.vectors.shape[1])
        self.size = int(self.index.ntotal if self.index is not None else len(self.vectors))

    def to_gpu(self) -> None:
        """Search on every GPU (faiss-gpu: the index sharded over them, float16 vectors, as
        Search-R1's ``--faiss_gpu`` does); a flat index's vectors are copied there."""
        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
            raise ValueError("gpu asked for, but this faiss has no GPU (install faiss-gpu)")
        index = self.index
        if index is None:
            assert self.vectors is not None
            index = faiss.IndexFlatIP(self.dimension)
            for start in range(0, self.size, 65536):
                index.add(np.ascontiguousarray(self.vectors[start : start + 65536]))
        options = faiss.GpuMultipleClonerOptions()
        options.useFloat16 = True
        options.shard = True
        self.index = faiss.index_cpu_to_all_gpus(index, co=options)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows, (queries x k) each, best first; rows of -1 where fewer than k."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.size)
        if self.index is None:
            return self._flat(queries, k)
        if not self.rerank:
            return self.index.search(queries, k)
        _, candidates = self.index.search(queries, min(self.size, self.rerank * k))
        return self._exact(queries, candidates, k)

    def _flat(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over ``dense.npy``, a block of rows at a time: one matrix product per
        block (numpy's BLAS), its k best per query merged into the running k best.
        ``faiss.knn`` does the same but took 16 s for 64 queries over 1M x 768 here, against
        2 s this way (its bundled BLAS; bench/search_ann.py)."""
        assert self.vectors is not None
        best_scores = np.full((len(queries), k), -np.inf, np.float32)
        best_rows = np.full((len(queries), k), -1, np.int64)
        for start in range(0, self.size, FLAT_BLOCK):
            block = np.asarray(self.vectors[start : start + FLAT_BLOCK])  # a view, no copy
            scores = queries @ block.T
            take = min(k, scores.shape[1])
            part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            merged_scores = np.concatenate(
                [best_scores, np.take_along_axis(scores, part, axis=1)], axis=1
            )
            merged_rows = np.concatenate([best_rows, part + start], axis=1)
            order = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            best_scores = np.take_along_axis(merged_scores, order, axis=1)
            best_rows = np.take_along_axis(merged_rows, order, axis=1)
        return best_scores, best_rows

    def _exact(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best of each query's candidates by exact inner product."""
        assert self.vectors is not None
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), -1, np.int64)
        for i, found in enumerate(candidates):
            found = np.unique(found[found >= 0])  # sorted: reads the memory map in order
            exact = self.vectors[found] @ queries[i]
            best = np.argsort(-exact, kind="stable")[:k]
            scores[i, : len(best)], rows[i, : len(best)] = exact[best], found[best]
        return scores, rows
