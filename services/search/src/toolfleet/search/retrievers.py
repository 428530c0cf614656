"""Retrievers over one index directory: BM25 (bm25s), dense (an encoder and FAISS),
and their hybrid (reciprocal rank fusion). Each returns, per query, ``(row, score)`` pairs
best first; rows index the index's :class:`~toolfleet.search.corpus.PassageStore`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from pathlib import Path

import bm25s
import Stemmer
from bm25s.tokenization import Tokenized, Tokenizer
from toolfleet.search.dense import DenseSearcher
from toolfleet.search.encoders import TextEncoder
from toolfleet.search.impacts import ImpactScorer
from toolfleet.search.topk import Hits

BM25_DIR = "bm25"
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009)


class Retriever(abc.ABC):
    """Finds the best rows of an index for queries."""

    name: str

    @abc.abstractmethod
    def search(self, queries: list[str], k: int) -> list[Hits]:
        """The ``k`` best rows (and scores) for each query, best first."""


def _tokenizer() -> Tokenizer:
    return Tokenizer(stopwords="en", stemmer=Stemmer.Stemmer("english").stemWord)


class BM25Retriever(Retriever):
    """Lucene-style BM25 over stemmed, stopword-free tokens, memory-mapped."""

    name = "bm25"

    def __init__(self, directory: Path) -> None:
        path = directory / BM25_DIR
        self.model = bm25s.BM25.load(str(path), mmap=True, load_corpus=False, show_progress=False)
        self.tokenizer = _tokenizer()
        self.tokenizer.load_vocab(str(path))
        self.tokenizer.load_stopwords(str(path))
        self.empty = self.tokenizer.get_vocab_dict().get("", -1)
        self.size = int(self.model.scores["num_docs"])
        impacts = self.model.scores
        self.scorer = ImpactScorer(
            impacts["data"], impacts["indices"], impacts["indptr"], self.size
        )

    @staticmethod
    def build(texts: Iterable[str], directory: Path) -> None:
        """Index texts (a stream: only their token ids are held, never the texts)."""
        tokenizer = _tokenizer()
        ids = [list(doc) for doc in tokenizer.streaming_tokenize(texts)]
        model = bm25s.BM25()
        model.index(Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
        path = directory / BM25_DIR
        model.save(str(path), show_progress=False)
        tokenizer.save_vocab(str(path))
        tokenizer.save_stopwords(str(path))

    def token_ids(self, queries: list[str]) -> list[list[int]]:
        """Each query's token ids known to the index (its columns: the index was built from
        this tokenizer's ids); empty for a query of unknown words only."""
        tokens = self.tokenizer.tokenize(
            queries, update_vocab=False, return_as="ids", show_progress=False
        )
        return [[i for i in ids if i != self.empty] for ids in tokens]

    def search(self, queries: list[str], k: int) -> list[Hits]:
        return [self.scorer.top(ids, k) if ids else [] for ids in self.token_ids(queries)]


class DenseRetriever(Retriever):
    """Inner product of query and passage embeddings (cosine for unit vectors), exact or
    approximate as the index's :class:`~toolfleet.search.dense.DenseSearcher` is."""

    name = "dense"

    def __init__(self, searcher: DenseSearcher, encoder: TextEncoder) -> None:
        if encoder.dimension != searcher.dimension:
            raise ValueError(
                f"the encoder makes {encoder.dimension}-d embeddings, the index holds "
                f"{searcher.dimension}-d vectors: it was built with another model"
            )
        self.searcher = searcher
        self.encoder = encoder

    def search(self, queries: list[str], k: int) -> list[Hits]:
        scores, rows = self.searcher.search(self.encoder.encode(queries, kind="query"), k)
        return [
            [(int(r), float(s)) for r, s in zip(found, best, strict=True) if r >= 0]
            for found, best in zip(rows, scores, strict=True)
        ]


class HybridRetriever(Retriever):
    """BM25 and dense results fused by reciprocal rank (each list's 3k best count)."""

    name = "hybrid"

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever) -> None:
        self.parts = (bm25, dense)

    def search(self, queries: list[str], k: int) -> list[Hits]:
        depth = max(3 * k, 30)
        fused: list[dict[int, float]] = [{} for _ in queries]
        for part in self.parts:
            for acc, hits in zip(fused, part.search(queries, depth), strict=True):
                for rank, (row, _) in enumerate(hits):
                    acc[row] = acc.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
        return [sorted(acc.items(), key=lambda rs: -rs[1])[:k] for acc in fused]
