"""What an uploaded file is, checked before it is stored: an image Pillow decodes within the
pixel limit, or a video in a known container with a decodable video stream.

Files are recognised by their first bytes, and only the formats listed here are ever tried:
Pillow is not allowed to guess among all its plugins (EPS would run Ghostscript), and FFmpeg
is not allowed to probe (its HLS and concat demuxers would open other files and URLs).
Runs in a worker thread.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image, UnidentifiedImageError
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.vision.records import MediaInfo
from toolfleet.vision.settings import VisionSettings
from toolfleet.vision.store import Blob, VideoIndex, content_id

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
VIDEO_MIME = {"mov": "video/mp4", "matroska": "video/x-matroska", "avi": "video/x-msvideo"}
SUPPORTED = "images: PNG, JPEG, WebP, GIF, BMP, TIFF; videos: MP4/MOV, WebM/MKV, AVI"
DEADLINE_EVERY = 256  # packets demuxed between deadline checks


@dataclass
class Probed:
    """A checked file: the blob to store and, for an image, its decoded pixels."""

    blob: Blob
    image: Image.Image | None = None


def video_container(data: bytes) -> str | None:
    """The demuxer for ``data`` when its first bytes say it is a video container."""
    head = data[:16]
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def probe(data: bytes, settings: VisionSettings, deadline: float) -> Probed:
    """Check ``data`` and describe it; raises a ToolError that says why it is refused."""
    if not data:
        raise ToolError(ErrorKind.invalid_arguments, "the upload is empty")
    container = video_container(data)
    if container is not None:
        return Probed(probe_video(data, container, settings, deadline))
    if len(data) > settings.max_image_bytes:
        raise too_large("image", len(data), settings.max_image_bytes)
    image, fmt = decode_image(data, settings.max_image_pixels)
    info = MediaInfo(
        id=content_id("image", data),
        kind="image",
        mime_type=Image.MIME.get(fmt, "application/octet-stream"),
        format=fmt,
        bytes=len(data),
        width=image.width,
        height=image.height,
        mode=image.mode,
    )
    return Probed(Blob(info.id, data, info), image)


def too_large(kind: str, size: int, limit: int) -> ToolError:
    """The error for a file over its size limit."""
    return ToolError(
        ErrorKind.output_limit,
        f"the {kind} is {size} bytes, over the limit of {limit}",
        hint="Send a smaller file (re-encode or downscale it first).",
    )


# ---------------------------------------------------------------------- images


def decode_image(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    """Decode an image fully (first frame of animations), in RGB, RGBA or L."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as opened:
            width, height = opened.size
            fmt = opened.format or "?"
            if width * height > max_pixels:
                raise bomb(width, height, max_pixels)
            if width == 0 or height == 0:
                raise ToolError(ErrorKind.invalid_arguments, "the image has no pixels")
            opened.load()
            image = normalize_mode(opened)
            if image is opened:
                image = opened.copy()
    except ToolError:
        raise
    except Image.DecompressionBombError as exc:
        raise ToolError(
            ErrorKind.memory_limit,
            f"the image is too large to decode safely: {exc}",
            hint="Send a smaller image.",
        ) from exc
    except UnidentifiedImageError as exc:
        raise not_media() from exc
    except Exception as exc:  # Pillow raises many kinds for broken files
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the image is corrupt or truncated ({type(exc).__name__}: {exc})",
            hint="Send the complete file.",
        ) from exc
    return image, fmt


def bomb(width: int, height: int, limit: int) -> ToolError:
    """The error for an image over the pixel limit (a decompression bomb, or just huge)."""
    return ToolError(
        ErrorKind.memory_limit,
        f"the image is {width}x{height} = {width * height} pixels, over the limit of {limit} "
        "(refused before decoding: possible decompression bomb)",
        hint="Send a smaller image.",
    )


def not_media() -> ToolError:
    """The error for a file that is neither a supported image nor a supported video."""
    return ToolError(
        ErrorKind.invalid_arguments,
        f"the file is not an image or a video this service reads ({SUPPORTED})",
        hint="Upload an image or a video file.",
    )


