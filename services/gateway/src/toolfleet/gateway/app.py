"""Build the gateway's FastAPI app around a runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import entry_points

from fastapi import APIRouter, FastAPI
from starlette.routing import Route
from toolfleet.core import __version__
from toolfleet.core.dispatch import Dispatcher, InProcessDispatcher
from toolfleet.core.redis_dispatch import RedisDispatcher
from toolfleet.core.registry import ToolRegistry
from toolfleet.core.runtime import Runtime
from toolfleet.core.service import ROUTES_GROUP
from toolfleet.core.settings import Settings
from toolfleet.gateway import docs_page, fast_routes, openapi_docs
from toolfleet.gateway.edge import EdgeMiddleware
from toolfleet.gateway.errors import install_error_handlers
from toolfleet.gateway.mcp_endpoint import MCPEndpoint
from toolfleet.gateway.responses import SafeJSONResponse
from toolfleet.gateway.routes import health, sessions, tools, trajectories


def service_routers() -> list[APIRouter]:
    """The routers installed services add to the gateway (session files, media, drop-in
    compatibility routes): every ``toolfleet.routes`` entry point, by name. A route of a
    service this gateway does not serve answers that the service is not served."""
    found: list[APIRouter] = []
    for ep in sorted(entry_points(group=ROUTES_GROUP), key=lambda e: e.name):
        target = ep.load()
        routers = list(target) if isinstance(target, list | tuple) else [target]
        for router in routers:
            if not isinstance(router, APIRouter):
                raise TypeError(
                    f"the {ROUTES_GROUP} entry point {ep.name!r} ({ep.value}) must name a "
                    f"FastAPI APIRouter or a list of them, not {type(router).__name__}"
                )
        found += routers
    return found


def create_app(
    settings: Settings | None = None,
    *,
    registry: ToolRegistry | None = None,
    dispatcher: Dispatcher | None = None,
) -> FastAPI:
    """The gateway app. By default it serves every installed tool in-process (embedded), or,
    with ``settings.redis_url``, sends every call to workers over Redis (distributed); pass
    ``registry`` to serve chosen tools in-process, or ``dispatcher`` to send calls elsewhere."""
    settings = settings or Settings()
    if dispatcher is None:
        if settings.redis_url and registry is None:
            dispatcher = RedisDispatcher(settings)
        else:
            dispatcher = InProcessDispatcher(registry or ToolRegistry.discover(settings))
    runtime = Runtime(settings, dispatcher)
    mcp = MCPEndpoint(settings, runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            async with mcp.running():
                app.state.ready = True
                yield
        finally:
            app.state.ready = False
            await runtime.stop()

    app = FastAPI(
        title="toolfleet",
        version=__version__,
        description="Sandboxed tool execution for reinforcement learning of tool-using "
        "language models.",
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        docs_url=None,  # served from local assets below, never from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.ready = False
    install_error_handlers(app)
    docs_page.install(app)
    for router in [tools.router, sessions.router, trajectories.router, health.router]:
        app.include_router(router)
    for router in service_routers():
        app.include_router(router)
    fast_routes.install(app, tools.FAST_ROUTES)
    openapi_docs.install(app)  # after the fast routes: their entries get examples too
    # exactly /mcp (a Mount would redirect /mcp to /mcp/)
    app.router.routes.append(Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]))
    app.add_middleware(
        EdgeMiddleware,
        max_bytes=settings.max_body_bytes,
        paths=settings.path_body_bytes,
        allowed_origins=settings.mcp_allowed_origins,
    )
    return app
