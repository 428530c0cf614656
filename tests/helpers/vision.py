"""Helpers of the vision tests: the shared data, a gateway serving the vision tools, uploads,
calls, and decoding the images observations carry."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from toolfleet.core.registry import ToolRegistry
from toolfleet.vision import tools_for
from toolfleet.vision.settings import VisionSettings

from tests import helpers
from tests.helpers import SHARED_DATA, gateway

DATA = SHARED_DATA / "vision"
IMAGES = DATA / "images"
VIDEOS = DATA / "videos"


def need_data() -> None:
    """Fail loudly (not skip) when the shared data is missing."""
    if not (IMAGES / "rocket.jpg").is_file() or not (VIDEOS / "car-detection.mp4").is_file():
        pytest.fail(f"the vision tests need the shared data at {DATA}")


@asynccontextmanager
async def vision_gateway(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway serving the vision tools with these VisionSettings."""
    registry = ToolRegistry(tools_for(VisionSettings(**settings)))
    async with gateway(registry, max_body_bytes=64 << 20) as client:
        yield client


async def upload(client: httpx.AsyncClient, sid: str, what: Path | bytes) -> httpx.Response:
    """PUT a file (or bytes) into the session's media."""
    data = what.read_bytes() if isinstance(what, Path) else what
    return await client.put(f"/v1/sessions/{sid}/media", content=data)


async def uploaded(client: httpx.AsyncClient, sid: str, what: Path | bytes) -> dict[str, Any]:
    """Upload that must succeed; the media record."""
    r = await upload(client, sid, what)
    assert r.status_code == 201, r.text
    return r.json()


async def call(
    client: httpx.AsyncClient,
    tool: str,
    sid: str | None,
    timeout_s: float | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """Call a tool in the session (``arguments`` as keywords); the observation."""
    fields: dict[str, Any] = {}
    if sid is not None:
        fields["session_id"] = sid
    if timeout_s is not None:
        fields["timeout_s"] = timeout_s
    return await helpers.call(client, tool, arguments, **fields)


async def ok(client: httpx.AsyncClient, tool: str, sid: str, **arguments: Any) -> dict[str, Any]:
    """A call that must succeed."""
    obs = await call(client, tool, sid, **arguments)
    assert obs["ok"], obs["error"]
    return obs


def images_of(obs: dict[str, Any]) -> list[dict[str, Any]]:
    """The image parts of an observation."""
    return [p for p in obs["content"] if p["type"] == "image"]


def decode(part: dict[str, Any]) -> Image.Image:
    """An image part's pixels (and checks that its declared size is true)."""
    image = Image.open(io.BytesIO(base64.b64decode(part["data"])))
    image.load()
    assert image.size == (part["width"], part["height"])
    assert Image.MIME[image.format] == part["mime_type"]
    return image


def image_of(obs: dict[str, Any]) -> Image.Image:
    """The one image an observation returns."""
    parts = images_of(obs)
    assert len(parts) == 1, obs
    return decode(parts[0])


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    """True when two images have the same size, mode and pixels."""
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


def opened(path: Path) -> Image.Image:
    """An image of the shared data as Pillow decodes it."""
    with Image.open(path) as image:
        image.load()
        return image.copy()
