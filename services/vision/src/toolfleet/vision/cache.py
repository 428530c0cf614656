"""Decoded images kept for the next call: a crop of a 1920x1080 JPEG should not pay for
decoding it again. Least recently used first out, bounded in bytes; worker threads read and
fill it, so it has a lock. Cached images are never modified (operations return new ones)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from PIL import Image


def image_bytes(image: Image.Image) -> int:
    """Memory a decoded image holds (approximately)."""
    return image.width * image.height * len(image.getbands())


class DecodedImages:
    """Decoded images by blob id."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._images)

    def get(self, blob_id: str) -> Image.Image | None:
        """The decoded image, or None."""
        with self._lock:
            image = self._images.get(blob_id)
            if image is not None:
                self._images.move_to_end(blob_id)
            return image

    def put(self, blob_id: str, image: Image.Image) -> None:
        """Keep a decoded image (if it fits the budget at all)."""
        size = image_bytes(image)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._images.pop(blob_id, None)
            if old is not None:
                self.bytes -= image_bytes(old)
            self._images[blob_id] = image
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, evicted = self._images.popitem(last=False)
                self.bytes -= image_bytes(evicted)

    def discard(self, blob_id: str) -> None:
        """Forget an image (its blob is gone)."""
        with self._lock:
            old = self._images.pop(blob_id, None)
            if old is not None:
                self.bytes -= image_bytes(old)
