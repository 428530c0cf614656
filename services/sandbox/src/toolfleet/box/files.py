"""The files API, done by the supervisor in a family's directories.

The supervisor runs as root, and the directories it reads belong to the model's code, which
may have planted symbolic links, FIFOs or device-like surprises there. Every path is
therefore walked one component at a time from an open directory with ``O_NOFOLLOW`` (a link
anywhere on the way is refused, never followed), files are opened ``O_NONBLOCK`` and must be
regular, and what is written is handed to the family's uid. The family is frozen while this
runs, so nothing changes under the walk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

MAX_FILES_LISTED = 1000


class FileRefused(Exception):
    """A path the files API will not touch; ``kind`` is the error kind to answer with."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _parts(path: str) -> list[str]:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise FileRefused("permission_denied", f"{path!r} is outside the directory")
            parts.pop()
            continue
        parts.append(part)
    return parts


def _describe(exc: OSError, path: str) -> FileRefused:
    if exc.errno == errno.ENOENT:
        return FileRefused("not_found", f"no such file: {path}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) or exc.errno == errno.EMLINK:
        return FileRefused("permission_denied", f"{path} goes through a symbolic link or a file")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FileRefused("permission_denied", f"{path}: permission denied")
    if exc.errno == errno.ENOSPC:
        return FileRefused("output_limit", f"{path}: no space left in the session's disk")
    return FileRefused("runtime_error", f"{path}: {os.strerror(exc.errno or 0)}")


Root = int | str  # an open directory (the family's), or a path


@contextlib.contextmanager
def _directory(root: Root, parts: list[str], create: int | None) -> Iterator[int]:
    """An open descriptor of ``root/parts...`` reached without following links; missing
    directories are made (owned by ``create``) when it is not None."""
    if isinstance(root, int):
        fd = os.dup(root)
    else:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                if os.getuid() == 0:
                    os.chown(part, create, create, dir_fd=fd, follow_symlinks=False)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_directory(root: Root, path: str) -> Iterator[int]:
    """The directory ``root/path`` (reached without following links), open."""
    try:
        with _directory(root, _parts(path), None) as fd:
            yield fd
    except OSError as exc:
        raise _describe(exc, path) from exc


def read_file(root: Root, path: str, max_bytes: int) -> bytes:
    """The contents of the regular file ``path`` under ``root``, at most ``max_bytes``."""
    parts = _parts(path)
    if not parts:
        raise FileRefused("invalid_arguments", "a file path is needed")
    try:
        with _directory(root, parts[:-1], None) as dfd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        raise _describe(exc, path) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused("permission_denied", f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise FileRefused(
                "output_limit", f"{path} is {info.st_size} bytes, over the limit of {max_bytes}"
            )
        chunks, size = [], 0
        while size <= max_bytes:
            data = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not data:
                break
            chunks.append(data)
            size += len(data)
        if size > max_bytes:
            raise FileRefused("output_limit", f"{path} is over the limit of {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_file(root: Root, path: str, data: bytes, owner: int, mode: int = 0o644) -> str:
    """Write ``data`` to ``path`` under ``root`` (parents made), owned by ``owner``; returns
    the normalised relative path."""
    parts = _parts(path)
    if not parts:
        raise FileRefused("invalid_arguments", "a file path is needed")
    try:
        with _directory(root, parts[:-1], owner) as dfd:
            fd = os.open(
                parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK,
                mode,
                dir_fd=dfd,
            )
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FileRefused("permission_denied", f"{path} is not a regular file")
                if os.getuid() == 0:
                    os.fchown(fd, owner, owner)
                os.fchmod(fd, mode)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
    except OSError as exc:
        raise _describe(exc, path) from exc
    return "/".join(parts)


def list_files(root: Root, path: str = "") -> tuple[list[dict[str, object]], bool]:
    """Every file under ``root/path`` (path and size; links are listed, not followed),
    sorted, and whether the list was cut at MAX_FILES_LISTED."""
    files: list[dict[str, object]] = []
    with _directory(root, _parts(path), None) as top_fd:
        for top, dirs, names, dfd in os.fwalk(".", follow_symlinks=False, dir_fd=top_fd):
            dirs.sort()
            for name in sorted(names):
                try:
                    size = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_size
                except OSError:
                    continue
                files.append({"path": os.path.normpath(os.path.join(top, name)), "size": size})
                if len(files) >= MAX_FILES_LISTED:
                    return files, True
    return files, False
