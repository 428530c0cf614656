"""The sandbox's answers in the model's words: a supervisor's reply as text and diagnostics.

Every answer is built from what a family's supervisor reports: output it read from the
kernel's pipes, exit statuses from ``wait4``, times it measured, files it read itself. What
the interpreter says of a cell (the trailing value, images, the exception) is the model's own
process's report; it is checked and bounded by the supervisor and used only for those fields.
"""

from __future__ import annotations

import signal
from typing import Any

from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, ImagePart
from toolfleet.core.tool import CallContext

RESTARTED_NOTE = "[the session's interpreter was restarted: variables and imports are lost]\n"

HINTS = {
    ErrorKind.syntax_error: "Fix the syntax at the line and column given, then run again.",
    ErrorKind.runtime_error: "Read the traceback: fix the line it names, then run again.",
    ErrorKind.timeout: "Make the code faster or do less per call (e.g. smaller inputs); "
    "long loops and sleeps are stopped at the timeout.",
    ErrorKind.memory_limit: "Use less memory: smaller arrays, generators instead of lists.",
    ErrorKind.output_limit: "Print less: summaries, head() or slices instead of whole data.",
}


def _text(reply: dict[str, Any], key: str) -> str:
    value = reply.get(key)
    return value if isinstance(value, str) else ""


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _diagnose(kind: ErrorKind, message: str) -> ErrorDiagnostic:
    return ErrorDiagnostic(kind=kind, message=message, hint=HINTS.get(kind))


def _diagnostic(raw: Any) -> ErrorDiagnostic | None:
    """A reported error as a diagnostic."""
    if not isinstance(raw, dict):
        return None
    try:
        kind = ErrorKind(raw.get("kind"))
    except ValueError:
        kind = ErrorKind.runtime_error
    detail = raw.get("detail") if isinstance(raw.get("detail"), str) else None
    return ErrorDiagnostic(
        kind=kind,
        message=str(raw.get("message", "the code failed"))[:2000],
        detail=detail[:10_000] if detail else None,
        hint=HINTS.get(kind),
        retryable=False,
    )


def _process_error(
    reply: dict[str, Any],
    ctx: CallContext | None,
    max_output: int,
    limit_s: float | None = None,
    memory_mib: int | None = None,
) -> ErrorDiagnostic | None:
    """How a process the supervisor ran failed, in its words (bash, programs), each limit
    named with its value where the caller knows it."""
    limit = limit_s if limit_s is not None else (ctx.timeout_s if ctx else 0.0)
    if reply.get("timed_out"):
        return _diagnose(
            ErrorKind.timeout, f"the command ran out of time (its limit is {limit:g} s)"
        )
    if reply.get("memory_limit"):
        limit_said = f" (the limit is {memory_mib} MiB)" if memory_mib else ""
        return _diagnose(
            ErrorKind.memory_limit, f"it was killed for using too much memory{limit_said}"
        )
    if reply.get("output_limit") and ctx is not None:  # a program's output is cut, not stopped
        return _diagnose(
            ErrorKind.output_limit, f"the output passed the limit of {max_output} bytes"
        )
    signum = reply.get("signal")
    if isinstance(signum, int):
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = "unknown"
        return _diagnose(ErrorKind.runtime_error, f"killed by signal {signum} ({name})")
    code = reply.get("exit_code")
    if isinstance(code, int) and code != 0:
        return _diagnose(ErrorKind.runtime_error, f"exit status {code}")
    return None


def _image(raw: dict[str, Any]) -> ImagePart | None:
    try:
        return ImagePart(
            mime_type="image/png",
            data=raw["data"],
            width=int(raw["width"]),
            height=int(raw["height"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _render(
    restarted: bool,
    stdout: str,
    stderr: str,
    result: str | None,
    error: ErrorDiagnostic | None,
    notes: list[str] | None = None,
) -> str:
    """The text the model reads: output, then the trailing value, then the error, then what
    was cut or dropped."""
    parts = [RESTARTED_NOTE.rstrip()] if restarted else []
    parts += [p.rstrip("\n") for p in (stdout, stderr) if p]
    if result is not None:
        parts.append(result)
    if error is not None:
        parts.append(
            error.detail
            if error.kind is ErrorKind.runtime_error and error.detail
            else error.message + (f"\n{error.detail}" if error.detail else "")
        )
    parts += [f"[{note}]" for note in notes or []]
    return "\n".join(parts)
