"""Batches of queries split over worker processes, so a batch uses every core.

The compiled BM25 scorer releases the GIL, but reading and shaping the passages found, the
top-k selection and the dense encoder's smaller numpy steps hold it, so threads overlap
badly; processes share nothing. Each process is spawned fresh (nothing of the service is
inherited) and opens the same indexes memory-mapped, so their pages are shared through the
page cache. Single queries stay in the serving process (no hop).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import faiss
from threadpoolctl import threadpool_limits
from toolfleet.search.encoders import TextEncoder
from toolfleet.search.index import SearchIndex

_CHILD: dict[str, SearchIndex] = {}  # the indexes of a worker process


def _open(paths: dict[str, str], opened: Barrier) -> None:
    # one thread each (BLAS, FAISS's OpenMP, the encoder): the processes already fill the
    # cores, and each library would otherwise start a thread per core in each (a dense batch
    # of 64 took 3x as long)
    threadpool_limits(limits=1)
    faiss.omp_set_num_threads(1)
    encoders: dict[str, TextEncoder] = {}
    for name, path in paths.items():
        _CHILD[name] = SearchIndex(name, Path(path), encoders, threads=1)
    opened.wait(timeout=600)  # no process takes a call before every one is ready


def _search(
    name: str, queries: list[str], k: int, retriever: str | None
) -> list[list[dict[str, Any]]]:
    """The passages found, read here too (that work is split over the processes as well)."""
    index = _CHILD[name]
    found = []
    for hits in index.search(queries, k, retriever):
        rows = []
        for row, score in hits:
            passage = index.passage(row)
            hit = {
                "id": passage.id,
                "title": passage.title,
                "text": passage.text,
                "score": round(score, 6),
            }
            rows.append(hit)
        found.append(rows)
    return found


class SearchPool:
    """``processes`` worker processes holding the indexes; batches of at least
    ``min_batch`` queries are split evenly over them."""

    def __init__(self, paths: dict[str, Path], processes: int, min_batch: int = 8) -> None:
        self.paths = {name: str(path) for name, path in paths.items()}
        self.processes = processes
        self.min_batch = min_batch
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self.processes > 0 and self.paths:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=context,
                initializer=_open,
                initargs=(self.paths, context.Barrier(self.processes)),
            )
            # Start every process now (each opens the indexes and compiles the scorer, a
            # second or more), so that the first batch does not wait for it: the pool spawns
            # a process per call while none is idle, and the barrier holds every answer until
            # all of them are ready.
            calls = [self._pool.submit(os.getpid) for _ in range(self.processes)]
            for call in calls:
                call.result()

    def takes(self, queries: list[str]) -> bool:
        """True when this batch is split over the processes."""
        return self._pool is not None and len(queries) >= self.min_batch

    async def search(
        self, name: str, queries: list[str], k: int, retriever: str | None
    ) -> list[list[dict[str, Any]]]:
        assert self._pool is not None
        size = -(-len(queries) // self.processes)
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool, _search, name, queries[i : i + size], k, retriever)
                for i in range(0, len(queries), size)
            )
        )
        return [hits for part in parts for hits in part]

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
