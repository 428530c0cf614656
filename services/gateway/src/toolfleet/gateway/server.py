"""Run the gateway with uvicorn (``toolfleet serve``)."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI
from toolfleet.core.logs import configure_logging
from toolfleet.core.settings import Settings
from toolfleet.gateway.app import create_app
from toolfleet.gateway.listen import bind


def serve(
    settings: Settings | None = None,
    app: FastAPI | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve the embedded gateway (or ``app``) until interrupted, on ``sock`` (else a socket
    bound here, before the app is built: OSError at once when the address is taken)."""
    settings = settings or Settings()
    configure_logging(settings, "gateway")
    sock = sock or bind(settings.host, settings.port)
    config = uvicorn.Config(
        app or create_app(settings),
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through ours (text or JSON)
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=[sock])
