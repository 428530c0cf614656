"""Run the gateway with uvicorn (``toolfleet serve``)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from toolfleet.core.logs import configure_logging
from toolfleet.core.settings import Settings
from toolfleet.gateway.app import create_app


def serve(settings: Settings | None = None, app: FastAPI | None = None) -> None:
    """Serve the embedded gateway (or ``app``) until interrupted."""
    settings = settings or Settings()
    configure_logging(settings, "gateway")
    uvicorn.run(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through ours (text or JSON)
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
