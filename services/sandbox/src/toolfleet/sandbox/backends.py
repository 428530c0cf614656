"""Choose the backend named by the settings."""

from __future__ import annotations

from toolfleet.sandbox.backend import Backend
from toolfleet.sandbox.settings import SandboxSettings


def make_backend(settings: SandboxSettings) -> Backend:
    """The backend ``settings.backend`` names."""
    if settings.backend == "docker":
        from toolfleet.sandbox.docker import DockerBackend

        return DockerBackend(settings)
    from toolfleet.sandbox.local import LocalBackend

    return LocalBackend(settings)
