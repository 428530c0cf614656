"""What the supervisor captures of a process: its output, capped, and the images a kernel
reports, checked. Runs in the supervisor, outside the process that produced them."""

from __future__ import annotations

import base64
import binascii
import codecs
import struct
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Output:
    """The bytes of one or more streams (stdout, stderr) under one shared cap."""

    def __init__(self, limit: int, streams: tuple[str, ...] = ("stdout", "stderr")) -> None:
        self.limit = limit
        self.kept: dict[str, bytearray] = {name: bytearray() for name in streams}
        self.total: dict[str, int] = dict.fromkeys(streams, 0)

    @property
    def used(self) -> int:
        """Bytes kept so far, every stream together."""
        return sum(len(v) for v in self.kept.values())

    @property
    def exceeded(self) -> bool:
        """True once more was written than the cap keeps."""
        return sum(self.total.values()) > self.limit

    def add(self, stream: str, data: bytes) -> None:
        """Count ``data`` and keep what fits under the cap."""
        self.total[stream] += len(data)
        room = self.limit - self.used
        if room > 0:
            self.kept[stream] += data[:room]

    def text(self, stream: str) -> str:
        """The kept bytes as text. Bytes that are not UTF-8 come through as lone surrogates
        (an encoded surrogate, as Python's ``print('\\ud800')`` writes it, as one), which the
        service turns into U+FFFD with a note, like any text that is not valid Unicode. A
        character cut in two by the cap is dropped, not replaced."""
        data = bytes(self.kept[stream])
        if self.total[stream] > len(data):
            data = _trim_partial_character(data)
        return data.decode("utf-8", "toolfleet-lenient")

    def notes(self) -> list[str]:
        """What the observation must say about this output."""
        notes = []
        for name, total in self.total.items():
            kept = len(self.kept[name])
            if total > kept:
                notes.append(
                    f"{name} was cut: {kept} of {total} bytes kept (the output limit is "
                    f"{self.limit} bytes per call)"
                )
        return notes


def _lenient(exc: UnicodeError) -> tuple[str, int]:
    """Decode error handler: an encoded surrogate (ED A0..BF 80..BF) becomes that one
    surrogate, any other byte that is not UTF-8 its surrogate escape."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    data, i = exc.object, exc.start
    head = data[i : i + 3]
    if len(head) == 3 and head[0] == 0xED and 0xA0 <= head[1] <= 0xBF and 0x80 <= head[2] <= 0xBF:
        return chr(0xD000 | ((head[1] & 0x3F) << 6) | (head[2] & 0x3F)), i + 3
    return chr(0xDC00 + data[i]), i + 1


codecs.register_error("toolfleet-lenient", _lenient)


def _trim_partial_character(data: bytes) -> bytes:
    """Drop an incomplete UTF-8 sequence at the end (the cap fell inside a character)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the lead byte of the last sequence
            need = 1 if byte < 0x80 else 2 if byte >> 5 == 6 else 3 if byte >> 4 == 14 else 4
            return data if need <= back else data[:-back]
    return data


def check_png(image: Any, max_bytes: int) -> tuple[dict[str, Any] | None, str | None]:
    """A kernel's image report, checked: the bytes must be a PNG whose header gives the
    dimensions reported, within ``max_bytes``. Returns (image, None) or (None, why not)."""
    if not isinstance(image, dict) or not isinstance(image.get("data"), str):
        return None, "an image report that is not an image"
    if len(image["data"]) > (max_bytes * 4) // 3 + 4:
        return None, f"an image over the limit of {max_bytes} bytes"
    try:
        raw = base64.b64decode(image["data"], validate=True)
    except (binascii.Error, ValueError):
        return None, "an image whose data is not base64"
    if len(raw) > max_bytes:
        return None, f"an image of {len(raw)} bytes, over the limit of {max_bytes}"
    if len(raw) < 33 or raw[:8] != PNG_SIGNATURE or raw[12:16] != b"IHDR":
        return None, "an image that is not a PNG"
    width, height = struct.unpack(">II", raw[16:24])
    if not (0 < width <= 1 << 16 and 0 < height <= 1 << 16):
        return None, "a PNG with impossible dimensions"
    return {"mime_type": "image/png", "data": image["data"], "width": width, "height": height}, None
