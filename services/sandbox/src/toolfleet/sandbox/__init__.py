"""toolfleet's sandbox service: Python and bash interpreters in isolated, stateful sessions.

Its tools are registered with the ``toolfleet.services`` entry point named ``sandbox``, which
points at :func:`tools`. Adding a tool here is one module and one line in that list.
"""

from __future__ import annotations

from toolfleet.core.settings import Settings
from toolfleet.core.tool import Tool


def tools(settings: Settings) -> list[Tool]:
    """The tools this service serves: python, bash and workspace (files API)."""
    from toolfleet.sandbox.interpreters import tools_for
    from toolfleet.sandbox.settings import SandboxSettings

    return tools_for(SandboxSettings())
