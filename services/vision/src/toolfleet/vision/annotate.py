"""image_draw_boxes: mark regions of an image with labelled boxes (CodeDance-style visual
artefacts)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont
from pydantic import Field
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolArguments, ToolError
from toolfleet.vision.arguments import (
    BBox,
    CoordsArg,
    FormatArg,
    ImageArg,
    MaxPixelsArg,
    QualityArg,
    SpaceArg,
)
from toolfleet.vision.geometry import PixelBox, to_pixels
from toolfleet.vision.images import ImageTool, Plan, parse_colour, pixel_box
from toolfleet.vision.records import MediaInfo

PALETTE = ("#ff0000", "#00c000", "#0060ff", "#ff9900", "#cc00cc", "#00b0b0", "#e0e000")


class BoxToDraw(ToolArguments):
    """One box to draw."""

    bbox_2d: BBox
    label: str | None = Field(default=None, max_length=100, description="Text drawn with it.")
    color: str | None = Field(
        default=None, max_length=40, description="Outline colour (a name or #rrggbb)."
    )


class DrawBoxesArgs(ToolArguments):
    """Arguments of image_draw_boxes."""

    image: ImageArg = 1
    boxes: list[BoxToDraw] = Field(min_length=1, max_length=64, description="Boxes to draw.")
    coords: CoordsArg = "pixels"
    space: SpaceArg = "original"
    line_width: int = Field(default=3, ge=1, le=50, description="Outline width in pixels.")
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


class ImageDrawBoxes(ImageTool[DrawBoxesArgs]):
    """Draw labelled boxes on an image."""

    name = "image_draw_boxes"
    description = (
        "Draw boxes (with optional labels) on an image of this session, to mark regions. "
        "Boxes use the same coordinates as image_crop. The result is added to the session's "
        "image list."
    )
    Arguments = DrawBoxesArgs

    def plan(self, args: DrawBoxesArgs, info: MediaInfo, index: int) -> Plan:
        s = self.vision.settings
        marks: list[tuple[PixelBox, tuple[int, ...], str | None]] = []
        for i, spec in enumerate(args.boxes):
            x1, y1, x2, y2 = pixel_box(spec.bbox_2d, args.coords, args.space, info, s)
            clamped = (max(0.0, x1), max(0.0, y1), min(info.width, x2), min(info.height, y2))
            if clamped[2] <= clamped[0] or clamped[3] <= clamped[1]:
                raise ToolError(
                    ErrorKind.invalid_arguments,
                    f"box {i + 1} lies outside the {info.width}x{info.height} image",
                )
            colour = parse_colour(spec.color or PALETTE[i % len(PALETTE)], "RGB")
            marks.append((to_pixels(clamped), colour, spec.label))
        width = args.line_width

        def draw(image: Image.Image) -> Image.Image:
            canvas = image.convert("RGBA" if image.mode == "RGBA" else "RGB")
            pen = ImageDraw.Draw(canvas)
            font = ImageFont.load_default(size=max(12, min(canvas.size) // 40))
            for (x1, y1, x2, y2), colour, label in marks:
                pen.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour, width=width)
                if label:
                    left, top, right, bottom = pen.textbbox((0, 0), label, font=font)
                    tw, th = right - left + 4, bottom - top + 4
                    ty = y1 - th if y1 - th >= 0 else y1
                    pen.rectangle((x1, ty, x1 + tw, ty + th), fill=colour)
                    pen.text((x1 + 2 - left, ty + 2 - top), label, fill="white", font=font)
            return canvas

        count = len(marks)
        return Plan(draw, f"Drew {count} box{'es' if count != 1 else ''} on image {index}")
