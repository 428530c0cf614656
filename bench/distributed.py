"""Distributed mode vs embedded: the same calls through Redis Streams and in-process.

Prints, driven by wrk against the gateway's REST API on 127.0.0.1:
- a no-op tool call, in-process vs through Redis (gateway + one worker): p50/p99 at
  concurrency 1 (the added p50 is the transport's cost) and calls/s at 32;
- stateful ``print(1+1)`` in warm sessions, in-process vs one sandbox worker;
- calls/s of stateful (sessions spread over the workers) and stateless ``print(1+1)`` with
  1, 2 and 4 sandbox worker processes (on this 2-core machine the CPUs, not the workers, are
  the limit: the figure shows what the transport sustains, not multi-node scaling).
Uses the machine's Redis (TOOLFLEET_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0)
under a key prefix of its own, deleted afterwards. Asserts nothing.

Usage: .venv/bin/python bench/distributed.py [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _cluster import REDIS_URL, clean, free_port, gateway, processes, start, worker  # noqa: E402
from gateway_overhead import run_wrk  # noqa: E402
from sandbox_local import lua_post  # noqa: E402

PRINT = {"code": "print(1+1)"}


def wait_for(base: str, tool: str, workers: int = 0, timeout_s: float = 180) -> None:
    """Until the gateway serves ``tool`` (and, distributed, ``workers`` workers of it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            tools = httpx.get(f"{base}/v1/tools", timeout=2).json()["tools"]
            services = ready.json().get("services", {}) if ready.status_code == 200 else {}
            live = sum(len(s.get("workers", [])) for s in services.values())
            if any(t["name"] == tool for t in tools) and live >= workers:
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} did not serve {tool}")


def script(bodies: list[dict]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua_post(bodies))
    return f.name


def row(label: str, conc: int, r: dict[str, float]) -> dict[str, float]:
    print(
        f"{label:<52}{conc:>5}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
        f"{r['rps']:>10.0f}{r['non_2xx']:>9}"
    )
    return r


def sessions(base: str, count: int) -> list[str]:
    made = []
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(count):
            sid = http.post("/v1/sessions").json()["session_id"]
            obs = http.post("/v1/tools/python/call", json={"arguments": PRINT, "session_id": sid})
            assert obs.json()["ok"], obs.text
            made.append(sid)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    d = args.duration
    noop = script([{"arguments": {}}])
    stateless = script([{"arguments": PRINT}])
    print(f"distributed (Redis Streams) vs in-process; wrk -t1, {d} s per row; Redis {REDIS_URL}")
    print(f"{'what':<52}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}{'non-2xx':>9}")
    try:
        # -- no-op: the transport's own cost
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with processes(start([str(HERE / "noop_server.py"), str(port)])):
            wait_for(base, "noop")
            run_wrk(f"{base}/v1/tools/noop/call", 8, 2, noop)
            local = row("noop, in-process", 1, run_wrk(f"{base}/v1/tools/noop/call", 1, d, noop))
            row("noop, in-process", 32, run_wrk(f"{base}/v1/tools/noop/call", 32, d, noop))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        test_worker = worker("--tools-from", "tests.helpers.tools:distributed_tools")
        with processes(gateway(port), test_worker):
            wait_for(base, "noop", workers=1)
            run_wrk(f"{base}/v1/tools/noop/call", 8, 2, noop)
            remote = row(
                "noop, Redis + 1 worker", 1, run_wrk(f"{base}/v1/tools/noop/call", 1, d, noop)
            )
            row("noop, Redis + 1 worker", 32, run_wrk(f"{base}/v1/tools/noop/call", 32, d, noop))
        print(f"  -> added p50 through Redis: {remote['p50_ms'] - local['p50_ms']:.3f} ms\n")

        # -- stateful print(1+1): in-process sandbox vs one sandbox worker
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        embedded = {"services": '["sandbox"]', "sandbox_uid_base": 400_000}
        with processes(gateway(port, distributed=False, **embedded)):
            wait_for(base, "python")
            sids = sessions(base, 16)
            one = script([{"arguments": PRINT, "session_id": sids[0]}])
            many = script([{"arguments": PRINT, "session_id": s} for s in sids])
            call = f"{base}/v1/tools/python/call"
            run_wrk(call, 16, 2, many)
            local = row("stateful print(1+1), in-process", 1, run_wrk(call, 1, d, one))
            row("stateful print(1+1), in-process, 16 sessions", 16, run_wrk(call, 16, d, many))
        for count in (1, 2, 4):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            uids = [400_000 + i * 10_000 for i in range(count)]
            workers = [worker("sandbox", sandbox_uid_base=uid) for uid in uids]
            with processes(gateway(port), *workers):
                wait_for(base, "python", workers=count)
                sids = sessions(base, 32)
                one = script([{"arguments": PRINT, "session_id": sids[0]}])
                many = script([{"arguments": PRINT, "session_id": s} for s in sids])
                call = f"{base}/v1/tools/python/call"
                run_wrk(call, 32, 2, many)
                label = f"{count} sandbox worker{'s' if count > 1 else ''}"
                if count == 1:
                    remote = row(
                        f"stateful print(1+1), Redis + {label}", 1, run_wrk(call, 1, d, one)
                    )
                    print(
                        f"  -> added p50 through Redis: {remote['p50_ms'] - local['p50_ms']:.3f} ms"
                    )
                row(f"stateful print(1+1), {label}, 32 sessions", 32, run_wrk(call, 32, d, many))
                row(f"stateless print(1+1), {label}", 16, run_wrk(call, 16, d, stateless))
    finally:
        for path in (noop, stateless):
            os.unlink(path)
        clean()
    return 0


if __name__ == "__main__":
    sys.exit(main())
