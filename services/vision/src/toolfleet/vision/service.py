"""What the vision tools share: the media store, the decoded-image cache, the worker threads,
and the steps every tool takes (find the session's media, add a result to it)."""

from __future__ import annotations

import base64
from typing import Any

from PIL import Image
from toolfleet.core.protocol import ErrorKind, ImagePart
from toolfleet.core.service import Service
from toolfleet.core.tool import ArgsT, CallContext, Tool, ToolError
from toolfleet.vision.cache import DecodedImages
from toolfleet.vision.encoding import Encoded
from toolfleet.vision.probe import decode_image, probe
from toolfleet.vision.records import ImageRef, MediaInfo
from toolfleet.vision.session import SessionMedia
from toolfleet.vision.settings import VisionSettings
from toolfleet.vision.store import Blob, MediaStore
from toolfleet.vision.workers import WorkPool

STATE_KEY = "vision.media"


class Vision(Service[VisionSettings]):
    """The vision service (one per process): the media store, the decoded-image cache and
    the worker threads its tools share."""

    name = "vision"
    Settings = VisionSettings

    def __init__(self, settings: VisionSettings | None = None) -> None:
        super().__init__(settings)
        settings = self.settings
        self.cache = DecodedImages(settings.decoded_cache_mb << 20)
        self.store = MediaStore(settings.max_store_bytes, on_drop=self.cache.discard)
        self.pool = WorkPool(settings.workers)

    def tools(self) -> list[Tool]:
        """image_crop, image_rotate, image_resize, image_flip, image_draw_boxes, video_info,
        video_frames, and media (hidden: the REST media API)."""
        from toolfleet.vision.annotate import ImageDrawBoxes
        from toolfleet.vision.crop import ImageCrop
        from toolfleet.vision.media import MediaTool
        from toolfleet.vision.transforms import ImageFlip, ImageResize, ImageRotate
        from toolfleet.vision.video import VideoFrames, VideoInfo

        return [
            ImageCrop(self),
            ImageRotate(self),
            ImageResize(self),
            ImageFlip(self),
            ImageDrawBoxes(self),
            VideoInfo(self),
            VideoFrames(self),
            MediaTool(self),
        ]

    async def start(self) -> None:
        """Start the worker threads."""
        self.pool.start()

    async def stop(self) -> None:
        """Stop the worker threads."""
        self.pool.stop()

    def status(self) -> dict[str, Any]:
        """What /readyz shows under services.vision."""
        s = self.settings
        return {
            "media": len(self.store),
            "media_bytes": self.store.bytes,
            "decoded_cached": len(self.cache),
            "threads": self.pool.workers,
            "threads_busy": self.pool.busy,
            "media_root": str(s.media_root) if s.media_root else None,
            "url_fetch": s.url_fetch,
        }

    # ------------------------------------------------------------------ session media

    def media(self, ctx: CallContext) -> SessionMedia:
        """The session's media (created empty on first use)."""
        found: SessionMedia | None = ctx.state(STATE_KEY)
        if found is None:
            s = self.settings
            found = SessionMedia(self.store, s.max_session_media, s.max_session_bytes)
            ctx.set_state(STATE_KEY, found)  # refuses calls without a session
        return found

    def existing_media(self, ctx: CallContext) -> SessionMedia:
        """The session's media; a clear diagnostic when it has none."""
        if ctx.session_id is None:
            raise ToolError(
                ErrorKind.invalid_arguments,
                "this tool works on a session's images and videos, and the call has no session",
                hint="Send the call with the session_id or trajectory_id the media was "
                "uploaded to.",
            )
        return self.media(ctx)

    async def add_upload(self, ctx: CallContext, data: bytes) -> MediaInfo:
        """Check ``data`` in a worker thread, then add it to the session's lists."""
        media = self.media(ctx)
        probed = await self.pool.run(ctx.deadline, probe, data, self.settings, ctx.deadline)
        known = self.store.get(probed.blob.id) is not None
        if probed.image is not None and not known:
            self.cache.put(probed.blob.id, probed.image)
        try:
            return media.add(probed.blob)
        except ToolError:
            if not known:
                self.cache.discard(probed.blob.id)
            raise

    def add_result(
        self, media: SessionMedia, encoded: Encoded, image: Image.Image | None
    ) -> ImageRef:
        """Store an encoded result and append it to the session's image list. ``image`` (the
        pixels that were encoded) is cached when the encoding is lossless."""
        blob_id = encoded.id
        info = MediaInfo(
            id=blob_id,
            kind="image",
            mime_type=encoded.mime_type,
            format=encoded.format.upper(),
            bytes=len(encoded.data),
            width=encoded.width,
            height=encoded.height,
            mode=image.mode if image is not None else None,
        )
        added = media.add(Blob(blob_id, encoded.data, info))
        if image is not None and encoded.format == "png":
            self.cache.put(blob_id, image)
        return ImageRef(
            id=added.id,
            index=added.index,
            width=added.width,
            height=added.height,
            mime_type=added.mime_type,
            bytes=added.bytes,
        )

    # ------------------------------------------------------------------ in worker threads

    def decoded(self, blob: Blob) -> Image.Image:
        """The blob's pixels (from the cache, or decoded and cached). Thread-safe."""
        image = self.cache.get(blob.id)
        if image is None:
            image, _ = decode_image(blob.data, self.settings.max_image_pixels)
            self.cache.put(blob.id, image)
        return image


def image_part(encoded: Encoded, b64: str, ref: ImageRef) -> ImagePart:
    """The observation part of a returned image."""
    return ImagePart(
        mime_type=encoded.mime_type,
        data=b64,
        width=encoded.width,
        height=encoded.height,
        ref=ref.id,
    )


def b64(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


class VisionTool(Tool[ArgsT]):
    """A tool of the vision service (they share one :class:`Vision`)."""

    stateful = True
    cost = 1.0

    def __init__(self, vision: Vision) -> None:
        super().__init__(vision)
        self.vision = vision
