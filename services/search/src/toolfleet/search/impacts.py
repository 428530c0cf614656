"""Exact BM25 top-k over bm25s's precomputed impacts, at a cost set by the query's postings.

bm25s stores, per token, the BM25 impact of every passage holding it (a CSC matrix: a
token's column lists its passages in ascending order). Scoring a query adds its tokens'
columns into one float32 score per passage (a compiled numba loop, faster than the numpy
``add.at`` bm25s uses, releasing the GIL). Nothing else touches the whole score buffer,
whose size is the corpus's (84 MB at wiki-18's 21M passages):

- while adding, the loop keeps each block of 1,024 passages' largest score (impacts are
  positive, so a passage's running sum only grows and the running maximum of its block is
  the block's final maximum). The top k are then in the k blocks with the largest maxima
  (:mod:`toolfleet.search.topk`): a selection over the block maxima (20k floats at 21M)
  and a scan of k blocks, never a pass over every passage;
- after the query, the same postings are replayed to zero the scores and maxima they
  touched, unless they number over a quarter of the passages: then filling the buffer
  with zeros (sequential) is the cheaper of the two.

So a query costs its postings (at most twice) plus a fixed ~0.2 ms at 21M passages, where
clearing and scanning the buffer cost ~9 ms. Rows and scores equal bm25s's ``get_scores`` followed
by a top-k, up to float rounding (the same float32 impacts, summed in another order).
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

import numba
import numpy as np
from toolfleet.search.topk import BLOCK, Hits, top_k

SHIFT = BLOCK.bit_length() - 1  # row >> SHIFT is the row's block
REPLAY_RATIO = 4  # postings x this below the passage count: clear by replaying them
assert 1 << SHIFT == BLOCK


@numba.njit(nogil=True)
def _accumulate(
    indices: np.ndarray,
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    weights: np.ndarray,
    scores: np.ndarray,
    maxima: np.ndarray,
) -> None:
    """Add each column (``weights`` times) into ``scores``, keeping each block's maximum."""
    for c in range(starts.shape[0]):
        weight = weights[c]
        for j in range(starts[c], ends[c]):
            row = indices[j]
            total = scores[row] + data[j] * weight
            scores[row] = total
            block = row >> SHIFT
            if total > maxima[block]:
                maxima[block] = total


@numba.njit(nogil=True)
def _clear(
    indices: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    scores: np.ndarray,
    maxima: np.ndarray,
) -> None:
    """Zero the scores and block maxima the columns touched."""
    for c in range(starts.shape[0]):
        for j in range(starts[c], ends[c]):
            row = indices[j]
            scores[row] = 0.0
            maxima[row >> SHIFT] = 0.0


@dataclass
class ImpactScorer:
    """Top-k passages of a token-id query over one bm25s index's impacts. Thread-safe, and
    releases the GIL while scoring: each call takes a score buffer (and its block maxima)
    from a pool, zero between calls (allocating one per query would cost as much as the
    scoring)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    num_docs: int
    _free: queue.SimpleQueue[tuple[np.ndarray, np.ndarray]] = field(
        default_factory=queue.SimpleQueue
    )

    def __post_init__(self) -> None:
        # plain views of the memory maps (numba takes ndarrays; slicing a np.memmap also
        # goes through Python code)
        self.data, self.indices = np.asarray(self.data), np.asarray(self.indices)
        self.indptr = np.asarray(self.indptr)
        self.blocks = -(-self.num_docs // BLOCK)
        self.top([], 1)  # compiles the loops now (about a second), not at the first query

    def top(self, token_ids: list[int], k: int) -> Hits:
        """The ``k`` best passages (row, score) holding any of the tokens, best first; a
        token repeated in the query counts as often as it appears."""
        terms, repeats = np.unique(np.asarray(token_ids, dtype=np.int64), return_counts=True)
        try:
            scores, maxima = self._free.get_nowait()
        except queue.Empty:
            scores = np.zeros(self.num_docs, np.float32)
            maxima = np.zeros(self.blocks, np.float32)
        starts, ends = self.indptr[terms], self.indptr[terms + 1]
        try:
            _accumulate(
                self.indices, self.data, starts, ends, repeats.astype(np.float32), scores, maxima
            )
            return [hit for hit in top_k(scores, k, maxima) if hit[1] > 0]
        finally:
            # replay the postings, or clear the whole buffer where that is cheaper (a
            # sequential fill of 4 bytes a passage vs a random write a posting)
            if int((ends - starts).sum()) * REPLAY_RATIO < self.num_docs:
                _clear(self.indices, starts, ends, scores, maxima)
            else:
                scores.fill(0)
                maxima.fill(0)
            self._free.put((scores, maxima))
