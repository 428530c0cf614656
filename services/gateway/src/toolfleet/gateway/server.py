"""Run the gateway with uvicorn (``toolfleet serve``).

SIGTERM drains: the gateway stops taking connections, ``/readyz`` says it is stopping, and
the requests in flight are answered (up to ``shutdown_grace_s``) before the runtime stops.
In distributed mode every session lives on in Redis, so the other replicas serve it; a
client whose connection was cut retries there (with its idempotency key, nothing runs twice).
"""

from __future__ import annotations

import logging
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI
from toolfleet.core.logs import configure_logging
from toolfleet.core.settings import Settings
from toolfleet.gateway.app import create_app
from toolfleet.gateway.listen import bind

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, marking the app not ready as soon as a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.toolfleet_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            log.info("signal %d: draining (no new connections; answering those in flight)", sig)
        self.toolfleet_app.state.ready = False
        super().handle_exit(sig, frame)


def serve(
    settings: Settings | None = None,
    app: FastAPI | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve the gateway (or ``app``) until interrupted, on ``sock`` (else a socket bound
    here, before the app is built: OSError at once when the address is taken); SIGTERM
    drains."""
    settings = settings or Settings()
    configure_logging(settings, "gateway")
    sock = sock or bind(settings.host, settings.port)
    app = app or create_app(settings)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers go through ours (text or JSON)
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
    )
    DrainingServer(config, app).run(sockets=[sock])
