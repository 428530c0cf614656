"""Run the gateway with uvicorn (``toolfleet serve``)."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI
from toolfleet.core.logs import configure_logging
from toolfleet.core.settings import Settings
from toolfleet.gateway.app import create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, made before anything warms up, so that a port in
    use is said at once (OSError naming the address), not after the services started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno,
            f"cannot listen on {host}:{port}: {exc.strerror} (another gateway running? "
            "choose a port with --port or TOOLFLEET_PORT)",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings | None = None, app: FastAPI | None = None) -> None:
    """Serve the embedded gateway (or ``app``) until interrupted. Raises OSError at once
    when the address cannot be bound."""
    settings = settings or Settings()
    configure_logging(settings, "gateway")
    sock = bind(settings.host, settings.port)
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
