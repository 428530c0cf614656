"""Passages: reading a corpus as a stream, and the on-disk store an index answers from.

A corpus is JSON Lines, one passage per line, in either of two shapes:
``{"id", "title", "text"}`` or Search-R1's ``{"id", "contents": "title\\ntext"}``.
The store keeps the passages in ``passages.jsonl`` with their byte offsets in
``offsets.npy`` (memory-mapped), so a served index holds no passage text in memory.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np
from pydantic import BaseModel, Field

PASSAGES = "passages.jsonl"
OFFSETS = "offsets.npy"


class Passage(BaseModel):
    """One retrievable passage."""

    id: str = Field(description="The passage's id in its corpus.")
    title: str = Field(default="", description="Title of the document it comes from.")
    text: str = Field(description="The passage's text.")

    @property
    def contents(self) -> str:
        """Search-R1's ``contents``: the title, a newline, the text (a corpus line's own
        ``contents``, byte for byte; one without a newline is all title)."""
        return contents(self.title, self.text)


def contents(title: str, text: str) -> str:
    """``title\ntext`` as Search-R1 stores it; a passage with a title and no text is its title
    alone (the split of a ``contents`` without a newline, given back as it was)."""
    return f"{title}\n{text}" if text or not title else title


class CorpusError(ValueError):
    """A corpus line that is not a passage."""


def parse_passage(line: str, number: int) -> Passage:
    """A passage from one corpus line (either shape)."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"line {number}: not JSON ({exc})") from exc
    if not isinstance(raw, dict) or "id" not in raw:
        raise CorpusError(f"line {number}: a passage needs an 'id'")
    if "text" in raw:
        return Passage(id=str(raw["id"]), title=str(raw.get("title") or ""), text=str(raw["text"]))
    if "contents" in raw:
        # verbatim: Search-R1's wiki-18 titles keep their quotes ("1973 oil crisis"), as its
        # retrieval server gives them and its prompt shows them (Doc 1(Title: "...") ...)
        title, _, text = str(raw["contents"]).partition("\n")
        return Passage(id=str(raw["id"]), title=title, text=text)
    raise CorpusError(f"line {number}: a passage needs 'text' (and 'title') or 'contents'")


def read_corpus(path: Path) -> Iterator[Passage]:
    """The passages of a JSON Lines corpus, one at a time (never the whole file)."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield parse_passage(line, number)


class PassageWriter:
    """Appends passages to a store, remembering each one's offset."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._file: IO[bytes] = (directory / PASSAGES).open("wb")
        self._offsets: list[int] = []

    def add(self, passage: Passage) -> None:
        self._offsets.append(self._file.tell())
        self._file.write(passage.model_dump_json().encode() + b"\n")

    def tee(self, passages: Iterable[Passage]) -> Iterator[Passage]:
        """Store each passage as it goes by."""
        for passage in passages:
            self.add(passage)
            yield passage

    def close(self) -> int:
        """Finish the store; the number of passages."""
        self._offsets.append(self._file.tell())  # where the last passage ends
        self._file.close()
        np.save(self.directory / OFFSETS, np.asarray(self._offsets, dtype=np.int64))
        return len(self._offsets) - 1


def scan_offsets(corpus: Path, directory: Path, check: int = 1000) -> int:
    """Write ``offsets.npy`` for a corpus kept where it is (one passage per non-blank line,
    in order, as Search-R1 numbers them); the first ``check`` passages are parsed, so a
    file that is not a corpus is refused now. The number of passages."""
    offsets = []
    with corpus.open("rb") as f:
        position = 0
        for number, line in enumerate(f, 1):
            if line.strip():
                if len(offsets) < check:
                    parse_passage(line.decode("utf-8"), number)
                offsets.append(position)
            position += len(line)
        offsets.append(position)
    # a blank line between passages is skipped: each passage ends where its line does
    ends = np.asarray(offsets, dtype=np.int64)
    np.save(directory / OFFSETS, ends)
    return len(ends) - 1


class PassageStore:
    """Random access to the passages of a store, by row number (memory-mapped; safe to read
    from several threads). ``corpus``: a JSON Lines corpus read in place (an imported
    index), instead of the store's own ``passages.jsonl``."""

    def __init__(self, directory: Path, corpus: Path | None = None) -> None:
        self.offsets = np.load(directory / OFFSETS, mmap_mode="r")
        self.foreign = corpus is not None
        with (corpus or directory / PASSAGES).open("rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if len(self) else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> Passage:
        """The passage stored at ``row``."""
        assert self._map is not None
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        if self.foreign:
            line = self._map[start:end].decode("utf-8")
            return parse_passage(line.strip() or "{}", row + 1)
        return Passage.model_validate_json(self._map[start:end])

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
