"""Encoding returned images: PNG (lossless) or JPEG (a quality setting), and scaling a result
down to a pixel budget. Runs in worker threads."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image
from toolfleet.vision.geometry import fit_pixels
from toolfleet.vision.store import content_id

OutputFormat = Literal["auto", "png", "jpeg"]
MIME = {"png": "image/png", "jpeg": "image/jpeg"}


@dataclass
class Encoded:
    """An encoded image."""

    data: bytes
    format: Literal["png", "jpeg"]
    width: int
    height: int
    id: str  # content-addressed id (hashed in the worker thread, not on the event loop)

    @property
    def mime_type(self) -> str:
        """image/png or image/jpeg."""
        return MIME[self.format]


def choose_format(requested: OutputFormat, source_format: str) -> Literal["png", "jpeg"]:
    """``auto`` keeps JPEG sources (and video frames) JPEG, everything else PNG."""
    if requested != "auto":
        return requested
    return "jpeg" if source_format.upper() in ("JPEG", "VIDEO") else "png"


def scale_to(image: Image.Image, max_pixels: int) -> Image.Image:
    """The image scaled down (aspect kept) to at most ``max_pixels`` pixels."""
    size = fit_pixels(image.width, image.height, max_pixels)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def encode(
    image: Image.Image, fmt: Literal["png", "jpeg"], quality: int, png_level: int
) -> Encoded:
    """Encode ``image``; JPEG drops alpha onto a white background."""
    out = io.BytesIO()
    if fmt == "jpeg":
        if image.mode in ("RGBA", "LA"):
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image, mask=image.getchannel("A"))
            image = background
        elif image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=quality)
    else:
        image.save(out, "PNG", compress_level=png_level)
    data = out.getvalue()
    return Encoded(data, fmt, image.width, image.height, content_id("image", data))
