"""Arguments the image and video tools share: which image, boxes and their coordinates, and
how the result is encoded."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from toolfleet.vision.encoding import OutputFormat
from toolfleet.vision.geometry import Coords, Space

ImageArg = Annotated[
    int | str,
    Field(
        description="The image: its number in this session's image list (1 = the first "
        "image, -1 = the newest; results are added to the list) or its id."
    ),
]
BBox = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]],
    Field(
        min_length=4,
        max_length=4,
        description="[x1, y1, x2, y2]: the top-left corner, then the bottom-right corner "
        "(x to the right, y downwards).",
    ),
]
CoordsArg = Annotated[
    Coords,
    Field(
        description="Units of the box: pixels; normalized (fractions of width and height, "
        "0 to 1); normalized_1000 (0 to 1000)."
    ),
]
SpaceArg = Annotated[
    Space,
    Field(
        description="For pixel boxes: pixels of the original image, or of the image as you "
        "saw it after resizing (Qwen2-VL smart_resize: sides multiples of 28, at most "
        "max_pixels); normalized boxes are the same in both."
    ),
]
FormatArg = Annotated[
    OutputFormat | None,
    Field(
        description="Encoding of the result: png (lossless) or jpeg; auto (the default) "
        "keeps JPEG images JPEG and makes the others PNG."
    ),
]
QualityArg = Annotated[int | None, Field(ge=1, le=95, description="JPEG quality (1-95).")]
MaxPixelsArg = Annotated[
    int | None,
    Field(ge=1, description="Scale the result down (aspect kept) to at most this many pixels."),
]
