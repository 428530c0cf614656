"""Run the gateway with uvicorn (``toolfleet serve``)."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI
from toolfleet.core.settings import Settings
from toolfleet.gateway.app import create_app


def serve(settings: Settings | None = None, app: FastAPI | None = None) -> None:
    """Serve the embedded gateway (or ``app``) until interrupted."""
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        app or create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
