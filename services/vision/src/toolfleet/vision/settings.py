"""Settings of the vision service: ``TOOLFLEET_VISION_*`` environment variables, or the
``[vision]`` table of the TOML config file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from toolfleet.core.settings import ServiceSettings

MiB = 1 << 20


class VisionSettings(ServiceSettings):
    """Limits, output encoding, coordinate rules and media sources of the vision tools."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_VISION_", extra="forbid")
    section = "vision"

    # ------------------------------------------------------------------ media and limits
    max_image_bytes: int = Field(default=32 * MiB, gt=0, description="Largest image file.")
    max_video_bytes: int = Field(default=256 * MiB, gt=0, description="Largest video file.")
    max_image_pixels: int = Field(
        default=50_000_000,
        gt=0,
        description="Largest image (width x height) decoded; larger ones are refused before "
        "decoding (decompression bombs).",
    )
    max_video_pixels: int = Field(
        default=3840 * 2160, gt=0, description="Largest video frame (width x height)."
    )
    max_video_frames: int = Field(
        default=1_000_000,
        gt=0,
        description="Most frames a video may hold (its index is built at upload).",
    )
    max_session_media: int = Field(
        default=512, gt=0, description="Images and videos one session's lists may hold."
    )
    max_session_bytes: int = Field(
        default=1024 * MiB, gt=0, description="Bytes of distinct media one session may hold."
    )
    max_store_bytes: int = Field(
        default=4096 * MiB,
        gt=0,
        description="Bytes of distinct media the process keeps for all sessions (identical "
        "files are kept once).",
    )
    decoded_cache_mb: int = Field(
        default=512, ge=0, description="Decoded images kept ready for the next call (MiB)."
    )

    # ------------------------------------------------------------------ output
    output_format: Literal["auto", "png", "jpeg"] = Field(
        default="auto",
        description="Encoding of returned images: auto = JPEG for JPEG sources and video "
        "frames, PNG otherwise.",
    )
    jpeg_quality: int = Field(default=90, ge=1, le=95, description="JPEG quality of outputs.")
    png_compress_level: int = Field(
        default=1, ge=0, le=9, description="zlib level of PNG outputs (1: fast, 9: small)."
    )
    max_output_pixels: int = Field(
        default=2048 * 2048,
        gt=0,
        description="Largest returned image; larger results are scaled down to fit.",
    )
    max_response_bytes: int = Field(
        default=32 * MiB,
        gt=0,
        description="Encoded image bytes one call returns at most (video_frames leaves out "
        "the frames past it, and says so; one image is bounded by max_output_pixels).",
    )

    # ------------------------------------------------------------------ crop rules
    min_side: int = Field(
        default=28,
        ge=1,
        description="Crop sides shorter than this are enlarged about the "
        "box centre (Qwen2-VL's 28-pixel patch).",
    )
    max_aspect_ratio: float = Field(
        default=100.0,
        gt=1,
        description="Crop boxes longer than this times their width (or the reverse) are refused.",
    )
    resize_factor: int = Field(
        default=28,
        gt=0,
        description="space='resized': smart_resize's factor (sides are multiples of it).",
    )
    resize_min_pixels: int = Field(
        default=56 * 56, gt=0, description="space='resized': smart_resize's min_pixels."
    )
    resize_max_pixels: int = Field(
        default=28 * 28 * 1280,
        gt=0,
        description="space='resized': smart_resize's max_pixels (the Qwen2-VL/2.5-VL "
        "processor's default).",
    )

    # ------------------------------------------------------------------ video
    max_frames: int = Field(
        default=64, ge=1, description="Most frames one video_frames call returns."
    )
    max_decode_frames: int = Field(
        default=20_000,
        ge=1,
        description="Most frames one call may have to decode (from the keyframes before the "
        "requested times); larger requests are refused before decoding.",
    )

    frame_jobs: int = Field(
        default=2,
        ge=1,
        description="Worker threads one video_frames call may decode on at once (frames after "
        "different keyframes are decoded in parallel).",
    )

    # ------------------------------------------------------------------ sources
    media_root: Path | None = Field(
        default=None,
        description="Directory whose files may be added to a session by path (None: no "
        "server-side paths).",
    )
    url_fetch: bool = Field(default=False, description="Allow adding media by URL.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts URLs may name when url_fetch is on ('*.example.org' matches "
        "sub-domains).",
    )
    url_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one URL fetch.")

    # ------------------------------------------------------------------ execution
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        ge=1,
        description="Threads decoding and encoding at once (the event loop never does).",
    )
