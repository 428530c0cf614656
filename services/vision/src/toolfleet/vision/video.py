"""The video tools: video_info and video_frames."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from PIL import Image
from pydantic import Field
from toolfleet.core.protocol import ContentPart, ErrorKind, TextPart
from toolfleet.core.tool import CallContext, ToolArguments, ToolError, ToolResult
from toolfleet.vision.arguments import FormatArg, MaxPixelsArg, QualityArg
from toolfleet.vision.encoding import Encoded, choose_format, encode
from toolfleet.vision.frames import (
    check_cost,
    extract,
    frame_time,
    last_time,
    plan_times,
    pts_at,
    split,
)
from toolfleet.vision.records import FrameRef, FramesOutput, MediaInfo
from toolfleet.vision.service import VisionTool, b64, image_part

DEFAULT_FRAMES = 8

VideoArg = Annotated[
    int | str,
    Field(
        description="The video: its number in this session's video list (1 = the first) or its id."
    ),
]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def clock(seconds: float) -> str:
    """``seconds`` as m:ss.ss (or h:mm:ss.ss)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:05.2f}"
    return f"{minutes}:{secs:05.2f}"


class VideoInfoArgs(ToolArguments):
    """Arguments of video_info."""

    video: VideoArg = 1


class VideoInfo(VisionTool[VideoInfoArgs]):
    """Describe a video."""

    name = "video_info"
    description = (
        "Describe a video of this session: duration in seconds, frames per second, number "
        "of frames, width and height, codec, and whether it has sound."
    )
    Arguments = VideoInfoArgs
    Output = MediaInfo
    cost = 0.0

    async def call(self, args: VideoInfoArgs, ctx: CallContext) -> ToolResult:
        index, blob = self.vision.existing_media(ctx).resolve(args.video, "video")
        info = blob.info.model_copy(update={"index": index})
        text = (
            f"Video {index} (id {info.id}): {info.duration_s:.2f} s ({clock(info.duration_s or 0)})"
            f", {info.fps:.2f} fps, {info.frames} frames, {info.width}x{info.height}, "
            f"{info.codec}, {'with' if info.has_audio else 'no'} audio."
        )
        return ToolResult.text(text, data=info.model_dump())


class FramesArgs(ToolArguments):
    """Arguments of video_frames."""

    video: VideoArg = 1
    start_time: Seconds | None = Field(
        default=None, description="Start of the range in seconds (default: 0)."
    )
    end_time: Seconds | None = Field(
        default=None, description="End of the range in seconds (default: the end)."
    )
    num_frames: int | None = Field(
        default=None,
        ge=1,
        description=f"Frames evenly spaced from start_time to end_time, both included "
        f"(default {DEFAULT_FRAMES}; the server caps the count).",
    )
    fps: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="Instead of num_frames: frames per second from start_time on.",
    )
    timestamps: list[Seconds] | None = Field(
        default=None,
        max_length=10_000,
        description="Instead of a range: the exact times (seconds) to take frames at.",
    )
    format: FormatArg = None
    quality: QualityArg = None
    max_pixels: MaxPixelsArg = None


class VideoFrames(VisionTool[FramesArgs]):
    """Frames of a video at chosen times."""

    name = "video_frames"
    description = (
        "Take frames from a video of this session: evenly spaced over a time range (start_time "
        "to end_time, num_frames or fps), or at exact timestamps. Each frame comes with its "
        "time in seconds, and is added to the session's image list (so it can be cropped)."
    )
    Arguments = FramesArgs
    Output = FramesOutput

    async def call(self, args: FramesArgs, ctx: CallContext) -> ToolResult:
        vision = self.vision
        s = vision.settings
        media = vision.existing_media(ctx)
        index, blob = media.resolve(args.video, "video")
        video = blob.video
        assert video is not None
        times = plan_times(
            blob.info.duration_s or last_time(video),
            start=args.start_time,
            end=args.end_time,
            num_frames=args.num_frames,
            fps=args.fps,
            timestamps=args.timestamps,
            max_frames=s.max_frames,
            default_frames=DEFAULT_FRAMES,
        )
        media.check_room(len(times))
        wanted = [pts_at(video, t) for t in times]
        fmt = choose_format(args.format or s.output_format, "VIDEO")
        quality = args.quality or s.jpeg_quality
        max_pixels = min(args.max_pixels or s.max_output_pixels, s.max_output_pixels)

        check_cost(video, wanted, s.max_decode_frames)
        groups = split(video, sorted(set(wanted)), s.frame_jobs)

        def work(group: list[int]) -> dict[int, tuple[Image.Image, Encoded, str]]:
            images = extract(blob.data, video, group, max_pixels, ctx.deadline)
            done = {}
            for pts, image in images.items():
                if time.monotonic() > ctx.deadline:
                    raise ToolError(
                        ErrorKind.timeout,
                        "encoding the frames did not finish within the call's timeout",
                        hint="Ask for fewer or smaller frames (max_pixels), or JPEG.",
                    )
                encoded = encode(image, fmt, quality, s.png_compress_level)
                done[pts] = (image, encoded, b64(encoded.data))
            return done

        decoded: dict[int, tuple[Image.Image, Encoded, str]] = {}
        jobs = [vision.pool.run(ctx.deadline, work, group) for group in groups]
        for found in await asyncio.gather(*jobs):
            decoded.update(found)
        source = blob.info.model_copy(update={"index": index})
        frames: list[FrameRef] = []
        parts: list[ContentPart] = []
        sent = 0
        for requested, pts in zip(times, wanted, strict=True):
            image, encoded, data = decoded[pts]
            if frames and sent + len(encoded.data) > s.max_response_bytes:
                break  # the rest would make the response too large: said below
            sent += len(encoded.data)
            ref = vision.add_result(media, encoded, image)
            at = frame_time(video, pts)
            frames.append(FrameRef(**ref.model_dump(), time_s=round(at, 6), requested_s=requested))
            parts.append(
                TextPart(
                    text=f"Frame {len(frames)} at {at:.2f} s ({clock(at)}), image {ref.index}:"
                )
            )
            parts.append(image_part(encoded, data, ref))
        head = (
            f"{len(frames)} frame{'s' if len(frames) != 1 else ''} of video {index} "
            f"({source.duration_s:.2f} s, {source.fps:.2f} fps, {source.width}x{source.height})"
            f", added as images {frames[0].index} to {frames[-1].index}."
        )
        left_out = len(times) - len(frames)
        if left_out:
            parts.append(
                TextPart(
                    text=f"{left_out} of the {len(times)} frames asked for were left out (from "
                    f"{times[len(frames)]:.2f} s on): the images would pass the "
                    f"{s.max_response_bytes // (1 << 20)} MiB one response may hold. Ask for "
                    "fewer frames, a smaller max_pixels, or format jpeg."
                )
            )
        return ToolResult(
            content=[TextPart(text=head), *parts],
            data=FramesOutput(video=source, frames=frames).model_dump(),
            truncated=bool(left_out),
        )
