"""The Service base class: tools that share settings, resources and one lifecycle.

A service (sandbox, search, sql, vision, or a plugin) is one object per process that owns its
section of the settings, creates its tools (each tool is given the service when created),
acquires what they share once in :meth:`Service.start` and releases it once in
:meth:`Service.stop`, and tells operators how it is doing in :meth:`Service.status` (``/readyz``
``services``, the ``toolfleet_service_status`` metric). The registry finds installed services
by their ``toolfleet.services`` entry point, which names a Service subclass (or a factory
``f(settings) -> Service``), and the executor starts and stops each service once.

HTTP routes a service adds to the gateway (session files, media, drop-in compatibility routes)
are declared apart, by a ``toolfleet.routes`` entry point of its package: they run in the
gateway, which in distributed mode is another process (and image) than the service's workers,
so the gateway mounts them without creating the service or importing its libraries.
"""

from __future__ import annotations

import abc
from importlib.metadata import EntryPoint
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from toolfleet.core.settings import ServiceSettings
from toolfleet.core.settings import Settings as ProcessSettings  # `Settings` is a class attribute

if TYPE_CHECKING:
    from toolfleet.core.registry import ToolRegistry
    from toolfleet.core.tool import Tool

#: Entry point group naming each installed service (a Service subclass or factory).
SERVICES_GROUP = "toolfleet.services"
#: Entry point group naming the HTTP routers (a FastAPI ``APIRouter`` or a list of them) that
#: a service's package adds to the gateway.
ROUTES_GROUP = "toolfleet.routes"

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class Service(abc.ABC, Generic[SettingsT]):
    """Base class of every service.

    Subclasses set ``name`` and, when they have settings, ``Settings`` (their
    :class:`ServiceSettings` subclass, whose ``section`` is their table of the config file),
    create their tools in :meth:`tools`, and override :meth:`start`, :meth:`stop` and
    :meth:`status` as they need.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[ServiceSettings]] = ServiceSettings  # the base: no settings

    def __init__(self, settings: SettingsT | None = None) -> None:
        """``settings``: this service's section (default: from the environment and the file
        ``TOOLFLEET_CONFIG`` names; :meth:`configured` reads the process's config file)."""
        self.settings: SettingsT = settings if settings is not None else self.Settings()  # type: ignore[assignment]

    @classmethod
    def configured(cls, settings: ProcessSettings) -> Service[Any]:
        """The service as a process's settings configure it: its section of the config file
        that process was started with (``--config`` or ``TOOLFLEET_CONFIG``), under the
        ``TOOLFLEET_<SERVICE>_*`` environment variables."""
        return cls(cast(SettingsT, cls.Settings.from_config(settings.config_file)))

    @abc.abstractmethod
    def tools(self) -> list[Tool[Any]]:
        """Create this service's tools, each given the service (called once per registry)."""

    def use_registry(self, registry: ToolRegistry) -> None:
        """Told the registry that serves this service's tools, when its first tool is
        registered (a service that looks at every tool served, as a tool finder does)."""

    async def start(self) -> None:
        """Acquire what the tools share (pools, indexes, threads), once, before any call."""

    async def stop(self) -> None:
        """Release what :meth:`start` acquired, once, after the last call."""

    def status(self) -> dict[str, Any] | None:
        """What operators see of the service in ``/readyz`` (e.g. the isolation in force);
        numeric fields also become ``toolfleet_service_status`` gauges. None: nothing."""
        return None


def load_service(entry_point: EntryPoint, settings: ProcessSettings) -> Service[Any]:
    """The service an entry point of ``toolfleet.services`` names, configured by
    ``settings``: a Service subclass, or a factory ``f(settings) -> Service``."""
    target = entry_point.load()
    if isinstance(target, type) and issubclass(target, Service):
        service = target.configured(settings)
    elif callable(target):
        service = target(settings)
    else:
        service = None
    if not isinstance(service, Service):
        raise TypeError(
            f"the {SERVICES_GROUP} entry point {entry_point.name!r} ({entry_point.value}) must "
            "name a toolfleet.core.service.Service subclass or a function returning a Service"
        )
    return service
