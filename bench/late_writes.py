"""How long a child a judged program leaves behind keeps running after the program's end,
through ``toolfleet serve``'s REST API (sandbox tools only), local, docker or gVisor.

Each case of a 6-case Python judge forks a child that writes the time (CLOCK_MONOTONIC) every
10 ms until it is killed, then writes its own time and exits. The window is the child's last
time minus the program's: the supervisor's reaction to the program's exit event (hearing it,
stopping the program's group, sweeping). Prints how many children wrote after the
program's end, and p50/p90/max of the window over all children (one stopped before its first
write counts as 0). With ``--burn N``, N processes spin on the
CPU meanwhile (the load under which a late write is likeliest).

    .venv/bin/python bench/late_writes.py [--backend local|docker|gvisor] [--judges 8]
                                          [--burn 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sandbox_local import pct, serve  # noqa: E402

PROGRAM = """import os, time
if os.fork() == 0:
    while True:
        os.write(1, b"c %.4f\\n" % time.monotonic())
        time.sleep(0.01)
os.write(1, b"p %.4f\\n" % time.monotonic())
os._exit(0)
"""
BACKENDS = {
    "local": {},
    "docker": {"TOOLFLEET_SANDBOX_BACKEND": "docker"},
    "gvisor": {"TOOLFLEET_SANDBOX_BACKEND": "docker", "TOOLFLEET_SANDBOX_DOCKER_RUNTIME": "runsc"},
}


def spin() -> None:
    while True:
        pass


def window(stdout: str) -> float | None:
    """The child's last time minus the program's (s); None when the child never wrote."""
    rows = [line.split() for line in stdout.splitlines() if line.count(" ") == 1]
    parent = [float(t) for k, t in rows if k == "p"]
    child = [float(t) for k, t in rows if k == "c"]
    if not parent:
        raise RuntimeError(f"the program wrote no time of its own: {stdout!r}")
    return max(child) - parent[0] if child else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=list(BACKENDS), default="local")
    parser.add_argument("--judges", type=int, default=8)
    parser.add_argument("--burn", type=int, default=0, help="CPU-spinning processes meanwhile")
    args = parser.parse_args()
    env = {**os.environ, "TOOLFLEET_SERVICES": '["sandbox"]', **BACKENDS[args.backend]}
    server, base = serve(sys.executable, HERE.parent, env)
    burners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.burn)]
    late: list[float] = []
    unwritten = 0
    try:
        http = httpx.Client(base_url=base, timeout=180)
        cases = [{"stdin": "", "expected_stdout": "x\n"}] * 6
        body = {"language": "python", "code": PROGRAM, "cases": cases, "time_limit_s": 10,
                "stop_on_failure": False, "timeout_s": 120}  # fmt: skip
        http.post("/v1/judge", json=body)  # warm-up
        for burner in burners:
            burner.start()
        for _ in range(args.judges):
            for case in http.post("/v1/judge", json=body).json()["data"]["cases"]:
                late_by = window(case["stdout"])
                if late_by is None:
                    unwritten += 1
                else:
                    late.append(late_by * 1000)
    finally:
        for burner in burners:
            burner.terminate()
        server.terminate()
        server.wait()
    every = late + [0.0] * unwritten
    after = sum(w > 0 for w in late)
    print(
        f"{args.backend}, {args.burn} CPU burner(s), {args.judges} judges of 6 cases: "
        f"{after} of {len(every)} children wrote after the program's end "
        f"({unwritten} were stopped before their first write); the window p50 "
        f"{pct(every, 0.5):.1f} ms, p90 {pct(every, 0.9):.1f} ms, max {max(every):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
