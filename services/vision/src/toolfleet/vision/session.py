"""A session's media: its image list and its video list, holding blobs of the store.

Calls name an image by its id or by its 1-based position in the session's image list (as
Pixel-Reasoner's ``target_image`` does; negative positions count from the end, -1 being the
newest). Uploads, crops, rotations and video frames are appended to the image list, so a
result can be cropped again. Forking a session copies its lists (not the bytes); ending it
releases them.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.vision.records import MediaInfo
from toolfleet.vision.store import ID_PREFIX, Blob, MediaStore

Kind = Literal["image", "video"]
Ref = int | str


class SessionMedia:
    """The images and videos of one session (a ``SessionState``: forked and closed with it)."""

    def __init__(self, store: MediaStore, max_items: int, max_bytes: int) -> None:
        self.store = store
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.images: list[str] = []
        self.videos: list[str] = []
        self.bytes = 0  # of the distinct blobs held
        self._held: Counter[str] = Counter()  # blob id -> times listed
        self._last: dict[str, int] = {}  # blob id -> its latest 1-based position
        self.closed = False

    def _list(self, kind: Kind) -> list[str]:
        return self.images if kind == "image" else self.videos

    def check_room(self, count: int = 1) -> None:
        """Raise ``output_limit`` unless ``count`` more items fit the session's lists."""
        held = len(self.images) + len(self.videos)
        if held + count > self.max_items:
            raise ToolError(
                ErrorKind.output_limit,
                f"the session holds {held} images and videos; {count} more would pass its "
                f"limit of {self.max_items}",
                hint="Work with the images you have (name them by number or id), or start a "
                "new session.",
            )

    def add(self, blob: Blob) -> MediaInfo:
        """Store ``blob`` (deduplicated) and append it to its list; its info with the index.
        Raises ``output_limit`` when the session is full."""
        kind = blob.info.kind
        self.check_room()
        new = blob.id not in self._held
        if new and self.bytes + blob.size > self.max_bytes:
            raise ToolError(
                ErrorKind.output_limit,
                f"the session's media would pass its limit of {self.max_bytes} bytes",
                hint="Start a new session for more media.",
            )
        stored = self.store.put(blob)
        self.store.retain(stored.id)
        self._held[stored.id] += 1
        self.bytes += stored.size if new else 0
        items = self._list(kind)
        items.append(stored.id)
        self._last[stored.id] = len(items)
        return stored.info.model_copy(update={"index": len(items)})

    def resolve(self, ref: Ref, kind: Kind) -> tuple[int, Blob]:
        """The 1-based position and the blob ``ref`` names (an index or an id)."""
        items = self._list(kind)
        position = _as_index(ref)
        if position is not None:
            count = len(items)
            if count == 0:
                raise ToolError(
                    ErrorKind.not_found,
                    f"the session holds no {kind}s",
                    hint=f"A {kind} must be uploaded into the session first.",
                )
            if position == 0 or position > count or position < -count:
                raise ToolError(
                    ErrorKind.not_found,
                    f"there is no {kind} {position}: the session holds {count} {kind}"
                    f"{'s' if count != 1 else ''}, numbered 1 to {count}",
                    hint=f"Name a {kind} by its number (1 to {count}, -1 for the newest) or "
                    "by the id an earlier result gave.",
                )
            index = position if position > 0 else count + 1 + position
            blob_id = items[index - 1]
        else:
            blob_id = str(ref).strip()
            if blob_id not in self._last or not blob_id.startswith(ID_PREFIX[kind]):
                raise ToolError(
                    ErrorKind.not_found,
                    f"the session has no {kind} with id {blob_id!r}",
                    hint=f"Name a {kind} by its number (1 to {len(items)}) or by an id an "
                    "earlier result gave.",
                )
            index = self._last[blob_id]
        blob = self.store.get(blob_id)
        if blob is None:  # cannot happen while the session holds it
            raise ToolError(ErrorKind.internal, f"the {kind} {blob_id} is gone", retryable=True)
        return index, blob

    def describe(self) -> dict[str, list[MediaInfo]]:
        """Every image and video with its index."""
        found: dict[str, list[MediaInfo]] = {"images": [], "videos": []}
        for kind, items in (("images", self.images), ("videos", self.videos)):
            for i, blob_id in enumerate(items, start=1):
                blob = self.store.get(blob_id)
                if blob is not None:
                    found[kind].append(blob.info.model_copy(update={"index": i}))
        return found

    async def fork(self) -> SessionMedia:
        """A copy holding the same blobs."""
        copy = SessionMedia(self.store, self.max_items, self.max_bytes)
        copy.images = list(self.images)
        copy.videos = list(self.videos)
        copy.bytes = self.bytes
        copy._held = Counter(self._held)
        copy._last = dict(self._last)
        for blob_id in copy.images + copy.videos:
            self.store.retain(blob_id)
        return copy

    async def close(self) -> None:
        """Release every blob (once)."""
        if self.closed:
            return
        self.closed = True
        for blob_id in self.images + self.videos:
            self.store.release(blob_id)
        self.images, self.videos = [], []
        self.bytes = 0
        self._held.clear()
        self._last.clear()


def _as_index(ref: Ref) -> int | None:
    """``ref`` as a position when it is one (an int, or a string of digits)."""
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    text = ref.strip()
    digits = text[1:] if text[:1] in "+-" else text
    return int(text) if digits.isdigit() else None
