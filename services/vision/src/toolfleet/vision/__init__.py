"""toolfleet's vision service: image crop/zoom/rotate and video frame extraction.

The service is :class:`toolfleet.vision.service.Vision`, named by the ``toolfleet.services``
entry point ``vision``; adding a tool is one module and one line in its ``tools()`` list. Its
HTTP routes (session media) are in :mod:`toolfleet.vision.routes`, named by the
``toolfleet.routes`` entry point. This module stays light: the gateway imports the package to
mount those routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolfleet.core.tool import Tool
    from toolfleet.vision.settings import VisionSettings


def tools_for(settings: VisionSettings) -> list[Tool]:
    """The vision tools over one new service of ``settings`` (store, cache, threads)."""
    from toolfleet.vision.service import Vision

    return Vision(settings).tools()
