"""Framed JSON messages over Unix sockets, with file descriptors passed alongside.

Used on both sides of the sandbox boundary: the service (asyncio) and the zygote, the
supervisors and the kernels (blocking). A frame is a 4-byte big-endian length and a UTF-8
JSON object. What comes from a kernel is untrusted: frames are bounded and only ever decoded
as JSON.

Frames are written and read with orjson where the process has it (the service's venv and the
runtime we build: a warm call crosses eight encodes and decodes, ~2.5 µs less each), else with
the standard library's json, which also takes what orjson refuses: lone surrogates (written as
``\ud800`` escapes, as json always wrote them) and ints past 64 bits. Either end reads what
the other wrote, but for two things no frame of ours carries (the service caps its numbers;
what a kernel reports is model-produced and checked as such): orjson reads an int past 64
bits as a float, and writes NaN and the infinities as null.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct
from collections.abc import Mapping
from typing import Any

orjson: Any
try:  # every side has it (the service's venv, the runtime we build); a runtime of a user's
    import orjson  # own may not, and then the standard library's json is used alone
except ImportError:
    orjson = None

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024
# made once: ``json.dumps`` with any option builds an encoder per call, and every call of a
# session crosses this module four times (service, supervisor, kernel, supervisor)
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


class ChannelClosedError(ConnectionError):
    """The other end went away."""


def encode(obj: Mapping[str, Any]) -> bytes:
    """One frame."""
    if orjson is not None:
        try:
            return frame(orjson.dumps(obj))
        except TypeError:  # lone surrogates (escaped below), ints past 64 bits
            pass
    return frame(_ENCODER.encode(obj).encode())


def frame(body: bytes) -> bytes:
    """One frame of ``body`` (JSON, or a judge's case's request: ``cases.request``)."""
    return HEADER.pack(len(body)) + body


def _size(header: bytes | bytearray, max_frame: int) -> int:
    """A frame's size from its header; over ``max_frame`` closes the channel."""
    (size,) = HEADER.unpack_from(header)
    if size > max_frame:
        raise ChannelClosedError(f"frame of {size} bytes is over the limit of {max_frame}")
    return int(size)


def _decoded(payload: bytes | bytearray) -> dict[str, Any]:
    """A frame's JSON object; anything else closes the channel."""
    obj = None
    if orjson is not None:
        with contextlib.suppress(ValueError):  # escaped lone surrogates, NaN ...
            obj = orjson.loads(payload)
    if obj is None:
        try:
            obj = _DECODER.decode(payload.decode("utf-8", "surrogatepass"))
        except RecursionError:  # not a ValueError: it would end the loop that reads it
            raise ChannelClosedError("frame is nested too deep") from None
    if not isinstance(obj, dict):
        raise ChannelClosedError("frame is not a JSON object")
    return obj


