"""Logging: text or JSON lines that name the call being handled.

Context variables hold the HTTP request's id (set by the gateway's request-id middleware from
an ``X-Request-ID`` header, or a new one) and the ids of the call the current task runs (set by
the runtime around a dispatch and by a worker around a call). A filter on the handler copies
them onto every record, so any line written while a call is handled (by the runtime, the
executor, a tool, a worker) names its call, session, trajectory and request, in text as a
``[call=… session=…]`` suffix and in JSON (``TOOLFLEET_LOG_FORMAT=json``) as fields.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar, Token
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from toolfleet.core.protocol import Invocation, Observation
from toolfleet.core.settings import Settings

REQUEST_ID_HEADER = "x-request-id"
"""The HTTP header a request id travels in (both ways)."""

#: The id of the HTTP request being handled (None outside one).
request_id: ContextVar[str | None] = ContextVar("toolfleet_request_id", default=None)

#: (call id, tool, session id, trajectory id, request id) of the call being handled.
_call: ContextVar[tuple[str, str, str | None, str | None, str | None] | None] = ContextVar(
    "toolfleet_call", default=None
)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"
CALL_FIELDS = ("call_id", "tool", "session_id", "trajectory_id", "request_id")
SHORT = {"call_id": "call", "session_id": "session", "trajectory_id": "trajectory"}


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """``value`` if it is a usable request id (1-128 characters of letters, digits and
    ``._:/+=@-``), else None: a client's header never puts arbitrary text into logs."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return None


def current_request_id() -> str | None:
    """The request id of the HTTP request being handled, if any."""
    return request_id.get()


def bind_call(inv: Invocation) -> Token[Any]:
    """Name ``inv`` in every log line of this task until :func:`unbind_call`."""
    return _call.set((inv.call_id, inv.tool, inv.session_id, inv.trajectory_id, inv.request_id))


def unbind_call(token: Token[Any]) -> None:
    """Undo :func:`bind_call`."""
    _call.reset(token)


def context_ids() -> dict[str, str]:
    """The ids of the request and call being handled (only those that are set)."""
    found: dict[str, str] = {}
    call = _call.get()
    if call is not None:
        found = {k: v for k, v in zip(CALL_FIELDS, call, strict=True) if v is not None}
    if "request_id" not in found:
        rid = request_id.get()
        if rid is not None:
            found["request_id"] = rid
    return found


class ContextFilter(logging.Filter):
    """Copies the ids of :func:`context_ids` onto each record (as attributes, for JSON) and
    into ``record.ids`` (a text suffix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context_ids().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        ids = [
            f"{SHORT.get(k, k.removesuffix('_id'))}={v}"
            for k in CALL_FIELDS
            if (v := getattr(record, k, None)) is not None
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return True


class _Json(JsonFormatter):
    """JSON lines without the text suffix."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data.pop("ids", None)


def formatter(log_format: str, static: dict[str, Any] | None = None) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``)."""
    if log_format == "json":
        return _Json(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields=static or {},
            timestamp="time",
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings, role: str, **static: Any) -> None:
    """Log to stderr at ``settings.log_level`` in ``settings.log_format``; every line says
    which ``role`` (gateway, worker) wrote it, plus ``static`` fields (e.g. the worker id)
    in JSON. Replaces the root logger's handlers (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter(settings.log_format, {"role": role, **static}))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


def log_call(logger: logging.Logger, inv: Invocation, obs: Observation, seconds: float) -> None:
    """One line for a finished call (``log_calls``), with its ids, outcome and timing."""
    outcome = "ok" if obs.ok or obs.error is None else obs.error.kind.value
    logger.info(
        "call %s %s %.2f ms",
        inv.tool,
        outcome,
        seconds * 1000.0,
        extra={
            k: v
            for k, v in {
                "call_id": inv.call_id,
                "tool": inv.tool,
                "session_id": inv.session_id,
                "trajectory_id": inv.trajectory_id,
                "request_id": inv.request_id,
                "tenant": inv.tenant,
                "outcome": outcome,
                "ms": round(seconds * 1000.0, 3),
                "queue_ms": round(obs.usage.queue_ms, 3),
                "run_ms": round(obs.usage.run_ms, 3),
            }.items()
            if v is not None
        },
    )