def normalize_mode(image: Image.Image) -> Image.Image:
    """The image in RGB, RGBA or L (the modes every operation and encoder handles)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if transparent else "RGB")
    if mode == "LA":
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    if mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else pixels * 0
        return Image.fromarray(scaled.round().astype(np.uint8), "L")
    return image.convert("RGB")


# ---------------------------------------------------------------------- videos


def probe_video(data: bytes, container: str, settings: VisionSettings, deadline: float) -> Blob:
    """Index a video: its frames' times and keyframes (by demuxing), and decode its first
    frame to check the codec works."""
    if len(data) > settings.max_video_bytes:
        raise too_large("video", len(data), settings.max_video_bytes)
    try:
        with av.open(io.BytesIO(data), format=container, metadata_errors="ignore") as c:
            if not c.streams.video:
                raise ToolError(
                    ErrorKind.invalid_arguments,
                    "the file has no video stream",
                    hint="Upload a video with pictures (audio-only files are not read).",
                )
            stream = c.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > settings.max_video_pixels:
                raise ToolError(
                    ErrorKind.memory_limit,
                    f"the video's frames are {width}x{height}, over the limit of "
                    f"{settings.max_video_pixels} pixels",
                    hint="Send a downscaled video.",
                )
            if width <= 0 or height <= 0:
                raise ToolError(ErrorKind.invalid_arguments, "the video stream has no size")
            declared = stream.frames
            pts, keys = demux_index(c, stream, settings.max_video_frames, deadline)
            rate = stream.average_rate or stream.guessed_rate
            codec = stream.codec_context.name
            time_base = float(stream.time_base) if stream.time_base else 0.0
            has_audio = bool(c.streams.audio)
            stream_index = stream.index
    except ToolError:
        raise
    except av.FFmpegError as exc:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the video is corrupt or truncated ({exc})",
            hint="Send the complete file.",
        ) from exc
    if not pts or time_base <= 0:
        raise ToolError(
            ErrorKind.invalid_arguments,
            "the video has no frames (an empty or truncated file)",
            hint="Send the complete file.",
        )
    if declared and len(pts) < declared:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the video is truncated: its header lists {declared} frames, only {len(pts)} "
            "are in the file",
            hint="Send the complete file.",
        )
    fps = float(rate) if rate else 0.0
    span = (pts[-1] - pts[0]) * time_base
    if fps <= 0:
        fps = (len(pts) - 1) / span if span > 0 else 1.0
    index = VideoIndex(
        container=container,
        stream=stream_index,
        time_base=time_base,
        pts=tuple(pts),
        keyframes=tuple(keys) or (pts[0],),
        first_pts=pts[0],
    )
    check_first_frame(data, index)
    info = MediaInfo(
        id=content_id("video", data),
        kind="video",
        mime_type=VIDEO_MIME.get(container, "video/octet-stream"),
        format={"mov": "mp4", "matroska": "webm/mkv"}.get(container, container),
        bytes=len(data),
        width=width,
        height=height,
        duration_s=round(span + 1.0 / fps, 6),
        fps=round(fps, 6),
        frames=len(pts),
        codec=codec,
        has_audio=has_audio,
    )
    return Blob(info.id, data, info, video=index)


def demux_index(
    c: av.container.InputContainer, stream: av.VideoStream, limit: int, deadline: float
) -> tuple[list[int], list[int]]:
    """Every frame's pts (display order) and the keyframes' pts, reading packets only."""
    pts: list[int] = []
    keys: list[int] = []
    for n, packet in enumerate(c.demux(stream)):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or packet.size == 0:
            continue
        pts.append(stamp)
        if packet.is_keyframe:
            keys.append(stamp)
        if len(pts) > limit:
            raise ToolError(
                ErrorKind.output_limit,
                f"the video has more than {limit} frames",
                hint="Send a shorter video (or one at a lower frame rate).",
            )
        if n % DEADLINE_EVERY == 0 and time.monotonic() > deadline:
            raise ToolError(
                ErrorKind.timeout,
                "reading the video's index did not finish within the call's timeout",
                hint="Send a shorter video, or the upload again with a larger timeout.",
            )
    pts.sort()
    keys.sort()
    return pts, keys


def check_first_frame(data: bytes, index: VideoIndex) -> None:
    """Decode the first frame: the codec must be known and the stream must start sound."""
    try:
        with av.open(io.BytesIO(data), format=index.container, metadata_errors="ignore") as c:
            stream = c.streams.video[0]
            for _ in c.decode(stream):
                return
    except av.FFmpegError as exc:
        raise ToolError(
            ErrorKind.invalid_arguments,
            f"the video cannot be decoded ({exc})",
            hint="Send an H.264, H.265, VP8/VP9 or AV1 video.",
        ) from exc
    raise ToolError(ErrorKind.invalid_arguments, "the video has no decodable frame")