def _ancillary(fds: list[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


# --------------------------------------------------------------------------- blocking side


def send(sock: socket.socket, obj: Mapping[str, Any], fds: list[int] | None = None) -> None:
    """Send one frame (and ``fds`` with its first byte)."""
    send_frame(sock, encode(obj), fds)


def send_frame(sock: socket.socket, frame: bytes, fds: list[int] | None = None) -> None:
    """Send a frame made by :func:`encode` (and ``fds`` with its first byte)."""
    if fds:
        sent = sock.sendmsg([frame], _ancillary(fds))
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


def send_available(
    sock: socket.socket, data: bytes | memoryview, fds: list[int] | None = None
) -> int:
    """Send what the peer's side of the socket takes now (a non-blocking socket), never
    waiting: how many bytes went (0 when it is full). ``fds`` go with the first byte; a
    socket too full for one raises ``BlockingIOError``."""
    try:
        return sock.sendmsg([data], _ancillary(fds)) if fds else sock.send(data)
    except (BlockingIOError, InterruptedError):
        if fds:
            raise BlockingIOError("the channel is full: no room for the descriptors") from None
        return 0


def _recv_exact(sock: socket.socket, size: int, fds: list[int]) -> bytes:
    chunks, remaining = [], size
    while remaining:
        data, ancdata, _, _ = sock.recvmsg(min(remaining, 1 << 20), socket.CMSG_SPACE(4 * 8))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(array.array("i", payload[:usable]))
        if not data:
            raise ChannelClosedError("channel closed")
        chunks.append(data)
        remaining -= len(data)
    return b"".join(chunks)


def recv(sock: socket.socket, max_frame: int = MAX_FRAME) -> tuple[dict[str, Any], list[int]]:
    """Receive one frame (a JSON object of at most ``max_frame`` bytes) and any descriptors
    sent with it."""
    fds: list[int] = []
    try:
        size = _size(_recv_exact(sock, HEADER.size, fds), max_frame)
        return _decoded(_recv_exact(sock, size, fds)), fds
    except BaseException:
        for fd in fds:
            _close(fd)
        raise


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def recv_available(sock: socket.socket, most: int = 4 << 20) -> bytes:
    """What the peer has sent so far (up to about ``most`` bytes), never waiting: for a loop
    that serves many peers, one of which may stop in the middle of a frame. Raises
    ``BlockingIOError`` when nothing is there and :class:`ChannelClosedError` once the peer
    is gone. Descriptors sent along are dropped (``read`` closes them)."""
    chunks: list[bytes] = []
    got = 0
    fd, timed = sock.fileno(), sock.gettimeout() is not None
    while got < most:
        try:
            # a socket with a timeout has a non-blocking descriptor, and its recv would poll
            # first (up to the timeout): read(2) it; a blocking one is asked not to wait
            data = os.read(fd, 1 << 16) if timed else sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            break
        if not data:
            if chunks:
                break  # the end is seen at the next read
            raise ChannelClosedError("channel closed")
        chunks.append(data)
        got += len(data)
        if len(data) < 1 << 16:
            break
    if not chunks:
        raise BlockingIOError("nothing to read")
    return b"".join(chunks)


# --------------------------------------------------------------------------- asyncio side


async def asend(sock: socket.socket, obj: Mapping[str, Any], fds: list[int] | None = None) -> None:
    """Send one frame from asyncio (the socket must be non-blocking)."""
    import asyncio  # see _arecv_exact

    loop = asyncio.get_running_loop()
    frame = encode(obj)
    if fds:
        while True:
            try:
                sent = sock.sendmsg([frame], _ancillary(fds))
                break
            except BlockingIOError:
                await asyncio.sleep(0.001)
        frame = frame[sent:]
    if frame:
        await loop.sock_sendall(sock, frame)


async def _arecv_exact(sock: socket.socket, size: int) -> bytes:
    # asyncio is imported here, on the service side only: never in the zygote, so that no
    # kernel or program forked from it carries asyncio, ssl, threading and logging (whose
    # at-fork hooks would copy ~100 pages in every forked child: docs/sandbox.md).
    import asyncio

    loop = asyncio.get_running_loop()
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = await loop.sock_recv_into(sock, view[got:])
        if n == 0:
            raise ChannelClosedError("channel closed")
        got += n
    return bytes(buf)


async def arecv(sock: socket.socket, max_frame: int = MAX_FRAME) -> dict[str, Any]:
    """Receive one frame from asyncio; frames over ``max_frame`` close the channel."""
    size = _size(await _arecv_exact(sock, HEADER.size), max_frame)
    return _decoded(await _arecv_exact(sock, size))


class FrameBuffer:
    """Frames out of a byte stream read in pieces (by a caller that reads what is there)."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add ``data``; every frame now complete, decoded. A frame over ``max_frame`` or
        one that is not a JSON object raises :class:`ChannelClosedError`."""
        buf = self._buf
        buf += data
        frames: list[dict[str, Any]] = []
        while len(buf) >= HEADER.size:
            end = HEADER.size + _size(buf, self.max_frame)
            if len(buf) < end:
                break
            payload = buf[HEADER.size : end]
            del buf[:end]
            frames.append(_decoded(payload))
        return frames
