"""The served catalogue and its retrieval index (what ``find_tools`` searches).

The catalogue is every tool a model may be shown: the tools of this process's registry and,
in distributed mode, those every live worker lists in Redis (``worker-info`` keys). Each tool
is one document: its name split into words (``memory.create_entities`` → memory create
entities), its description, and its parameters' names and descriptions. The index is BM25
(bm25s, stemmed when PyStemmer is there) and, when the search service is installed, the
dense encoder it serves (all-MiniLM-L6-v2 through ONNX), the two rankings fused by
reciprocal rank (the encoder is loaded only for catalogues of ``dense_min_tools`` or more).
It is built at start and again whenever the catalogue changes (checked every
``catalogue_refresh_s``, and at once when this process's tools change: :meth:`Catalogue.changed`),
in a thread, the old index answering meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from toolfleet.core.protocol import ToolSpec

if TYPE_CHECKING:
    from toolfleet.mcp.service import McpService

log = logging.getLogger(__name__)

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def words_of_name(name: str) -> str:
    """A tool name as words: separators and camelCase split."""
    return " ".join(_CAMEL.sub(" ", part) for part in re.split(r"[._\-/:]+", name) if part)


def document(spec: ToolSpec) -> str:
    """The text a tool is found by."""
    lines = [words_of_name(spec.name), spec.description]
    for pname, prop in (spec.input_schema.get("properties") or {}).items():
        desc = prop.get("description", "") if isinstance(prop, dict) else ""
        lines.append(f"{words_of_name(pname)} {desc}".strip())
    return "\n".join(lines)


@dataclass
class Hit:
    """One tool found, with its fused score."""

    spec: ToolSpec
    score: float


class Index:
    """BM25 (and dense, when an encoder is given) over one snapshot of the catalogue."""

    def __init__(self, specs: list[ToolSpec], encoder: Any | None = None) -> None:
        import bm25s

        self.specs = specs
        self.docs = [document(s) for s in specs]
        self._stemmer = _stemmer()
        self._bm25 = bm25s.BM25()
        if specs:
            self._bm25.index(self._tokens(self.docs), show_progress=False)
        self.encoder = encoder
        self.vectors = (
            encoder.encode(self.docs, kind="passage") if encoder is not None and specs else None
        )

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(
            [words_of_name(t) for t in texts],
            stopwords="en",
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )

    @property
    def method(self) -> str:
        """``hybrid`` (BM25 + dense) or ``bm25``."""
        return "hybrid" if self.vectors is not None else "bm25"

    def search(self, query: str, top_k: int, keep: Any = None) -> list[Hit]:
        """The ``top_k`` best tools for ``query`` among those ``keep(spec)`` accepts."""
        n = len(self.specs)
        if n == 0:
            return []
        tokens = self._tokens([query])[0]
        bm25 = np.asarray(self._bm25.get_scores(tokens), dtype=np.float64) if tokens else None
        rankings = []
        if bm25 is not None and bm25.max() > 0:
            rankings.append(np.argsort(-bm25, kind="stable"))
        if self.vectors is not None:
            q = self.encoder.encode([query], kind="query")[0]
            rankings.append(np.argsort(-(self.vectors @ q), kind="stable"))
        if not rankings:
            return []
        fused = np.zeros(n)
        for ranking in rankings:
            fused[ranking] += 1.0 / (RRF_K + np.arange(1, n + 1))
        if bm25 is not None and self.vectors is None:
            fused = fused * (bm25 > 0)  # BM25 alone: a tool sharing no word is no match
        hits = []
        for i in np.argsort(-fused, kind="stable"):
            if fused[i] <= 0:
                break
            if keep is None or keep(self.specs[i]):
                hits.append(Hit(self.specs[i], float(fused[i])))
                if len(hits) >= top_k:
                    break
        return hits


def _stemmer() -> Any:
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:
        return None


def load_encoder() -> Any | None:
    """The search service's default dense encoder, when it is installed and loads."""
    try:
        from toolfleet.search.encoders import EncoderSpec, TextEncoder
    except ImportError:
        return None
    try:
        return TextEncoder(EncoderSpec(), threads=1)
    except Exception as exc:  # a missing model file, a runtime that fails: BM25 alone
        log.warning("find_tools: no dense encoder (%s); BM25 only", exc)
        return None


class Catalogue:
    """The catalogue's current index, rebuilt when what is served changes."""

    def __init__(self, service: McpService) -> None:
        self.service = service
        self.index = Index([])
        self.fingerprint = ""
        self.builds = 0
        self._encoder: Any | None = None
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._changed = asyncio.Event()
        self.ready = asyncio.Event()

    @property
    def size(self) -> int:
        return len(self.index.specs)

    async def start(self) -> None:
        """Index what is served now (BM25 at once; the dense part when its encoder has
        loaded), then keep watching."""
        if self.service.redis_url:
            from toolfleet.core import streams

            self._redis = streams.connect(self.service.redis_url)
        await self.refresh()
        self._task = asyncio.create_task(self._watch(), name="toolfleet-mcp-catalogue")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def _watch(self) -> None:
        settings = self.service.settings
        tried = False
        while True:
            if settings.dense and not tried and self.size >= settings.dense_min_tools:
                tried = True
                self._encoder = await asyncio.to_thread(load_encoder)
                if self._encoder is not None:
                    self.fingerprint = ""  # index again, with vectors
            try:
                await self.refresh()
            except Exception:
                log.exception("find_tools: indexing the catalogue failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.catalogue_refresh_s):
                    await self._changed.wait()
            self._changed.clear()

    def changed(self) -> None:
        """This process's tools changed: check the catalogue now, not at the next period."""
        self._changed.set()

    async def specs(self) -> list[ToolSpec]:
        """Every tool served (not hidden), by name."""
        found: dict[str, ToolSpec] = {}
        registry = self.service.registry
        if registry is not None:
            found.update((s.name, s) for s in registry.specs())
        if self._redis is not None:
            found.update((s.name, s) for s in await self._worker_specs())
        return [found[n] for n in sorted(found)]

    async def _worker_specs(self) -> list[ToolSpec]:
        import time

        from toolfleet.core.streams import Keys

        keys = Keys(self.service.redis_prefix)
        try:
            since = time.time() - 30
            ids = await self._redis.zrangebyscore(keys.workers, since, "+inf")
            infos = (
                await self._redis.mget([keys.worker_info(w.decode()) for w in ids]) if ids else []
            )
        except Exception as exc:
            log.warning("find_tools: cannot read the workers' tools from Redis: %s", exc)
            return []
        specs = []
        for raw in infos:
            for tool in json.loads(raw).get("tools", []) if raw else []:
                if not tool.get("hidden"):
                    specs.append(ToolSpec.model_validate(tool["spec"]))
        return specs

    async def refresh(self) -> bool:
        """Index again if the catalogue changed; True when it did."""
        specs = await self.specs()
        digest = hashlib.sha256(
            json.dumps([s.model_dump(mode="json") for s in specs], sort_keys=True).encode()
        ).hexdigest()
        if digest == self.fingerprint:
            return False
        self.index = await asyncio.to_thread(Index, specs, self._encoder)
        self.fingerprint = digest
        self.builds += 1
        self.ready.set()
        log.info("find_tools: indexed %d tools (%s)", len(specs), self.index.method)
        return True
