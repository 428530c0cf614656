"""toolfleet's vision service: image crop/zoom/rotate and video frame extraction.

Its tools are registered with the toolfleet.services entry point named ``vision``, which
points at :func:`tools`. Adding a tool here is one module and one line in that list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool

if TYPE_CHECKING:
    from toolfleet.vision.settings import VisionSettings


def tools(settings: Settings) -> list[Tool]:
    """The tools this service serves: image_crop, image_rotate, image_resize, image_flip,
    image_draw_boxes, video_info, video_frames, and media (hidden: the REST media API)."""
    from toolfleet.vision.settings import VisionSettings

    return tools_for(VisionSettings())


def tools_for(settings: VisionSettings) -> list[Tool]:
    """The vision tools over one shared store, cache and thread pool."""
    from toolfleet.vision.annotate import ImageDrawBoxes
    from toolfleet.vision.crop import ImageCrop
    from toolfleet.vision.media_tool import MediaTool
    from toolfleet.vision.service import Vision
    from toolfleet.vision.transforms import ImageFlip, ImageResize, ImageRotate
    from toolfleet.vision.video_tools import VideoFrames, VideoInfo

    vision = Vision(settings)
    return [
        ImageCrop(vision),
        ImageRotate(vision),
        ImageResize(vision),
        ImageFlip(vision),
        ImageDrawBoxes(vision),
        VideoInfo(vision),
        VideoFrames(vision),
        MediaTool(vision),
    ]
