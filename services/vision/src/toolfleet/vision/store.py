"""Content-addressed media of one process, shared by its sessions.

A file is kept once however many sessions (or forks) hold it; each holder counts as one
reference, and the bytes go when the last reference does. Only the event loop's thread
changes the store, so it needs no lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.vision.records import MediaInfo


@dataclass(frozen=True)
class VideoIndex:
    """Where a video's frames are: read once at upload (by demuxing, not decoding)."""

    container: str  # the demuxer that opened it (mov, matroska, avi)
    stream: int  # index of the video stream in the container
    time_base: float  # seconds per pts unit
    pts: tuple[int, ...]  # every frame's pts, in display order
    keyframes: tuple[int, ...]  # pts of the keyframes, ascending
    first_pts: int  # pts of the first frame (time 0 of the video)


@dataclass
class Blob:
    """One stored file."""

    id: str
    data: bytes
    info: MediaInfo
    video: VideoIndex | None = None
    refs: int = field(default=0, compare=False)

    @property
    def size(self) -> int:
        """Bytes held."""
        return len(self.data)


ID_PREFIX = {"image": "img-", "video": "vid-"}


def content_id(kind: str, data: bytes) -> str:
    """The id of ``data``: its kind and the first 96 bits of its SHA-256."""
    return ID_PREFIX[kind] + hashlib.sha256(data).hexdigest()[:24]


class MediaStore:
    """Blobs by id, with reference counts and a byte budget."""

    def __init__(self, max_bytes: int, on_drop: Callable[[str], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._blobs: dict[str, Blob] = {}
        self._on_drop = on_drop

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, blob_id: str) -> Blob | None:
        """The blob, or None."""
        return self._blobs.get(blob_id)

    def put(self, blob: Blob) -> Blob:
        """Keep ``blob`` (or return the stored one with the same id), unreferenced until
        :meth:`retain`. Raises a retryable ``unavailable`` ToolError when the store is full."""
        stored = self._blobs.get(blob.id)
        if stored is not None:
            return stored
        if self.bytes + blob.size > self.max_bytes:
            raise ToolError(
                ErrorKind.unavailable,
                f"the vision service holds {self.bytes} bytes of media, and {blob.size} more "
                f"would pass its limit of {self.max_bytes}",
                hint="End sessions you no longer need, then try again.",
                retryable=True,
            )
        self._blobs[blob.id] = blob
        self.bytes += blob.size
        return blob

    def retain(self, blob_id: str) -> None:
        """Count one more holder of the blob."""
        self._blobs[blob_id].refs += 1

    def release(self, blob_id: str) -> None:
        """Count one holder less; the blob goes with its last holder."""
        blob = self._blobs.get(blob_id)
        if blob is None:
            return
        blob.refs -= 1
        if blob.refs <= 0:
            self.drop_if_unused(blob_id)

    def drop_if_unused(self, blob_id: str) -> None:
        """Forget a blob no session holds (e.g. one whose upload was refused)."""
        blob = self._blobs.get(blob_id)
        if blob is None or blob.refs > 0:
            return
        del self._blobs[blob_id]
        self.bytes -= blob.size
        if self._on_drop is not None:
            self._on_drop(blob_id)
