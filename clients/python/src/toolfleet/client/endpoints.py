"""REST v1, as plans: what to send for each endpoint and how to read the answer, with no I/O.

The sync and the async client execute the same plans, so an endpoint's path, body, parsing and
diagnostic-retry rule are written once. A plan's ``retry`` builds the follow-up plan when the
answer holds retryable observations (a single call sent again; in a batch, only its retryable
calls, merged back in place); the client decides whether and when to send it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from toolfleet.client.models import FileInfo, FileListing
from toolfleet.protocol import (
    BatchResponse,
    CallRequest,
    Observation,
    SessionCreate,
    SessionFork,
    SessionInfo,
    ToolCall,
    ToolSpec,
    TrajectoryUsage,
)

T = TypeVar("T")

#: Added to a call's own ``timeout_s`` for the HTTP read timeout (queueing, transfer).
TIMEOUT_GRACE_S = 30.0


@dataclass
class Plan(Generic[T]):
    """One HTTP request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: dict[str, str] | None = None
    content: bytes | None = None
    timeout_s: float | None = None
    """Read timeout for this request (None: the client's)."""
    retry: Callable[[T], Plan[T] | None] | None = None
    """The follow-up plan when the answer holds retryable observations, else None."""
    retry_kinds: Callable[[T], tuple[str, ...]] | None = None
    """The error kinds that made ``retry`` return a plan (for :class:`RetryEvent`)."""


def segment(value: str) -> str:
    """``value`` escaped as one path segment."""
    return quote(value, safe="")


def _json(model: Any) -> Callable[[httpx.Response], Any]:
    return lambda response: model.model_validate_json(response.content)


def _retryable(obs: Observation) -> bool:
    return not obs.ok and obs.error is not None and obs.error.retryable


# --------------------------------------------------------------------------- tools and calls


def tools() -> Plan[list[ToolSpec]]:
    """``GET /v1/tools``."""
    return Plan(
        "GET",
        "/v1/tools",
        lambda r: [ToolSpec.model_validate(t) for t in r.json()["tools"]],
    )


def openai_tools() -> Plan[list[dict[str, Any]]]:
    """``GET /v1/tools?format=openai``."""
    return Plan("GET", "/v1/tools", lambda r: r.json(), params={"format": "openai"})


def call_request(
    arguments: Mapping[str, Any] | None,
    *,
    session_id: str | None = None,
    trajectory_id: str | None = None,
    timeout_s: float | None = None,
    idempotency_key: str | None = None,
) -> CallRequest:
    """The body of a call (validated here, so a bad option fails before it is sent)."""
    return CallRequest(
        arguments=dict(arguments or {}),
        session_id=session_id,
        trajectory_id=trajectory_id,
        timeout_s=timeout_s,
        idempotency_key=idempotency_key,
    )


