"""Request ids: every HTTP request gets one, and every call it carries is logged with it.

The client's ``X-Request-ID`` is taken when it is a usable id
(:func:`toolfleet.core.logs.clean_request_id`), else one is made. :mod:`toolfleet.gateway.edge`
holds it in :data:`toolfleet.core.logs.request_id` while the request is handled (the runtime
copies it into each :class:`~toolfleet.core.protocol.Invocation`, so it travels to the worker
and into the call log), and sends it back in the response's ``X-Request-ID``.
"""

from __future__ import annotations

from starlette.types import Scope
from toolfleet.core import logs

HEADER = logs.REQUEST_ID_HEADER.encode()


def of(scope: Scope) -> str:
    """The request's id: the client's when usable, else a new one."""
    for name, value in scope["headers"]:
        if name == HEADER:
            return logs.clean_request_id(value.decode("latin-1")) or logs.new_request_id()
    return logs.new_request_id()
