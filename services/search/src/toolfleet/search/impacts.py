"""Exact BM25 top-k over bm25s's precomputed impacts, scored by a compiled loop.

bm25s stores, per token, the BM25 impact of every passage holding it (a CSC matrix: a
token's column lists its passages in ascending order). Scoring a query adds its tokens'
columns into one float32 score per passage: one random read-modify-write per posting, and
a question's words hold hundreds of thousands of postings in a million passages. The numba
loop below does that faster than numpy's ``add.at``, which bm25s uses (``bench/search.py``
prints both per query), and releases the GIL. The top k are then found from block maxima
(:mod:`toolfleet.search.topk`) rather than by bm25s's selection, which scans every passage.

Rows and scores equal bm25s's ``get_scores`` followed by a top-k, up to float rounding (the
same float32 impacts, summed in another order).
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numba
import numpy as np
from toolfleet.search.topk import Hits, top_k


@numba.njit(nogil=True)
def _accumulate(
    indices: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Add each column (``weights`` times) into ``scores``."""
    for c in range(starts.shape[0]):
        weight = weights[c]
        for j in range(starts[c], ends[c]):
            scores[indices[j]] += data[j] * weight


@dataclass
class ImpactScorer:
    """Top-k passages of a token-id query over one bm25s index's impacts. Thread-safe, and
    releases the GIL while scoring: each call takes a score buffer from a pool, zero between
    calls (allocating one per query would cost as much as the scoring)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    num_docs: int
    _free: queue.SimpleQueue[np.ndarray] = field(default_factory=queue.SimpleQueue)

    def __post_init__(self) -> None:
        # plain views of the memory maps (numba takes ndarrays; slicing a np.memmap also
        # goes through Python code)
        self.data, self.indices = np.asarray(self.data), np.asarray(self.indices)
        self.indptr = np.asarray(self.indptr)
        self.top([], 1)  # compiles the loop now (about a second), not at the first query

    def top(self, token_ids: list[int], k: int) -> Hits:
        """The ``k`` best passages (row, score) holding any of the tokens, best first; a
        token repeated in the query counts as often as it appears."""
        terms, repeats = np.unique(np.asarray(token_ids, dtype=np.int64), return_counts=True)
        try:
            scores = self._free.get_nowait()
        except queue.Empty:
            scores = np.zeros(self.num_docs, np.float32)
        try:
            _accumulate(
                self.indices,
                self.data,
                self.indptr[terms],
                self.indptr[terms + 1],
                repeats.astype(np.float32),
                scores,
            )
            return [hit for hit in top_k(scores, k) if hit[1] > 0]
        finally:
            if len(terms):
                scores.fill(0)
            self._free.put(scores)