def _read_timeout(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else timeout_s + TIMEOUT_GRACE_S


def call(tool: str, request: CallRequest, attempt: int = 1) -> Plan[Observation]:
    """``POST /v1/tools/{tool}/call``; sent again while the observation is retryable."""
    sent = request  # the same idempotency key: the gateway forgets retryable failures

    def retry(obs: Observation) -> Plan[Observation] | None:
        return call(tool, request, attempt + 1) if _retryable(obs) else None

    return Plan(
        "POST",
        f"/v1/tools/{segment(tool)}/call",
        _json(Observation),
        json=sent.model_dump(exclude_none=True),
        timeout_s=_read_timeout(request.timeout_s),
        retry=retry,
        retry_kinds=lambda obs: (obs.error.kind.value,) if obs.error else (),
    )


def tool_call(call: ToolCall | Mapping[str, Any], **defaults: Any) -> ToolCall:
    """A :class:`ToolCall` from a model or a mapping, with ``defaults`` (session_id,
    trajectory_id, timeout_s) filled in where the call leaves them unset."""
    if isinstance(call, ToolCall):
        tc = call
    elif hasattr(call, "to_tool_call"):  # an adapter's ParsedCall
        tc = call.to_tool_call()
    else:
        tc = ToolCall.model_validate(dict(call))
    missing = {k: v for k, v in defaults.items() if v is not None and getattr(tc, k) is None}
    return tc.model_copy(update=missing) if missing else tc


def batch(calls: Iterable[ToolCall]) -> Plan[list[Observation]]:
    """``POST /v1/calls``; observations in request order. Retryable observations are sent
    again as a smaller batch and merged back in place."""
    calls = list(calls)
    return _batch(calls, list(range(len(calls))), [], 1)


def _batch(
    calls: list[ToolCall], positions: list[int], done: list[Observation], attempt: int
) -> Plan[list[Observation]]:
    sent = [calls[p] for p in positions]

    def parse(response: httpx.Response) -> list[Observation]:
        got = BatchResponse.model_validate_json(response.content).observations
        if len(got) != len(positions):
            raise ValueError(f"batch answered {len(got)} observations for {len(positions)}")
        merged = list(done) if done else list(got)
        for p, obs in zip(positions, got, strict=True):
            merged[p] = obs
        return merged

    def again(merged: list[Observation]) -> list[int]:
        return [p for p in positions if _retryable(merged[p])]

    def retry(merged: list[Observation]) -> Plan[list[Observation]] | None:
        left = again(merged)
        return _batch(calls, left, merged, attempt + 1) if left else None

    timeouts = [c.timeout_s for c in sent if c.timeout_s is not None]
    return Plan(
        "POST",
        "/v1/calls",
        parse,
        json={"calls": [c.model_dump(exclude_none=True) for c in sent]},
        timeout_s=_read_timeout(max(timeouts)) if timeouts else None,
        retry=retry,
        retry_kinds=lambda merged: tuple(
            sorted({e.kind.value for p in again(merged) if (e := merged[p].error) is not None})
        ),
    )


# --------------------------------------------------------------------------- sessions


def create_session(body: SessionCreate) -> Plan[SessionInfo]:
    """``POST /v1/sessions``."""
    return Plan("POST", "/v1/sessions", _json(SessionInfo), json=body.model_dump(exclude_none=True))


def get_session(session_id: str) -> Plan[SessionInfo]:
    """``GET /v1/sessions/{id}``."""
    return Plan("GET", f"/v1/sessions/{segment(session_id)}", _json(SessionInfo))


def delete_session(session_id: str) -> Plan[SessionInfo]:
    """``DELETE /v1/sessions/{id}``."""
    return Plan("DELETE", f"/v1/sessions/{segment(session_id)}", _json(SessionInfo))


def fork_session(session_id: str, body: SessionFork) -> Plan[SessionInfo]:
    """``POST /v1/sessions/{id}/fork``."""
    return Plan(
        "POST",
        f"/v1/sessions/{segment(session_id)}/fork",
        _json(SessionInfo),
        json=body.model_dump(exclude_none=True),
    )


# --------------------------------------------------------------------------- files


def _file_path(session_id: str, path: str) -> str:
    clean = path.lstrip("/")
    if not clean:
        raise ValueError("a file path is needed")
    return f"/v1/sessions/{segment(session_id)}/files/{quote(clean, safe='/')}"


def upload(session_id: str, path: str, data: bytes | str) -> Plan[FileInfo]:
    """``PUT /v1/sessions/{id}/files/{path}`` (text is sent as UTF-8)."""
    content = data.encode() if isinstance(data, str) else bytes(data)
    return Plan("PUT", _file_path(session_id, path), _json(FileInfo), content=content)


def download(session_id: str, path: str) -> Plan[bytes]:
    """``GET /v1/sessions/{id}/files/{path}``: the file's bytes."""
    return Plan("GET", _file_path(session_id, path), lambda r: r.content)


def list_files(session_id: str) -> Plan[FileListing]:
    """``GET /v1/sessions/{id}/files``."""
    return Plan("GET", f"/v1/sessions/{segment(session_id)}/files", _json(FileListing))


# --------------------------------------------------------------------------- trajectories


def usage(trajectory_id: str) -> Plan[TrajectoryUsage]:
    """``GET /v1/trajectories/{id}/usage``."""
    return Plan("GET", f"/v1/trajectories/{segment(trajectory_id)}/usage", _json(TrajectoryUsage))


def release(trajectory_id: str) -> Plan[TrajectoryUsage]:
    """``DELETE /v1/trajectories/{id}``: end its sessions, the final usage."""
    return Plan("DELETE", f"/v1/trajectories/{segment(trajectory_id)}", _json(TrajectoryUsage))


# --------------------------------------------------------------------------- operations


def health() -> Plan[dict[str, Any]]:
    """``GET /healthz``."""
    return Plan("GET", "/healthz", lambda r: r.json())


def readiness() -> Plan[dict[str, Any]]:
    """``GET /readyz`` (503 while starting or stopping)."""
    return Plan("GET", "/readyz", lambda r: r.json())
