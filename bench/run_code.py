"""SandboxFusion's ``/run_code`` beside toolfleet's own stateless ``python`` call, same code,
local backend, through the gateway.

Starts ``toolfleet serve`` (sandbox only, default settings), then for each of ``print(1+1)``
and ``import numpy as np; print(np.arange(10).sum())`` prints p50/p99 of sequential calls
(Python client) and calls/s at 16 connections (wrk), on ``/run_code`` (a program: argv,
stdin, exit status, files) and on ``/v1/tools/python/call`` (a stateless cell). The two
routes alternate over ``--rounds`` rounds (a machine whose load drifts weighs on both alike);
the medians of the rounds are printed. ``--peer URL`` adds SandboxFusion itself (its own
server, started by you outside this tree) on the same rows. Asserts nothing.

    .venv/bin/python bench/run_code.py [--rounds 3] [--count 100] [--duration 8] [--peer URL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway_overhead import run_wrk  # noqa: E402
from sandbox_local import lua_post, pct, serve, timed  # noqa: E402

CODES = {
    "print(1+1)": ("print(1+1)", "2\n"),
    "numpy": ("import numpy as np; print(np.arange(10).sum())", "45\n"),
}


def run_code_body(code: str) -> dict:
    return {"code": code, "language": "python", "run_timeout": 30}


def stateless_body(code: str) -> dict:
    return {"arguments": {"code": code}}


def measure(
    http: httpx.Client, base: str, path: str, body: dict, check: Callable[[dict], bool],
    count: int, duration: int,
) -> tuple[float, float, float]:  # fmt: skip
    """(p50 ms, p99 ms) of ``count`` sequential calls, and calls/s at c=16 (wrk); a wrong
    answer is printed (a loaded machine can time a run out), not fatal."""

    def once() -> None:
        r = http.post(f"{base}{path}", json=body)
        if r.status_code != 200 or not check(r.json()):
            print(f"wrong answer from {base}{path}: {r.text[:300]}", file=sys.stderr)

    once()
    times = timed(once, count)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(lua_post([body]))
    try:
        wrk = run_wrk(f"{base}{path}", 16, duration, lua.name)
    finally:
        os.unlink(lua.name)
    return pct(times, 0.5), pct(times, 0.99), wrk["rps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=100, help="sequential calls per row")
    parser.add_argument("--duration", type=int, default=8, help="wrk seconds per row")
    parser.add_argument("--peer", help="URL of a SandboxFusion server to measure alongside")
    parser.add_argument("--settle", type=float, default=20, help="pause after the peer's rows")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
    env.pop("OPENBLAS_CORETYPE", None)  # it slows numpy here; not what is measured
    env["TOOLFLEET_SERVICES"] = '["sandbox"]'
    server, base = serve(sys.executable, HERE.parent, env)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    try:
        with httpx.Client(timeout=60) as http:
            for _ in range(args.rounds):
                targets = []
                for label, (code, out) in CODES.items():
                    targets += [
                        (f"toolfleet /run_code: {label}", base, "/run_code",
                         run_code_body(code), lambda j, out=out: j["run_result"]["stdout"] == out),
                        (f"toolfleet stateless python: {label}", base, "/v1/tools/python/call",
                         stateless_body(code), lambda j, out=out: j["data"]["stdout"] == out),
                    ]  # fmt: skip
                for label, (code, out) in CODES.items() if args.peer else ():
                    # last in the round: the peer goes on with what wrk queued after wrk ends
                    targets.append(
                        (f"SandboxFusion /run_code: {label}", args.peer.rstrip("/"), "/run_code",
                         run_code_body(code), lambda j, out=out: j["run_result"]["stdout"] == out)
                    )  # fmt: skip
                for name, url, path, body, check in targets:
                    row = measure(http, url, path, body, check, args.count, args.duration)
                    rows.setdefault(name, []).append(row)
                if args.peer:
                    time.sleep(args.settle)  # the peer's backlog drains before the next round
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"median of {args.rounds} rounds; seq. = {args.count} calls one at a time; "
          f"c=16 = wrk, {args.duration} s")  # fmt: skip
    print(f"{'row':<44}{'p50 ms':>9}{'p99 ms':>9}{'c=16 calls/s':>14}")
    for name, values in rows.items():
        p50, p99, rps = (statistics.median(v[i] for v in values) for i in range(3))
        print(f"{name:<44}{p50:>9.1f}{p99:>9.1f}{rps:>14.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
