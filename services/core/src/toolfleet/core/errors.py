"""Every error of toolfleet's core, in two kinds.

- :class:`ToolfleetError` and its subclasses: what the *caller* must act on (an unknown tool
  or session, overload, a lost worker). Each carries the HTTP ``status``, the ``code`` of the
  JSON error body, the fields it adds to that body, and the ``Retry-After`` to send; the
  gateway answers all of them with one handler, ``{"error": {"code", "message", ...}}``.
- :class:`ToolError`: a *tool's* failure, raised inside ``Tool.call``. It is never an HTTP
  error: the executor turns it into an observation with its diagnostic, for the model.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar

from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind


class ToolfleetError(Exception):
    """Base of the errors a caller must act on; each subclass sets ``status`` and ``code``."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    retry_after_s: int | None = None  # set: the caller may retry after this many seconds

    def message(self) -> str:
        """The body's ``message``."""
        return str(self)

    def details(self) -> dict[str, Any]:
        """Fields the JSON error body adds after ``code`` and ``message``."""
        return {}

    def headers(self) -> dict[str, str] | None:
        """The response headers: ``Retry-After`` when the caller may retry."""
        if self.retry_after_s is None:
            return None
        return {"Retry-After": str(self.retry_after_s)}


class UnknownToolError(ToolfleetError, LookupError):
    """No tool of that name is registered (or served)."""

    status = 404
    code = "unknown_tool"

    def __init__(self, name: str, available: list[str], removed: str | None = None) -> None:
        self.closest = closest_names(name, available)
        guess = f"; did you mean {' or '.join(map(repr, self.closest))}?" if self.closest else ""
        why = f" ({removed})" if removed else ""
        super().__init__(f"unknown tool {name!r}{why}{guess}")
        self.name = name
        self.available = available
        self.removed = removed  # why a tool served before is no longer served

    def details(self) -> dict[str, Any]:
        found: dict[str, Any] = {"available": self.available, "closest": self.closest}
        if self.removed:
            found["removed"] = self.removed
        return found


def closest_names(name: str, known: list[str], n: int = 3) -> list[str]:
    """The known names closest to a misspelt one (``pyhton`` → ``python``), best first."""
    lowered = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[f] for f in found]


class SessionNotFoundError(ToolfleetError, LookupError):
    """No live session with that id belongs to the caller."""

    status = 404
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found (never existed, ended or expired)")
        self.session_id = session_id

    def details(self) -> dict[str, Any]:
        return {"session_id": self.session_id}


class SessionExpiredError(SessionNotFoundError):
    """The session's idle TTL passed and it was ended: its state (variables, files) is gone.

    A call is answered with a ``session_expired`` observation (:func:`expired_diagnostic`),
    so the model is told; describing or ending the session is a 404 like any ended one.
    """

    code = "session_expired"

    def __init__(self, session_id: str, trajectory_id: str | None = None) -> None:
        super().__init__(session_id)
        self.trajectory_id = trajectory_id
        of = f" of trajectory {trajectory_id!r}" if trajectory_id else ""
        self.args = (
            f"session {session_id!r}{of} expired (idle longer than its TTL) and was ended; its "
            "state (variables, files, registered images) is lost",
        )


class IdempotencyConflictError(ToolfleetError, ValueError):
    """An idempotency key was sent again with a different call (tool or arguments)."""

    status = 409
    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used for a different call (another tool, "
            "arguments or session); use a new key for a new call"
        )
        self.key = key

    def details(self) -> dict[str, Any]:
        return {"idempotency_key": self.key}


class TrajectoryNotFoundError(ToolfleetError, LookupError):
    """No call or session was ever booked to that trajectory."""

    status = 404
    code = "trajectory_not_found"

    def __init__(self, trajectory_id: str) -> None:
        super().__init__(f"trajectory {trajectory_id!r} not found")
        self.trajectory_id = trajectory_id

    def details(self) -> dict[str, Any]:
        return {"trajectory_id": self.trajectory_id}


class SessionLimitError(ToolfleetError, RuntimeError):
    """The process holds as many sessions as it may."""

    status = 503
    code = "session_limit"
    retry_after_s = 5


class OverloadedError(ToolfleetError, RuntimeError):
    """Too many calls are in flight or queued; the caller should retry after
    ``retry_after_s``."""

    status = 429
    code = "overloaded"

    def __init__(self, what: str, retry_after_s: int) -> None:
        super().__init__(what)
        self.retry_after_s = retry_after_s

    def message(self) -> str:
        return f"too many calls in flight or queued ({self}); retry later"

    def details(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}


class DispatchError(ToolfleetError, RuntimeError):
    """A session's fork or end could not be carried out (its worker is gone, or no worker
    answered); the caller may retry."""

    status = 503
    code = "unavailable"
    retry_after_s = 1


class ForkFailedError(ToolfleetError, RuntimeError):
    """A session's state could not be copied (its interpreter could not fork, or what it
    reported of the fork was refused); the session itself is unchanged."""

    status = 409
    code = "fork_failed"


class ToolError(Exception):
    """Raised by a tool to fail the call with a diagnostic the model can learn from (an
    observation with ``ok: false``, not an HTTP error)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.diagnostic = ErrorDiagnostic(
            kind=kind, message=message, detail=detail, hint=hint, retryable=retryable
        )
