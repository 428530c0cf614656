"""Where uploaded media may come from besides the request body: a file under the configured
media root, or (only when enabled) a URL on an allowed host. Runs in worker threads."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.vision.settings import VisionSettings

CHUNK = 1 << 16


def read_path(path: str, settings: VisionSettings) -> bytes:
    """The bytes of ``path`` (relative to the media root, or absolute inside it)."""
    root = settings.media_root
    if root is None:
        raise ToolError(
            ErrorKind.permission_denied,
            "adding media by server-side path is off (no media root is configured)",
            hint="Upload the file's bytes instead.",
        )
    base = root.resolve()
    try:
        target = (base / path).resolve()  # symlinks followed: where the file really is
    except (OSError, RuntimeError) as exc:
        raise ToolError(ErrorKind.not_found, f"cannot open {path!r}: {exc}") from None
    if not target.is_relative_to(base):
        raise ToolError(
            ErrorKind.permission_denied,
            f"{path!r} is outside the media root",
            hint="Name a file under the media root, relative to it.",
        )
    if not target.is_file():
        raise ToolError(ErrorKind.not_found, f"no file {path!r} under the media root")
    limit = max(settings.max_image_bytes, settings.max_video_bytes)
    size = target.stat().st_size
    if size > limit:
        raise ToolError(
            ErrorKind.output_limit, f"{path!r} is {size} bytes, over the limit of {limit}"
        )
    return Path(target).read_bytes()


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True when ``host`` is listed, or under a listed ``*.domain``."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def check_url(url: str, settings: VisionSettings) -> None:
    """Refuse URLs when fetching is off, and any URL not on an allowed http(s) host."""
    if not settings.url_fetch:
        raise ToolError(
            ErrorKind.permission_denied,
            "fetching media from URLs is off on this server",
            hint="Upload the file's bytes instead (or a path under the media root).",
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(ErrorKind.invalid_arguments, f"not an http(s) URL: {url!r}")
    if not host_allowed(parts.hostname, settings.allowed_hosts):
        raise ToolError(
            ErrorKind.permission_denied,
            f"the host {parts.hostname!r} is not among the hosts media may be fetched from",
            hint="Use a URL on an allowed host, or upload the bytes.",
        )


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to an allowed host."""

    def __init__(self, settings: VisionSettings) -> None:
        self.settings = settings

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        check_url(newurl, self.settings)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_url(url: str, settings: VisionSettings) -> bytes:
    """The body at ``url`` (allowed hosts only, no proxies, size-capped)."""
    check_url(url, settings)
    limit = max(settings.max_image_bytes, settings.max_video_bytes)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _CheckedRedirects(settings)
    )
    request = urllib.request.Request(url, headers={"User-Agent": "toolfleet-vision"})
    try:
        with opener.open(request, timeout=settings.url_timeout_s) as response:
            chunks, size = [], 0
            while chunk := response.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise ToolError(
                        ErrorKind.output_limit, f"{url} is over the limit of {limit} bytes"
                    )
                chunks.append(chunk)
    except ToolError:
        raise
    except urllib.error.HTTPError as exc:
        missing = exc.code in (404, 410)
        raise ToolError(
            ErrorKind.not_found if missing else ErrorKind.unavailable,
            f"fetching {url} failed: HTTP {exc.code}",
            retryable=not missing,
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ToolError(
            ErrorKind.unavailable, f"fetching {url} failed: {exc}", retryable=True
        ) from None
    return b"".join(chunks)
