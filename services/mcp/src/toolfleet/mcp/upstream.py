"""MCP upstreams: connections to one server, the pool or per-session process, restarts.

A :class:`Connection` is one MCP client session (the official SDK's ``ClientSession``) with
one server: a process started over stdio (in the sandbox's jail unless configured
otherwise), or an MCP session of a Streamable HTTP server. The SDK's transports are anyio
context managers that must be entered and left by one task, so each connection is owned by a
background task that opens it, signals it is ready and holds it until :meth:`Connection.close`;
calls from any task go through its ``ClientSession``, which multiplexes concurrent requests.

An :class:`Upstream` hands a call the connection it runs on: for a stateless server, the
least busy of a pool of ``pool_size``; for a stateful one, the session's own
(:class:`SessionServer`, a ``SessionState``: ended with the session, and a fork gets a fresh
server, since a server's state cannot be copied). A connection that died (the process
crashed, the HTTP server went away) fails its calls with a retryable ``unavailable``
diagnostic and is replaced by the next call.

An upstream's tool list may change while it runs. It is listed again (:meth:`Upstream.relist`)
when a server sends ``notifications/tools/list_changed``, when a connection is restarted
(a new process or HTTP session may list other tools), and when a call fails in a way that
may mean the tool is gone (:meth:`Upstream.lacks`); a list that differs from the one served
is handed to ``Upstream.on_tools`` (the service updates its registry and the catalogue). A
stateful server's list is the one its announcing session lists: toolfleet serves one list per
upstream, not one per session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import mcp_types as types
from toolfleet.core import __version__
from toolfleet.core.errors import ToolError
from toolfleet.core.protocol import ErrorKind
from toolfleet.mcp.settings import McpSettings, UpstreamConfig

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One path for every jail's root: each server builds it in a mount namespace of its own.
JAIL_ROOT = os.path.join(tempfile.gettempdir(), "toolfleet-mcp-root")
CLIENT_INFO = types.Implementation(name="toolfleet", version=__version__)
STDERR_TAIL = 2000
_uids = itertools.count()


class UpstreamDown(Exception):
    """The server could not be reached or died; ``detail`` is what it said last."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class SessionLost(UpstreamDown):
    """A Streamable HTTP server answered 404 to a request of this connection's MCP session:
    it no longer knows the session (it restarted, or expired it), and the request was not
    run. The specification's remedy is a new session."""


