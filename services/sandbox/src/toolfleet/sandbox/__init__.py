"""toolfleet's sandbox service: Python and bash interpreters in isolated, stateful sessions.

The service is :class:`toolfleet.sandbox.service.Sandbox`, named by the ``toolfleet.services``
entry point ``sandbox``; adding a tool is one module and one line in its ``tools()`` list. Its
HTTP routes (session files, SandboxFusion's ``/run_code``, verl-tool's ``/get_observation``)
are in :mod:`toolfleet.sandbox.routes`, named by the ``toolfleet.routes`` entry point. This
module stays light: the gateway imports the package to mount those routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from toolfleet.core.tool import Tool
    from toolfleet.sandbox.settings import SandboxSettings


def tools_for(settings: SandboxSettings) -> list[Tool]:
    """The sandbox's tools over one shared pool (a new :class:`Sandbox` of ``settings``)."""
    from toolfleet.sandbox.service import Sandbox

    return Sandbox(settings).tools()
