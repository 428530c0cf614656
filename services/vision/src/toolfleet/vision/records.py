"""What the vision service tells callers about stored media and returned images."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MediaInfo(BaseModel):
    """A stored image or video, as a session lists it."""

    id: str = Field(description="Content-addressed id (img-... or vid-...); same bytes, same id.")
    kind: Literal["image", "video"] = Field(description="image or video.")
    index: int = Field(
        default=0, description="1-based position in the session's image (or video) list."
    )
    mime_type: str = Field(description="image/png, image/jpeg, video/mp4 ...")
    format: str = Field(description="Container or file format (PNG, JPEG, mp4, webm ...).")
    bytes: int = Field(description="Size of the stored file in bytes.")
    width: int = Field(description="Width in pixels.")
    height: int = Field(description="Height in pixels.")
    mode: str | None = Field(default=None, description="Image colour mode: RGB, RGBA or L.")
    duration_s: float | None = Field(default=None, description="Video: duration in seconds.")
    fps: float | None = Field(default=None, description="Video: average frames per second.")
    frames: int | None = Field(default=None, description="Video: number of frames.")
    codec: str | None = Field(default=None, description="Video: codec of the video stream.")
    has_audio: bool | None = Field(default=None, description="Video: has an audio stream.")


class ImageRef(BaseModel):
    """A returned image: where it sits in the session and what was sent."""

    id: str = Field(description="Content-addressed id; name it in later calls.")
    index: int = Field(description="1-based position in the session's image list.")
    width: int = Field(description="Width in pixels.")
    height: int = Field(description="Height in pixels.")
    mime_type: str = Field(description="image/png or image/jpeg.")
    bytes: int = Field(description="Encoded size in bytes.")


class ImageOutput(BaseModel):
    """Structured output of the image tools."""

    image: ImageRef = Field(description="The result, added to the session's image list.")
    source: MediaInfo = Field(description="The image the operation was applied to.")
    box: list[int] | None = Field(
        default=None,
        description="image_crop: the region cut out, [x1, y1, x2, y2] in pixels of the "
        "source image (x2, y2 exclusive), after padding, clamping and enlarging.",
    )
    notes: list[str] = Field(
        default_factory=list, description="Adjustments made (clamped, enlarged, scaled down)."
    )


class FrameRef(ImageRef):
    """A returned video frame."""

    time_s: float = Field(description="Presentation time of the frame, in seconds.")
    requested_s: float = Field(description="The time asked for; the frame shown at that time.")


class FramesOutput(BaseModel):
    """Structured output of video_frames."""

    video: MediaInfo = Field(description="The video the frames come from.")
    frames: list[FrameRef] = Field(description="The frames, in time order.")
