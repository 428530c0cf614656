"""Code interpreter figures, local backend, through the gateway's REST API.

Starts ``toolfleet serve`` (real settings, sandbox tools only), then prints:
- stateful ``print(1+1)`` in warm sessions: p50/p99 at concurrency 1 and calls/s at 16 (wrk);
- stateless ``print(1+1)`` and ``import numpy as np; print(np.arange(10).sum())``: p50/p99 (wrk);
- new session + first call, SandboxFusion's ``/run_code`` of ``print(1+1)``, and fork of a
  session holding a 10 MB numpy array: p50/p99 (sequential Python client, bounded counts);
- unique memory (USS) of idle sessions, and N concurrent idle sessions.
Asserts nothing. Usage: uv run python bench/sandbox_local.py [--duration 10] [--idle 500]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port, run_wrk  # noqa: E402

UID_BASE = 400_000


def lua_post(bodies: list[dict]) -> str:
    """A wrk script that POSTs the bodies in turn."""
    items = ",\n".join("[[" + json.dumps(b) + "]]" for b in bodies)
    return f"""
local bodies = {{ {items} }}
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % #bodies) + 1])
end
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def timed(fn, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def uss_kb(pid: int) -> int:
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def kernel_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid >= UID_BASE:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--idle", type=int, default=500, help="idle sessions to hold at once")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TOOLFLEET_SERVICES": '["sandbox"]',
        "TOOLFLEET_MAX_SESSIONS": "2000",
        "TOOLFLEET_SANDBOX_UID_BASE": str(UID_BASE),
        "TOOLFLEET_SANDBOX_POOL_SIZE": "8",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    http = httpx.Client(base_url=base, timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        call = f"{base}/v1/tools/python/call"
        print(f"code interpreter, local backend; wrk -t1, {args.duration} s per row")
        print(f"{'what':<44}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}{'non-2xx':>9}")

        def row(label, conc, r):
            print(
                f"{label:<44}{conc:>5}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                f"{r.get('rps', 0):>10.0f}{r.get('non_2xx', 0):>9}"
            )

        sessions = [http.post("/v1/sessions").json()["session_id"] for _ in range(16)]
        for sid in sessions:
            http.post("/v1/tools/python/call", json={"arguments": {"code": "1"}, "session_id": sid})
        scripts = {}
        for name, bodies in {
            "stateful1": [{"arguments": {"code": "print(1+1)"}, "session_id": sessions[0]}],
            "stateful16": [
                {"arguments": {"code": "print(1+1)"}, "session_id": s} for s in sessions
            ],
            "stateless": [{"arguments": {"code": "print(1+1)"}}],
            "numpy": [{"arguments": {"code": "import numpy as np; print(np.arange(10).sum())"}}],
        }.items():
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write(lua_post(bodies))
            scripts[name] = f.name
        run_wrk(call, 4, 2, scripts["stateful16"])  # warm-up
        row(
            "stateful print(1+1), warm session",
            1,
            run_wrk(call, 1, args.duration, scripts["stateful1"]),
        )
        row(
            "stateful print(1+1), 16 warm sessions",
            16,
            run_wrk(call, 16, args.duration, scripts["stateful16"]),
        )
        row("stateless print(1+1)", 1, run_wrk(call, 1, args.duration, scripts["stateless"]))
        row("stateless numpy arange sum", 1, run_wrk(call, 1, args.duration, scripts["numpy"]))
        for path in scripts.values():
            os.unlink(path)

        def new_session_first_call():
            sid = http.post("/v1/sessions").json()["session_id"]
            r = http.post(
                "/v1/tools/python/call",
                json={"arguments": {"code": "print(1+1)"}, "session_id": sid},
            )
            assert r.json()["ok"], r.text
            new_session_first_call.made.append(sid)

        new_session_first_call.made = []
        times = timed(new_session_first_call, 100)
        row(
            "new session + first call (sequential)",
            1,
            {"p50_ms": statistics.median(times), "p99_ms": pct(times, 0.99)},
        )
        for sid in new_session_first_call.made:
            http.delete(f"/v1/sessions/{sid}")

        def run_code():  # SandboxFusion's route: a program in a fresh session
            r = http.post("/run_code", json={"code": "print(1+1)", "language": "python"})
            assert r.json()["run_result"]["stdout"] == "2\n", r.text

        times = timed(run_code, 50)
        row(
            "SandboxFusion /run_code print(1+1) (seq.)",
            1,
            {"p50_ms": statistics.median(times), "p99_ms": pct(times, 0.99)},
        )

        parent = http.post("/v1/sessions").json()["session_id"]
        r = http.post(
            "/v1/tools/python/call",
            json={
                "session_id": parent,
                "arguments": {
                    "code": "import numpy as np\n"
                    "big = np.random.rand(10 * 1024 * 1024 // 8)\nbig.nbytes"
                },
            },
        )
        assert r.json()["data"]["result"] == "10485760", r.text
        forks = []

        def fork():
            forks.append(http.post(f"/v1/sessions/{parent}/fork").json()["session_id"])

        times = timed(fork, 30)
        ok = (
            http.post(
                "/v1/tools/python/call",
                json={"session_id": forks[-1], "arguments": {"code": "big.nbytes"}},
            ).json()["data"]["result"]
            == "10485760"
        )
        row(
            f"fork of a session with 10 MB numpy ({'ok' if ok else 'BROKEN'})",
            1,
            {"p50_ms": statistics.median(times), "p99_ms": pct(times, 0.99)},
        )
        for sid in [*forks, parent, *sessions]:
            http.delete(f"/v1/sessions/{sid}")

        # idle sessions: each has run one call; hold them all at once
        before = set(kernel_pids())
        idle = []
        t0 = time.perf_counter()
        for _ in range(args.idle):
            sid = http.post("/v1/sessions").json()["session_id"]
            r = http.post(
                "/v1/tools/python/call", json={"arguments": {"code": "x = 1"}, "session_id": sid}
            )
            if not r.json()["ok"]:
                print("idle session failed:", r.text[:300])
                break
            idle.append(sid)
        elapsed = time.perf_counter() - t0
        time.sleep(1)
        pids = [p for p in kernel_pids() if p not in before]
        usses = [uss_kb(p) for p in pids]
        alive = sum(
            http.post(
                "/v1/tools/python/call", json={"arguments": {"code": "x"}, "session_id": sid}
            ).json()["ok"]
            for sid in idle
        )
        print(
            f"\nidle sessions: {len(idle)} opened in {elapsed:.1f} s, {alive} answer afterwards;"
            f" {len(pids)} kernel processes"
        )
        if usses:
            print(
                "unique memory (USS) per idle session: "
                f"median {statistics.median(usses) / 1024:.1f} MiB, "
                f"p99 {pct(usses, 0.99) / 1024:.1f} MiB, total {sum(usses) / 1024:.0f} MiB"
            )
        for sid in idle:
            http.delete(f"/v1/sessions/{sid}")
    finally:
        http.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
