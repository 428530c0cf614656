"""The base of the image tools: take an image of the session, plan the operation (checked
before any pixel is touched), run it in a worker thread, encode the result, and append it to
the session's image list (so it can be cropped again)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageColor
from toolfleet.core.protocol import ErrorKind, TextPart
from toolfleet.core.tool import ArgsT, CallContext, ToolError, ToolResult
from toolfleet.vision.encoding import Encoded, choose_format, encode, scale_to
from toolfleet.vision.geometry import (
    Coords,
    Frame,
    PixelBox,
    Space,
    check_box,
    smart_resize,
    to_original,
)
from toolfleet.vision.records import ImageOutput, MediaInfo
from toolfleet.vision.service import VisionTool, b64, image_part
from toolfleet.vision.settings import VisionSettings


@dataclass
class Plan:
    """What an image tool will do, decided (and checked) before any pixel is touched."""

    apply: Callable[[Image.Image], Image.Image]  # runs in a worker thread
    text: str  # what was done, for the model: "Rotated image 1 by 90 degrees clockwise"
    box: PixelBox | None = None
    notes: list[str] = field(default_factory=list)


class ImageTool(VisionTool[ArgsT]):
    """An operation on one image of the session; subclasses say what in :meth:`plan`."""

    Output = ImageOutput

    def plan(self, args: Any, info: MediaInfo, index: int) -> Plan:
        """Check the arguments against the image and say what to do."""
        raise NotImplementedError

    async def call(self, args: Any, ctx: CallContext) -> ToolResult:
        vision = self.vision
        s = vision.settings
        media = vision.existing_media(ctx)
        index, blob = media.resolve(args.image, "image")
        media.check_room()
        source = blob.info.model_copy(update={"index": index})
        plan = self.plan(args, source, index)
        fmt = choose_format(args.format or s.output_format, blob.info.format)
        quality = args.quality or s.jpeg_quality
        max_pixels = min(args.max_pixels or s.max_output_pixels, s.max_output_pixels)

        def work() -> tuple[Image.Image, Encoded, str, list[str]]:
            result = plan.apply(vision.decoded(blob))
            scaled = scale_to(result, max_pixels)
            notes = []
            if scaled is not result:
                notes.append(
                    f"scaled down from {result.width}x{result.height} to "
                    f"{scaled.width}x{scaled.height} (at most {max_pixels} pixels)"
                )
            encoded = encode(scaled, fmt, quality, s.png_compress_level)
            return scaled, encoded, b64(encoded.data), notes

        image, encoded, data, notes = await vision.pool.run(ctx.deadline, work)
        ref = vision.add_result(media, encoded, image)
        notes = plan.notes + notes
        text = (
            f"{plan.text}. The result is image {ref.index} ({ref.width}x{ref.height}, id {ref.id})."
        )
        if notes:
            text += " Note: " + "; ".join(notes) + "."
        output = ImageOutput(image=ref, source=source, box=plan.box and list(plan.box), notes=notes)
        return ToolResult(
            content=[TextPart(text=text), image_part(encoded, data, ref)],
            data=output.model_dump(),
        )


def resize_frame(info: MediaInfo, settings: VisionSettings) -> Frame:
    """The image's size, and its size after smart_resize with the server's settings."""
    height, width = smart_resize(
        info.height,
        info.width,
        settings.resize_factor,
        settings.resize_min_pixels,
        settings.resize_max_pixels,
    )
    return Frame(info.width, info.height, width, height)


def pixel_box(
    bbox: list[float], coords: Coords, space: Space, info: MediaInfo, settings: VisionSettings
) -> tuple[float, float, float, float]:
    """A model's box, checked, in fractional pixels of the original image."""
    frame = resize_frame(info, settings)
    box = (bbox[0], bbox[1], bbox[2], bbox[3])
    check_box(box, coords, frame, space)
    return to_original(box, coords, space, frame)


def fmt_box(box: PixelBox) -> str:
    return "[" + ", ".join(str(v) for v in box) + "]"


def parse_colour(name: str, mode: str) -> Any:
    try:
        return ImageColor.getcolor(name, mode)
    except ValueError:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"unknown colour {name!r}",
            hint="Use a colour name (red, white ...) or #rrggbb.",
        ) from None
