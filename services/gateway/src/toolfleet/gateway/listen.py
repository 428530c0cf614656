"""The gateway's listening socket, bound before anything heavy is imported or warmed up, so
that a port in use is said in a second, not after the services started. Imports nothing
but the standard library (``toolfleet serve`` binds with it before importing the app)."""

from __future__ import annotations

import socket


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
