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


def case_run(base: dict[str, Any], stdin: str, args: list[str]) -> dict[str, Any]:
    """A case's run request: what all the cases share (``base``), its input and arguments
    (a Python program's ``args``, a command's ``argv`` extended)."""
    fields = {**base, "stdin": stdin}
    if "python" in fields:
        fields["args"] = list(args)
    else:
        fields["argv"] = [*fields["argv"], *args]
    return fields


@dataclass
class Overlap:
    """Which of the cases running now ran, at some moment, while another one did: only such a
    case can have been ended by what they share (``crowded``)."""

    live: dict[int, bool] = field(default_factory=dict)

    def start(self, index: int) -> None:
        """``index`` starts running (with every live one, if any)."""
        if self.live:
            self.live = dict.fromkeys(self.live, True)
        self.live[index] = bool(self.live)

    def end(self, index: int) -> bool:
        """``index`` has ended: whether it ran while another did."""
        return self.live.pop(index, False)


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
    most: int = 1  # ``parallel`` as asked (it drops to 1 while a case runs again alone)
    overlap: Overlap = field(default_factory=Overlap)
    alone: set[int] = field(default_factory=set)  # run again alone (``_case_done``)
    own_doing: bool = False  # a case run again alone failed as it had among others
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
