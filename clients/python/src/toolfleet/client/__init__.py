"""The toolfleet Python client: what trainers import to call a toolfleet gateway.

- :class:`ToolfleetClient` (sync) and :class:`AsyncToolfleetClient` (asyncio), one API:
  tools, calls, batches, sessions (context managers, forks), files, usage, health;
- :class:`RetryPolicy`: what is sent again (429/503 and retryable diagnostics only);
- :mod:`toolfleet.client.adapters`: model turns → calls, observations → each trainer's text.

The wire models (observations, tool specs, sessions) are :mod:`toolfleet.protocol`, shipped
with this distribution; it needs httpx and pydantic only.
"""

from toolfleet.client.async_http import AsyncToolfleetClient
from toolfleet.client.errors import GatewayError
from toolfleet.client.http import DEFAULT_URL, ToolfleetClient
from toolfleet.client.models import FileInfo, FileListing
from toolfleet.client.retry import RetryEvent, RetryPolicy
from toolfleet.client.sessions import AsyncSession, AsyncTrajectory, Session, Trajectory

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_URL",
    "AsyncSession",
    "AsyncToolfleetClient",
    "AsyncTrajectory",
    "FileInfo",
    "FileListing",
    "GatewayError",
    "RetryEvent",
    "RetryPolicy",
    "Session",
    "ToolfleetClient",
    "Trajectory",
    "__version__",
]
