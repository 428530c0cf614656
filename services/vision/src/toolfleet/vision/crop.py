"""image_crop: zoom into a region of an image, in any of the coordinate conventions models
use (see :mod:`toolfleet.vision.geometry`)."""

from __future__ import annotations

from pydantic import Field
from toolfleet.core.tool import ToolArguments
from toolfleet.vision.arguments import (
    BBox,
    CoordsArg,
    FormatArg,
    ImageArg,
    MaxPixelsArg,
    QualityArg,
    SpaceArg,
)
from toolfleet.vision.geometry import check_box, pad, plan_crop, to_original
from toolfleet.vision.images import ImageTool, Plan, fmt_box, resize_frame
from toolfleet.vision.records import MediaInfo


class CropArgs(ToolArguments):
    """Arguments of image_crop."""

    image: ImageArg = 1
    bbox_2d: BBox
    coords: CoordsArg = "pixels"
    space: SpaceArg = "original"
    padding: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Grow the box by this much on every side, in the box's units.",
    )
    label: str | None = Field(
        default=None, max_length=200, description="What is in the box (echoed back)."
    )
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


class ImageCrop(ImageTool[CropArgs]):
    """Cut a region out of an image (zoom in)."""

    name = "image_crop"
    description = (
        "Zoom in: crop a region of an image of this session and return it. The box is "
        "[x1, y1, x2, y2] in pixels (default), normalized (0-1) or normalized_1000 (0-1000) "
        "coordinates, of the original image or of the resized image you saw. The box is "
        "clamped to the image; sides under 28 pixels are enlarged about the box centre; "
        "empty boxes and boxes more than 100 times longer than wide are refused. The result "
        "is added to the session's image list and can be cropped again."
    )
    Arguments = CropArgs

    def plan(self, args: CropArgs, info: MediaInfo, index: int) -> Plan:
        s = self.vision.settings
        frame = resize_frame(info, s)
        box = (args.bbox_2d[0], args.bbox_2d[1], args.bbox_2d[2], args.bbox_2d[3])
        check_box(box, args.coords, frame, args.space)
        original = to_original(pad(box, args.padding), args.coords, args.space, frame)
        crop = plan_crop(original, info.width, info.height, s.min_side, s.max_aspect_ratio)
        label = f" ({args.label})" if args.label else ""
        text = (
            f"Zoomed in on image {index}{label}: region {fmt_box(crop.box)} in pixels of "
            f"its {info.width}x{info.height} original"
        )
        region = crop.box
        return Plan(lambda image: image.crop(region), text, region, crop.notes)
