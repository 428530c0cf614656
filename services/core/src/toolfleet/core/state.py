"""Per-session tool state kept by the process that runs the tools.

A tool keeps what must survive between calls of one session (a live interpreter, a bound
database, registered images) here, under a key of its own. Forking a session forks each
value; ending a session closes each value. Values that are plain data are deep-copied.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol, runtime_checkable

from toolfleet.core.errors import ForkFailedError

log = logging.getLogger(__name__)


@runtime_checkable
class SessionState(Protocol):
    """A stateful value that knows how to copy and release itself."""

    async def fork(self) -> SessionState:
        """Return an independent copy (e.g. a forked interpreter)."""
        ...

    async def close(self) -> None:
        """Release what the value holds (processes, files, connections)."""
        ...


class SessionStates:
    """Map of session id -> {key: state} for the tools of one process."""

    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._states)

    def get(self, session_id: str, key: str) -> Any:
        """The value under ``key`` in the session, or None."""
        return self._states.get(session_id, {}).get(key)

    def put(self, session_id: str, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` in the session."""
        self._states.setdefault(session_id, {})[key] = value

    async def fork(self, source_id: str, new_id: str) -> None:
        """Copy every value of ``source_id`` into ``new_id``."""
        copies: dict[str, Any] = {}
        try:
            for key, value in self._states.get(source_id, {}).items():
                if isinstance(value, SessionState):
                    try:
                        copies[key] = await value.fork()
                    except ForkFailedError:
                        raise
                    except Exception as exc:
                        raise ForkFailedError(f"{key}: {exc}") from exc
                else:
                    copies[key] = copy.deepcopy(value)
        except BaseException:
            await _close_all(copies.values())
            raise
        if copies:
            self._states[new_id] = copies

    async def close(self, session_id: str) -> None:
        """Release every value of the session."""
        await _close_all(self._states.pop(session_id, {}).values())

    async def close_all(self) -> None:
        """Release every session's values (shutdown)."""
        for session_id in list(self._states):
            await self.close(session_id)


async def _close_all(values: Any) -> None:
    for value in values:
        if isinstance(value, SessionState):
            try:
                await value.close()
            except Exception:
                log.exception("closing session state %r failed", value)
