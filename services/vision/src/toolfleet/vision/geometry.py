"""Coordinates and boxes: the conventions models use, mapped onto the original image.

A box is ``[x1, y1, x2, y2]``: (x1, y1) the top-left corner, (x2, y2) the bottom-right one,
x to the right and y downwards, in one of three units (``coords``):

- ``pixels``: pixels of the image (``space="original"``), or of the image as the model saw
  it after Qwen2-VL's ``smart_resize`` (``space="resized"``): x is scaled by
  ``width / resized_width`` and y by ``height / resized_height``;
- ``normalized``: fractions of the width and height, 0 to 1;
- ``normalized_1000``: thousandths of the width and height, 0 to 1000 (Qwen2-VL, Gemini).

Normalised boxes mean the same in both spaces. A box becomes whole pixels by taking every
pixel it touches: ``floor`` of x1/y1, ``ceil`` of x2/y2 (x2 and y2 exclusive, like
``PIL.Image.crop``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError

Coords = Literal["pixels", "normalized", "normalized_1000"]
Space = Literal["original", "resized"]
Box = tuple[float, float, float, float]
PixelBox = tuple[int, int, int, int]

EPS = 1e-6  # float noise tolerated before floor/ceil (0.3 * 1000 = 300.00000000000006)
SCALE = {"normalized": 1.0, "normalized_1000": 1000.0}


def smart_resize(
    height: int, width: int, factor: int, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Qwen2-VL's resize rule, as (height, width): each side rounded to the nearest multiple
    of ``factor`` (at least ``factor``); if that is over ``max_pixels`` both sides are scaled
    by ``sqrt(height * width / max_pixels)`` and floored to multiples of ``factor``; if under
    ``min_pixels``, scaled up by ``sqrt(min_pixels / (height * width))`` and ceiled."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class Frame:
    """The image a box refers to: its size, and its size as the model saw it."""

    width: int
    height: int
    resized_width: int
    resized_height: int

    def describe(self, coords: Coords, space: Space) -> str:
        """The coordinate system, in words, for messages."""
        if coords != "pixels":
            top = "1" if coords == "normalized" else "1000"
            return f"{coords} coordinates (0 to {top})"
        if space == "resized":
            return (
                f"pixels of the resized {self.resized_width}x{self.resized_height} image "
                f"(original {self.width}x{self.height})"
            )
        return f"pixels of the {self.width}x{self.height} image"


def check_box(box: Box, coords: Coords, frame: Frame, space: Space) -> None:
    """Refuse empty boxes and normalised values out of range, saying why."""
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the box {_fmt(box)} is empty: x2 must be greater than x1 and y2 greater than y1",
            hint="Give the box as [x1, y1, x2, y2]: top-left corner, then bottom-right corner.",
        )
    if coords in SCALE:
        top = SCALE[coords]
        if min(box) < -EPS or max(box) > top + EPS:
            raise ToolError(
                ErrorKind.invalid_arguments,
                f"{coords} coordinates run from 0 to {top:g}, but the box is {_fmt(box)}",
                hint=f"Scale the box to 0..{top:g}, or send coords='pixels' for pixel "
                f"coordinates ({frame.describe('pixels', space)}).",
            )


def to_original(box: Box, coords: Coords, space: Space, frame: Frame) -> Box:
    """The box in (fractional) pixels of the original image."""
    if coords in SCALE:
        sx = frame.width / SCALE[coords]
        sy = frame.height / SCALE[coords]
    elif space == "resized":
        sx = frame.width / frame.resized_width
        sy = frame.height / frame.resized_height
    else:
        sx = sy = 1.0
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def pad(box: Box, padding: float) -> Box:
    """The box grown by ``padding`` (in the box's own units) on every side."""
    x1, y1, x2, y2 = box
    return (x1 - padding, y1 - padding, x2 + padding, y2 + padding)


def to_pixels(box: Box) -> PixelBox:
    """Every pixel the box touches (at least one)."""
    x1, y1, x2, y2 = box
    ix1, iy1 = math.floor(x1 + EPS), math.floor(y1 + EPS)
    ix2, iy2 = math.ceil(x2 - EPS), math.ceil(y2 - EPS)
    return ix1, iy1, max(ix2, ix1 + 1), max(iy2, iy1 + 1)


@dataclass
class CropPlan:
    """The region to cut out, in pixels of the original image, and what was adjusted."""

    box: PixelBox
    notes: list[str] = field(default_factory=list)


def plan_crop(box: Box, width: int, height: int, min_side: int, max_aspect: float) -> CropPlan:
    """Clamp the (original-pixel) box to the image, refuse it when nothing is left or it is
    too thin, and enlarge each side under ``min_side`` pixels about the box's centre (kept
    inside the image; never past the image's own side)."""
    x1, y1, x2, y2 = box
    clamped = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
    notes = []
    if clamped[2] - clamped[0] <= EPS or clamped[3] - clamped[1] <= EPS:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the box {_fmt(box)} (pixels) lies outside the {width}x{height} image",
            hint=f"Keep x within 0..{width} and y within 0..{height}.",
        )
    if clamped != (x1, y1, x2, y2):
        notes.append(f"clamped to the {width}x{height} image")
    px1, py1, px2, py2 = to_pixels(clamped)
    w, h = px2 - px1, py2 - py1
    if max(w, h) / min(w, h) > max_aspect:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the box is {w}x{h} pixels: one side is more than {max_aspect:g} times the other",
            hint="Use a less elongated box (e.g. include more around the region).",
        )
    px1, px2, grew_x = _enlarge(px1, px2, width, min_side)
    py1, py2, grew_y = _enlarge(py1, py2, height, min_side)
    if grew_x or grew_y:
        notes.append(
            f"enlarged from {w}x{h} to {px2 - px1}x{py2 - py1} about its centre (sides under "
            f"{min_side} px are enlarged)"
        )
    return CropPlan((px1, py1, px2, py2), notes)


def _enlarge(a: int, b: int, side: int, min_side: int) -> tuple[int, int, bool]:
    """Grow [a, b) to ``min_side`` (at most ``side``) about its centre, inside [0, side)."""
    target = min(min_side, side)
    if b - a >= target:
        return a, b, False
    start = math.floor((a + b) / 2 - target / 2)
    start = min(max(0, start), side - target)
    return start, start + target, True


def fit_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, to at most ``max_pixels`` pixels."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _fmt(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
