"""What the code interpreter cuts or drops is said, with the limit: a figure over the image
limit comes back downscaled with a note (never "(no output)" with no image), a long value is
cut with its length said, and the memory and time limits are named in their messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import call, gateway, text


@asynccontextmanager
async def sandbox_gateway(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway serving the real sandbox tools with ``settings``."""
    registry = ToolRegistry(tools_for(SandboxSettings(pool_size=1, light_pool_size=0, **settings)))
    async with gateway(registry) as client:
        yield client


BIG_FIGURE = """
import matplotlib.pyplot as plt, numpy as np
plt.figure(figsize=(30, 30), dpi=100)
plt.imshow(np.random.default_rng(0).random((3000, 3000)))
plt.show()
"""


async def test_a_big_figure_is_downscaled_and_said() -> None:
    async with sandbox_gateway(max_image_bytes=2 << 20) as http:
        obs = await call(http, "python", {"code": BIG_FIGURE}, timeout_s=120)
        assert obs["ok"], obs["error"]
        images = [p for p in obs["content"] if p["type"] == "image"]
        assert len(images) == 1 and obs["data"]["images"] == 1
        said = text(obs)
        assert "downscaled from" in said and str(2 << 20) in said, said
        assert said != "(no output)"


async def test_limits_are_named() -> None:
    async with sandbox_gateway() as http:
        long = await call(http, "python", {"code": "'x' * 10**6"})
        assert "[cut: the value's repr is 1000002 characters" in text(long)
        slow = await call(http, "python", {"code": "import time; time.sleep(30)"}, timeout_s=2)
        assert "its limit is 2 s" in slow["error"]["message"]
        big = await call(http, "python", {"code": "x = bytearray(10**11)"})
        assert big["error"]["kind"] == "memory_limit"
        assert "MiB" in big["error"]["message"]
