"""Compiled programs the supervisor keeps, so that a program compiled once is not sent again.

The service's compile cache (``toolfleet.sandbox.programs``) knows a compiled program by a
key (language, toolchain version, flags, source hash). A run of a cached program names its
files by key (``stored``); the supervisor writes them from here into the run's directory.
The service sends a program's bytes (``store``) only the first time it runs in this zygote,
or again when the supervisor answers ``artifact_missing`` (it dropped the program: the
oldest go first once the store passes its size). A static C++ binary is megabytes: sent
base64 with every run, it cost more than the run itself.

The store is the supervisor's memory, not a directory: no process of a family can read
another family's programs from it, and it goes with the zygote.
"""

from __future__ import annotations

import base64
import binascii
import collections

MAX_BYTES = 64 << 20


class Artifacts:
    """The compiled files this supervisor holds, by key, oldest used first out."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.held: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.size = 0

    def keep(self, new: dict[str, str]) -> dict[str, bytes]:
        """Hold the files of ``new`` (key -> base64), dropping the least recently used
        past the size; the files decoded. Raises ``ValueError`` for a content that is not
        base64."""
        decoded: dict[str, bytes] = {}
        for key, data in new.items():
            try:
                raw = decoded[key] = base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"artifact {key!r} is not base64: {exc}") from exc
            self._drop(key)
            if len(raw) > self.max_bytes:
                continue  # never held: every run of it sends it
            self.held[key] = raw
            self.size += len(raw)
        while self.size > self.max_bytes:
            self._drop(next(iter(self.held)))
        return decoded

    def take(
        self, stored: dict[str, str], given: dict[str, bytes] | None = None
    ) -> tuple[dict[str, bytes], list[str]]:
        """The files a run names (path -> key): those held or ``given`` with the run
        (path -> bytes), and the keys that are neither."""
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for path, key in stored.items():
            raw = self.held.get(key)
            if raw is not None:
                self.held.move_to_end(key)
            else:
                raw = (given or {}).get(key)
            if raw is None:
                missing.append(key)
            else:
                found[path] = raw
        return found, missing

    def _drop(self, key: str) -> None:
        raw = self.held.pop(key, None)
        if raw is not None:
            self.size -= len(raw)
