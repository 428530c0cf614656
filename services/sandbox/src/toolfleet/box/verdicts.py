"""A judge's case against its expected output, and a batch of a judge's cases run by the
supervisor from one request (``Supervisor._run_cases``).

The comparison is the judge's (``toolfleet.sandbox.judge``, which makes the verdicts): the
supervisor uses it only to know a failure at once and start no more cases after it."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolfleet.box.supervisor import Family


def compare(kind: str, output: str, expected: str, tolerance: float) -> tuple[bool, str]:
    """Output against the expected output (``exact``, ``whitespace``: the same tokens,
    ``float``: tokens, numbers within ``tolerance``): (accepted, why not)."""
    if kind == "exact":
        return (output == expected, "" if output == expected else "the output differs")
    got, want = output.split(), expected.split()
    if len(got) != len(want):
        return False, f"expected {len(want)} tokens, got {len(got)}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if a == b:
            continue
        if kind == "float" and _close(a, b, tolerance):
            continue
        return False, f"token {i + 1}: expected {b[:100]!r}, got {a[:100]!r}"
    return True, ""


def _close(a: str, b: str, tolerance: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= tolerance or abs(x - y) <= tolerance * abs(y)


def crowded(reply: dict[str, Any], time_limit_s: float) -> bool:
    """Whether a case run among others was ended by what they share, not by itself: the
    family's OOM killer (each case may use its whole memory limit, not all at once), or the
    wall-time stop before it had used its CPU time (they share the CPUs). Such a case is run
    again alone."""
    stopped = reply.get("timed_out") and float(reply.get("cpu_ms") or 0) < time_limit_s * 1000
    return bool(reply.get("memory_limit") or stopped)


@dataclass(eq=False)
class CaseBatch:
    """A judge's cases asked in one request: the run request they share (``base``), those
    not started yet, each one's record once it has ended (or why it was skipped)."""

    id: int
    family: Family
    base: dict[str, Any]
    pending: collections.deque[tuple[int, dict[str, Any]]]
    results: list[dict[str, Any] | None]
    deadline: float  # no case starts after it (monotonic)
    parallel: int
    time_limit_s: float  # of CPU time
    wall_limit_s: float  # when a case is stopped
    stop_on_failure: bool
    compare: str  # how output is compared ("exact", "whitespace", "float")
    tolerance: float
    shown: int  # characters of each stream kept in a case's record
    running: int = 0
    failed: bool = False
    alone: set[int] = field(default_factory=set)  # run again alone (``_case_done``)
    filling: bool = field(default=False)  # starting cases (a case's end starts none then)

    def skip_rest(self, why: str) -> None:
        """Every case not started yet is skipped, saying why."""
        for index, _ in self.pending:
            self.results[index] = {"skipped": why}
        self.pending.clear()

    def settle(self, reply: dict[str, Any], expected: str | None) -> bool:
        """A case's record as it ends: its output compared with the expected one (where it
        ran to exit 0, its output whole), then cut to ``shown`` characters a stream (a
        batch's answer is one frame: whole outputs of a thousand cases could pass any
        frame's limit). Whether the case failed."""
        ran = not (reply.get("error") or reply.get("timed_out") or reply.get("memory_limit"))
        ran = ran and reply.get("exit_code") == 0 and not reply.get("output_limit")
        ran = ran and float(reply.get("cpu_ms") or 0) <= self.time_limit_s * 1000
        if ran and expected is not None:
            output = str(reply.get("stdout") or "")
            reply["compared"] = list(compare(self.compare, output, expected, self.tolerance))
        for stream in ("stdout", "stderr"):
            if isinstance(reply.get(stream), str):
                reply[stream] = reply[stream][: self.shown]
        return not ran or not reply.get("compared", [True])[0]
