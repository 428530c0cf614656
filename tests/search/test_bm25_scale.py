"""BM25 at wiki-18's scale: the scorer whose per-query cost follows the query's postings
(block maxima kept while adding, buffers cleared by replaying the postings) ranks exactly as
bm25s's exhaustive scoring, over 21 million rows.

The impacts are those of a real bm25s index of the whole SQuAD corpus (20,963 passages);
each passage's row is spread out to ``row * 1000 + 7``, so the scorer works over a 21M-row
score buffer (20,508 blocks) with real postings, and bm25s's scores, mapped the same way,
are the reference. Building a real 21M-passage index takes about an hour here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toolfleet.search.cli import main as search_cli
from toolfleet.search.impacts import ImpactScorer
from toolfleet.search.retrievers import BM25Retriever

from tests.helpers import SHARED_DATA

DATA = SHARED_DATA / "search"
SPREAD, OFFSET = 1000, 7


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory) -> BM25Retriever:
    out = tmp_path_factory.mktemp("bm25-full")
    assert (
        search_cli(["build", str(DATA / "squad_v1.1_corpus.jsonl"), "--out", str(out), "--quiet"])
        == 0
    )
    return BM25Retriever(out)


@pytest.fixture(scope="module")
def spread(retriever: BM25Retriever) -> ImpactScorer:
    impacts = retriever.model.scores
    return ImpactScorer(
        np.asarray(impacts["data"]),
        np.asarray(impacts["indices"]).astype(np.int64) * SPREAD + OFFSET,
        np.asarray(impacts["indptr"]),
        retriever.size * SPREAD,
    )


@pytest.fixture(scope="module")
def queries(retriever: BM25Retriever) -> list[list[int]]:
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        texts = [json.loads(line)["question"] for line in f][::40]
    texts += ["the of and in", "embargo embargo", "Super Bowl 50 Denver Broncos"]
    return [ids for ids in retriever.token_ids(texts) if ids]


def test_spread_index_is_at_wiki_scale(spread: ImpactScorer) -> None:
    assert spread.num_docs > 20_000_000 and spread.blocks > 20_000


@pytest.mark.parametrize("k", [1, 10, 50])
def test_scorer_ranks_exactly_as_bm25s_over_21m_rows(
    retriever: BM25Retriever, spread: ImpactScorer, queries: list[list[int]], k: int
) -> None:
    for ids in queries:
        full = retriever.model.get_scores_from_ids(ids)
        positive = np.flatnonzero(full > 0)
        want = positive[np.lexsort((positive, -full[positive]))][:k]
        found = spread.top(ids, k)
        assert len(found) == len(want)
        # the same scores in the same order; rows equal except among float-rounding ties
        assert [s for _, s in found] == pytest.approx(full[want].tolist(), rel=1e-5)
        for row, score in found:
            assert (row - OFFSET) % SPREAD == 0
            assert full[(row - OFFSET) // SPREAD] == pytest.approx(score, rel=1e-5)


def test_buffers_are_clean_after_every_query(
    spread: ImpactScorer, queries: list[list[int]]
) -> None:
    """Each query leaves its score buffer and block maxima zero (cleared by replaying its
    postings), so answers do not depend on what was asked before."""
    first = [spread.top(ids, 10) for ids in queries]
    again = [spread.top(ids, 10) for ids in reversed(queries)][::-1]
    assert first == again
    scores, maxima = spread._free.get_nowait()
    try:
        assert not scores.any() and not maxima.any()
    finally:
        spread._free.put((scores, maxima))


def test_unknown_and_empty_queries(retriever: BM25Retriever, spread: ImpactScorer) -> None:
    assert spread.top([], 10) == []
    assert retriever.search(["qqqzzzxxy"], 5) == [[]]