class Connection:
    """One MCP client session with one server, held open by a background task."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.config = upstream.config
        self.session: ClientSession | None = None
        self.in_flight = 0
        self.started_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closing = asyncio.Event()
        # the server's stderr (a file: the SDK hands it to the process), read on failures
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.failure: BaseException | None = None
        self.session_lost = False  # an HTTP server answered 404 to this session
        self._stdout: Any = None  # a stdio server's stream of messages (closed when it exits)

    @property
    def alive(self) -> bool:
        """True while the session is open and nothing has failed on it: a stdio server that
        exited between calls is seen here (its output ended), before a call is sent to it."""
        return (
            self.session is not None
            and self.failure is None
            and not self._closing.is_set()
            and not self.exited
        )

    @property
    def exited(self) -> bool:
        """Whether a stdio server's output has ended (the process exited): the SDK closes
        the writing end of an anyio memory stream at the end of the server's stdout."""
        statistics = getattr(self._stdout, "statistics", None)
        return statistics is not None and statistics().open_send_streams == 0

    async def open(self) -> Connection:
        """Start the server (or the HTTP session) and initialise it; raises
        :class:`UpstreamDown` saying why it could not."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        # retrieved even when open() was cancelled before the server answered
        self._ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._hold(), name=f"mcp-{self.config.name}")
        try:
            async with asyncio.timeout(self.config.start_timeout_s):
                await asyncio.shield(self._ready)
        except TimeoutError:
            await self.close()
            raise UpstreamDown(
                f"the {self.config.name} MCP server did not start within "
                f"{self.config.start_timeout_s:g} s",
                self.stderr_tail(),
            ) from None
        except UpstreamDown:
            await self.close()
            raise
        return self

    async def _hold(self) -> None:
        assert self._ready is not None
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.config.transport == "stdio":
                    params = self.upstream.stdio_parameters()
                    read, write = await stack.enter_async_context(
                        stdio_client(params, errlog=self._errlog)  # type: ignore[arg-type]
                    )
                    self._stdout = read
                else:
                    client = create_mcp_http_client(headers=self.config.headers or None)
                    client.event_hooks["response"].append(self._seen)
                    await stack.enter_async_context(client)
                    read, write = await stack.enter_async_context(
                        streamable_http_client(self.config.url or "", http_client=client)
                    )
                session = await stack.enter_async_context(
                    ClientSession(
                        read, write, client_info=CLIENT_INFO, message_handler=self._notified
                    )
                )
                await session.initialize()
                self.session = session
                self._ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # the transport's end, whatever it was
            self.failure = exc
            if not self._ready.done():
                self._ready.set_exception(
                    UpstreamDown(
                        f"the {self.config.name} MCP server could not be started: {_reason(exc)}",
                        self.stderr_tail(),
                    )
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None

    async def _notified(self, message: Any) -> None:
        """What the server sends unasked: a changed tool list is listed again (in a task of
        its own: the SDK's reader waits for this handler, and the listing needs it)."""
        if isinstance(message, types.ToolListChangedNotification):
            self.upstream.relist(self, "the server said its tool list changed")

    async def _seen(self, response: Any) -> None:
        """An HTTP response of this connection: a 404 to a request that carried the MCP
        session's id says the server lost the session (the SDK reports it only as an error
        whose wording depends on the server)."""
        if response.status_code == 404 and "mcp-session-id" in response.request.headers:
            self.session_lost = True

    def stderr_tail(self) -> str | None:
        """The last lines the server wrote to stderr (stdio), for diagnostics."""
        try:
            self._errlog.flush()
            size = self._errlog.seek(0, os.SEEK_END)
            self._errlog.seek(max(0, size - STDERR_TAIL))
            return self._errlog.read().strip() or None
        except (OSError, ValueError):
            return None

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """tools/call; raises :class:`UpstreamDown` when the connection broke under it."""
        session = self.session
        if session is None or not self.alive:
            raise UpstreamDown(f"the {self.config.name} MCP server is not running")
        self.in_flight += 1
        try:
            return await session.call_tool(name, arguments, read_timeout_seconds=timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as exc:
            if self.session_lost:
                self.failure = self.failure or exc
                raise SessionLost(
                    f"the {self.config.name} MCP server no longer knows this connection's "
                    "session (HTTP 404: it restarted or ended the session)"
                ) from exc
            if (self._task is not None and self._task.done()) or _is_transport(exc):
                self.failure = self.failure or exc
                raise UpstreamDown(
                    f"the {self.config.name} MCP server stopped answering: {_reason(exc)}",
                    self.stderr_tail(),
                ) from exc
            raise
        finally:
            self.in_flight -= 1

    async def list_tools(self) -> list[types.Tool]:
        """Every tool the server lists (all pages)."""
        assert self.session is not None
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.session.list_tools(params=params)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def close(self) -> None:
        """End the session and the server process."""
        self._closing.set()
        if self._task is not None and not self._task.done():
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(self._task)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self._errlog.close()


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_transport(exc: BaseException) -> bool:
    """Whether the exception says the connection is gone (not that the call was refused)."""
    text = _reason(exc).lower()
    return any(
        word in text
        for word in ("closed", "connection", "brokenresource", "endofstream", "broken pipe")
    )


class Upstream:
    """One configured MCP server: its tool listing and the connections calls run on."""

    def __init__(self, config: UpstreamConfig, settings: McpSettings) -> None:
        self.config = config
        self.settings = settings
        self.tools: list[types.Tool] = []
        self._pool: list[Connection] = []
        self._pool_lock = asyncio.Lock()
        self.restarts = 0
        self.started = 0
        #: called with this upstream and its previous tools when a re-list found others
        self.on_tools: Callable[[Upstream, list[types.Tool]], None] | None = None
        self.relists = 0  # tool lists read after the first
        self.changes = 0  # of which differed from the list served
        self._checked: dict[str, float] = {}  # tool -> when a failure of it had us list
        self._list_lock = asyncio.Lock()
        self._relisting: asyncio.Task[None] | None = None
        self._again: tuple[Connection | None, str] | None = None

    # ------------------------------------------------------------------ processes

    def stdio_parameters(self) -> StdioServerParameters:
        """How to start the server: jailed (``toolfleet.box.stdio``) unless ``sandbox`` is
        off, with the npm and PyPI prefixes on its PATH."""
        config = self.config
        assert config.command is not None
        path = [str(p / "bin") for p in self.prefixes()]
        env = dict(config.env)
        if not config.sandbox:
            env["PATH"] = ":".join([*path, os.environ.get("PATH", "/usr/bin:/bin")])
            return StdioServerParameters(command=config.command, args=config.args, env=env)
        from toolfleet.box import stdio
        from toolfleet.sandbox.seccomp import compile_filter

        uid = self.settings.first_uid + next(_uids) % 20000
        hide = [str(p) for p in _config_files()]
        line = stdio.command(
            [config.command, *config.args],
            root=JAIL_ROOT,
            uid=uid,
            show=[*(str(p) for p in self.prefixes()), *config.show],
            hide=hide,
            ports=config.loopback_ports,
            memory_mb=config.memory_mb,
            tmp_mb=config.tmp_mb,
            path=path,
            # the kernels' filter; IP sockets stay allowed for a server given relayed ports
            seccomp=compile_filter(sockets=not config.loopback_ports),
        )
        # the jail's environment is exactly this (nothing of the service's own)
        env.setdefault("LANG", "C.UTF-8")
        return StdioServerParameters(command=line[0], args=line[1:], env=_bare_env(env))

    def prefixes(self) -> list[Path]:
        """The installed servers' prefixes that exist here."""
        return [p for p in (self.settings.npm_prefix, self.settings.python_prefix) if p.is_dir()]

    async def connect(self) -> Connection:
        """A new, initialised connection."""
        connection = await Connection(self).open()
        self.started += 1
        return connection

    # ------------------------------------------------------------------ lifecycle

    async def discover(self) -> list[types.Tool]:
        """Start the server once, list its tools, stop it."""
        connection = await self.connect()
        try:
            tools = await connection.list_tools()
        finally:
            await connection.close()
        self.tools = self._wanted(tools)
        return self.tools

    def _wanted(self, tools: list[types.Tool]) -> list[types.Tool]:
        wanted = self.config.tools
        return [t for t in tools if wanted is None or t.name in wanted]

    # ------------------------------------------------------------------ changes

    def relist(self, connection: Connection | None, why: str) -> None:
        """List the tools again soon, on ``connection`` (else a pooled or a passing one):
        in a background task; requests made while one runs are coalesced into one more."""
        self._again = (connection, why)
        if self._relisting is None or self._relisting.done():
            self._relisting = asyncio.create_task(
                self._relist_loop(), name=f"mcp-relist-{self.config.name}"
            )

    async def _relist_loop(self) -> None:
        while self._again is not None:
            (connection, why), self._again = self._again, None
            try:
                await self.refresh(connection, why)
            except Exception as exc:  # the server went away meanwhile: the next event retries
                log.warning("mcp upstream %s: re-listing tools failed: %s", self.config.name, exc)

    async def refresh(self, connection: Connection | None = None, why: str = "") -> bool:
        """List the tools now; when they differ from those served, serve the new list
        (``on_tools``). True when they differed."""
        async with self._list_lock:
            tools = self._wanted(await self._list(connection))
            self.relists += 1
            before = self.tools
            if [t.model_dump() for t in tools] == [t.model_dump() for t in before]:
                return False
            self.tools = tools
            self.changes += 1
        log.info(
            "mcp upstream %s: tool list changed (%s): %d tools, was %d",
            self.config.name,
            why or "re-listed",
            len(tools),
            len(before),
        )
        if self.on_tools is not None:
            self.on_tools(self, before)
        return True

    async def _list(self, connection: Connection | None) -> list[types.Tool]:
        if connection is not None and connection.alive:
            return await connection.list_tools()
        live = [c for c in self._pool if c.alive]
        if live:
            return await live[0].list_tools()
        passing = await self.connect()  # a stateful server's, or a pool that is down
        try:
            return await passing.list_tools()
        finally:
            await passing.close()

    async def lacks(self, name: str, connection: Connection | None, max_age_s: float) -> bool:
        """Whether the server no longer lists the tool ``name`` (a call of it failed): its
        tools listed again, unless a failure of this tool had them listed in the last
        ``max_age_s`` (a tool that keeps failing costs one listing per period)."""
        now = time.monotonic()
        if now - self._checked.get(name, -max_age_s) >= max_age_s:
            self._checked[name] = now
            with contextlib.suppress(UpstreamDown, OSError, RuntimeError):
                await self.refresh(connection, f"a call of {name} failed")
        return all(t.name != name for t in self.tools)

    async def start(self) -> None:
        """A stateless server's pool is opened at start (a stateful one per session)."""
        if not self.config.stateful:
            self._pool = [await self.connect() for _ in range(self.config.pool_size)]

    async def stop(self) -> None:
        """Close the pool."""
        if self._relisting is not None:
            self._relisting.cancel()
            with contextlib.suppress(BaseException):
                await self._relisting
        pool, self._pool = self._pool, []
        await asyncio.gather(*(c.close() for c in pool), return_exceptions=True)

    async def pooled(self) -> tuple[Connection, bool]:
        """The least busy live connection of the pool, and whether it was just restarted
        (a dead one is replaced)."""
        async with self._pool_lock:
            restarted = False
            for i, connection in enumerate(self._pool):
                if not connection.alive:
                    await connection.close()
                    self.restarts += 1
                    self._pool[i] = await self.connect()
                    restarted = True
            if not self._pool:
                self._pool = [await self.connect()]
            if restarted:  # a new process or HTTP session may list other tools
                self.relist(None, "a connection was restarted")
            return min(self._pool, key=lambda c: c.in_flight), restarted

    def status(self) -> dict[str, Any]:
        """What operators see of this upstream."""
        return {
            "transport": self.config.transport,
            "stateful": self.config.stateful,
            "tools": len(self.tools),
            "pool_alive": sum(c.alive for c in self._pool),
            "started": self.started,
            "restarts": self.restarts,
            "relists": self.relists,
            "tool_list_changes": self.changes,
        }


class SessionServer:
    """A stateful upstream's server for one toolfleet session (a ``SessionState``)."""

    def __init__(self, upstream: Upstream, forked: bool = False) -> None:
        self.upstream = upstream
        self.connection: Connection | None = None
        self.forked = forked  # a fork: the next call starts a fresh server and says so
        self.crashed = False
        self._lock = asyncio.Lock()

    async def get(self) -> tuple[Connection, str | None]:
        """This session's live connection (started on first use), and a note for the model
        when it is not the server the session had before."""
        async with self._lock:
            note = None
            restarted = False
            if self.connection is not None and not self.connection.alive:
                await self.connection.close()
                self.connection = None
                self.upstream.restarts += 1
                restarted = True
                note = (
                    f"The {self.upstream.config.name} server of this session had stopped and "
                    "was restarted: what it held before is gone."
                )
            if self.connection is None:
                self.connection = await self.upstream.connect()
                if self.forked:
                    note = (
                        f"This session was forked: it has a fresh {self.upstream.config.name} "
                        "server, which holds nothing of the parent session's state (an MCP "
                        "server's state cannot be copied)."
                    )
                    self.forked = False
                if restarted:  # the new server may list other tools
                    self.upstream.relist(self.connection, "a session's server was restarted")
            return self.connection, note

    async def fork(self) -> SessionServer:
        return SessionServer(self.upstream, forked=True)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end on a loop of its own, from sync code that may itself be
    inside a running loop (a service's ``tools()`` is called by the registry, synchronously)."""
    found: list[Any] = []

    def target() -> None:
        try:
            found.append(("ok", asyncio.run(coro)))
        except BaseException as exc:
            found.append(("error", exc))

    thread = threading.Thread(target=target, name="toolfleet-mcp-discover")
    thread.start()
    thread.join()
    kind, value = found[0]
    if kind == "error":
        raise value
    return value


def down_error(exc: UpstreamDown, restarted: str) -> ToolError:
    """The retryable diagnostic of a call whose server died or could not start."""
    return ToolError(
        ErrorKind.unavailable,
        str(exc),
        detail=exc.detail,
        hint=f"Send the call again: {restarted}",
        retryable=True,
    )


def _config_files() -> list[Path]:
    """The toolfleet config file, hidden from jailed servers."""
    name = os.environ.get("TOOLFLEET_CONFIG")
    return [Path(name).resolve()] if name and Path(name).exists() else []


def _bare_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the SDK's defaults (HOME, PATH …) overridden where the jail sets them:
    the SDK merges its defaults under what is given."""
    return {"HOME": "/tmp", "USER": "mcp", "LOGNAME": "mcp", "SHELL": "/bin/sh", **env}
