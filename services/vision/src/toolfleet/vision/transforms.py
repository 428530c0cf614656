"""image_rotate, image_resize and image_flip."""

from __future__ import annotations

import math
from typing import Literal

from PIL import Image
from pydantic import Field
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolArguments, ToolError
from toolfleet.vision.arguments import FormatArg, ImageArg, MaxPixelsArg, QualityArg
from toolfleet.vision.geometry import fit_pixels
from toolfleet.vision.images import ImageTool, Plan, parse_colour
from toolfleet.vision.records import MediaInfo

# ---------------------------------------------------------------------- image_rotate


class RotateArgs(ToolArguments):
    """Arguments of image_rotate."""

    image: ImageArg = 1
    degrees: float = Field(
        ge=0, le=360, allow_inf_nan=False, description="How far to turn, in degrees (0-360)."
    )
    direction: Literal["clockwise", "counterclockwise"] = Field(
        description="Which way to turn, as seen on screen (required: no default)."
    )
    expand: bool = Field(
        default=True,
        description="Grow the canvas so the whole rotated image fits (false: keep the size, "
        "corners are cut).",
    )
    fill: str = Field(
        default="black",
        max_length=40,
        description="Colour of the uncovered corners (a name or #rrggbb).",
    )
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


TRANSPOSE_CCW = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


class ImageRotate(ImageTool[RotateArgs]):
    """Rotate an image."""

    name = "image_rotate"
    description = (
        "Rotate an image of this session by some degrees, clockwise or counterclockwise (as "
        "seen on screen). Multiples of 90 degrees are exact. The result is added to the "
        "session's image list."
    )
    Arguments = RotateArgs

    def plan(self, args: RotateArgs, info: MediaInfo, index: int) -> Plan:
        ccw = args.degrees if args.direction == "counterclockwise" else -args.degrees
        ccw %= 360
        fill = parse_colour(args.fill, info.mode or "RGB")
        text = f"Rotated image {index} by {args.degrees:g} degrees {args.direction}"
        if round(ccw, 9) % 90 == 0:
            quarter = round(ccw) % 360
            if quarter == 0:
                return Plan(lambda image: image.copy(), text)
            method = TRANSPOSE_CCW[quarter]
            return Plan(lambda image: image.transpose(method), text)
        if args.expand:
            rad = math.radians(ccw)
            w = abs(info.width * math.cos(rad)) + abs(info.height * math.sin(rad))
            h = abs(info.width * math.sin(rad)) + abs(info.height * math.cos(rad))
            if w * h > self.vision.settings.max_image_pixels:
                raise ToolError(
                    ErrorKind.invalid_arguments,
                    f"the rotated image would be {w:.0f}x{h:.0f} pixels, over the limit",
                    hint="Rotate with expand=false, or rotate a smaller (cropped) image.",
                )

        def rotate(image: Image.Image) -> Image.Image:
            return image.rotate(
                ccw, resample=Image.Resampling.BICUBIC, expand=args.expand, fillcolor=fill
            )

        return Plan(rotate, text)


# ---------------------------------------------------------------------- image_resize


class ResizeArgs(ToolArguments):
    """Arguments of image_resize."""

    image: ImageArg = 1
    width: int | None = Field(default=None, ge=1, le=16384, description="New width in pixels.")
    height: int | None = Field(default=None, ge=1, le=16384, description="New height in pixels.")
    scale: float | None = Field(
        default=None, gt=0, le=16, allow_inf_nan=False, description="Scale factor (2 = double)."
    )
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


class ImageResize(ImageTool[ResizeArgs]):
    """Resize an image."""

    name = "image_resize"
    description = (
        "Resize an image of this session: to a width and/or a height (one alone keeps the "
        "aspect ratio), or by a scale factor. The result is added to the session's image list."
    )
    Arguments = ResizeArgs

    def plan(self, args: ResizeArgs, info: MediaInfo, index: int) -> Plan:
        if args.scale is not None and (args.width is not None or args.height is not None):
            raise ToolError(
                ErrorKind.invalid_arguments, "give a scale, or a width/height, not both"
            )
        if args.scale is not None:
            width, height = info.width * args.scale, info.height * args.scale
        elif args.width is not None and args.height is not None:
            width, height = args.width, args.height
        elif args.width is not None:
            width, height = args.width, info.height * args.width / info.width
        elif args.height is not None:
            width, height = info.width * args.height / info.height, args.height
        else:
            raise ToolError(
                ErrorKind.invalid_arguments,
                "say how to resize: width, height or scale",
                hint='e.g. {"scale": 2} doubles both sides.',
            )
        size = (max(1, round(width)), max(1, round(height)))
        limit = min(
            args.max_pixels or self.vision.settings.max_output_pixels,
            self.vision.settings.max_output_pixels,
        )
        fitted = fit_pixels(*size, limit)
        notes = []
        if fitted != size:
            notes.append(
                f"{size[0]}x{size[1]} is over {limit} pixels: made {fitted[0]}x{fitted[1]}"
            )
        text = f"Resized image {index} from {info.width}x{info.height} to {fitted[0]}x{fitted[1]}"

        def resize(image: Image.Image) -> Image.Image:
            return image.resize(fitted, Image.Resampling.BICUBIC, reducing_gap=3.0)

        return Plan(resize, text, notes=notes)


# ---------------------------------------------------------------------- image_flip


class FlipArgs(ToolArguments):
    """Arguments of image_flip."""

    image: ImageArg = 1
    direction: Literal["horizontal", "vertical"] = Field(
        description="horizontal: mirror left to right; vertical: upside down (top to bottom)."
    )
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


class ImageFlip(ImageTool[FlipArgs]):
    """Mirror an image."""

    name = "image_flip"
    description = (
        "Flip an image of this session: horizontal mirrors it left to right, vertical turns "
        "it upside down. The result is added to the session's image list."
    )
    Arguments = FlipArgs

    def plan(self, args: FlipArgs, info: MediaInfo, index: int) -> Plan:
        method = (
            Image.Transpose.FLIP_LEFT_RIGHT
            if args.direction == "horizontal"
            else Image.Transpose.FLIP_TOP_BOTTOM
        )
        words = "left to right" if args.direction == "horizontal" else "top to bottom"
        return Plan(lambda image: image.transpose(method), f"Flipped image {index} {words}")
