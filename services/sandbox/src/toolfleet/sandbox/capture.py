"""Output capture inside a kernel: capped stdout/stderr and rich display (images).

Runs in the sandbox. Everything here is plain Python so the zygote stays light; matplotlib
and PIL are used only when the model's code imported them.
"""

from __future__ import annotations

import base64
import io
import sys
from typing import Any


class OutputLimitError(BaseException):
    """Raised into the model's code when its output passes the cap. A BaseException, so a
    bare ``except Exception`` in that code does not swallow it."""


class OutputBudget:
    """Bytes of stdout plus stderr one call may produce."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = False


class CappedWriter(io.TextIOBase):
    """A text stream that keeps what is written until the shared budget runs out."""

    def __init__(self, budget: OutputBudget, name: str) -> None:
        self.budget = budget
        self.name = name
        self.parts: list[str] = []

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.budget.limit - self.budget.used
        if len(text) > room:
            self.parts.append(text[: max(room, 0)])
            self.budget.used = self.budget.limit
            self.budget.exceeded = True
            raise OutputLimitError(f"output passed the limit of {self.budget.limit} characters")
        self.parts.append(text)
        self.budget.used += len(text)
        return len(text)

    def add(self, text: str) -> None:
        """Append output that did not come through write() (e.g. from subprocesses)."""
        room = self.budget.limit - self.budget.used
        if len(text) > room:
            text = text[: max(room, 0)]
            self.budget.exceeded = True
        self.parts.append(text)
        self.budget.used += len(text)

    def getvalue(self) -> str:
        return "".join(self.parts)


class Display:
    """Collects rich outputs (images) of one call, in order."""

    def __init__(self, max_images: int, max_image_bytes: int) -> None:
        self.images: list[dict[str, Any]] = []
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self.dropped = 0

    def show(self, obj: Any) -> bool:
        """Display ``obj`` if it is an image or a figure; True when it was."""
        png = _png_of(obj)
        if png is None:
            return False
        data, width, height = png
        if len(self.images) >= self.max_images or len(data) > self.max_image_bytes:
            self.dropped += 1
            return True
        self.images.append(
            {
                "mime_type": "image/png",
                "data": base64.b64encode(data).decode(),
                "width": width,
                "height": height,
            }
        )
        return True

    def flush_figures(self) -> None:
        """Display and close every open matplotlib figure."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in plt.get_fignums():
            self.show(plt.figure(num))
        plt.close("all")


def _png_of(obj: Any) -> tuple[bytes, int, int] | None:
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(obj, pil.Image):
        image = (
            obj if obj.mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16") else obj.convert("RGBA")
        )
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue(), obj.width, obj.height
    figure_mod = sys.modules.get("matplotlib.figure")
    if figure_mod is not None and isinstance(obj, figure_mod.Figure):
        buf = io.BytesIO()
        obj.savefig(buf, format="png", bbox_inches="tight")
        data = buf.getvalue()
        # width and height from the PNG header (IHDR)
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        return data, width, height
    return None
