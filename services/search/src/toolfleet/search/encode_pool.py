"""Embedding a corpus over every core: chunks of passages go to worker processes, each running
the encoder on one thread (the runtimes' own thread pools scale worse on small models than
processes that share nothing), and come back in order."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Literal

import numpy as np
from toolfleet.search.encoders import EncoderSpec, TextEncoder, onnx_path

_WORKER: dict[str, TextEncoder] = {}  # the encoder of a worker process


def _start(spec_json: str) -> None:
    _WORKER["encoder"] = TextEncoder(EncoderSpec.model_validate_json(spec_json), threads=1)


def _encode(texts: list[str], kind: Literal["query", "passage"]) -> np.ndarray:
    return _WORKER["encoder"].encode(texts, kind=kind)


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class EncoderPool:
    """Embeds streams of texts with ``processes`` worker processes (0 or 1: in this process,
    on every core). Use as a context manager."""

    def __init__(self, spec: EncoderSpec, processes: int) -> None:
        self.spec = spec
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._local: TextEncoder | None = None

    def __enter__(self) -> EncoderPool:
        onnx_path(self.spec)  # a bad spec fails here, and the graph is exported once
        if self.processes > 1:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(self.spec.model_dump_json(),),
            )
        else:
            self._local = TextEncoder(self.spec)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def dimension(self) -> int:
        """Floats per embedding (asks a worker when the encoder runs in processes)."""
        if self._local is not None:
            return self._local.dimension
        return int(self.encode(["dimension"], "query").shape[1])

    def encode(self, texts: list[str], kind: Literal["query", "passage"]) -> np.ndarray:
        """Embeddings of a list of texts."""
        return np.concatenate(list(self.stream(texts, kind))) if texts else np.zeros((0, 0))

    def stream(
        self, texts: Iterable[str], kind: Literal["query", "passage"], chunk: int = 256
    ) -> Iterator[np.ndarray]:
        """Embeddings of ``texts`` in order, ``chunk`` rows at a time (at most two chunks per
        process in flight, so a corpus of any size streams through bounded memory)."""
        if self._local is not None:
            for part in _chunks(texts, chunk):
                yield self._local.encode(part, kind=kind)
            return
        assert self._pool is not None, "use EncoderPool as a context manager"
        pending: deque[Future[np.ndarray]] = deque()
        for part in _chunks(texts, chunk):
            pending.append(self._pool.submit(_encode, part, kind))
            if len(pending) >= 2 * self.processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
