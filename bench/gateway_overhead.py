"""Gateway overhead: p50/p99 latency and calls/s of a no-op tool call through the REST API,
at concurrency 1 and 32, driven by wrk (Debian package ``wrk``), against a bare FastAPI
endpoint in the same server as the baseline. Prints figures; asserts nothing.

Usage: .venv/bin/python bench/gateway_overhead.py [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent

POST_LUA = """
wrk.method = "POST"
wrk.body   = '{"arguments": {}}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_wrk(output: str) -> dict[str, float]:
    """p50, p99 (ms) and requests/s from ``wrk --latency`` output."""

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not m:
            raise ValueError(f"no {label}% line in wrk output:\n{output}")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "rps": rps,
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def run_wrk(url: str, connections: int, duration: int, script: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "30s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True)
    return parse_wrk(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, str(HERE / "noop_server.py"), str(port)],
        env={**os.environ, "PYTHONPATH": str(HERE.parent)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.1)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
            lua.write(POST_LUA)
        # warm-up
        run_wrk(f"{base}/v1/tools/noop/call", 8, 2, lua.name)

        print(f"gateway overhead, wrk -t1, {args.duration} s per row, server: 1 uvicorn process")
        print(f"{'endpoint':<34}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}{'non-2xx':>9}")
        for label, path, script in (
            ("bare FastAPI GET /bare (baseline)", "/bare", None),
            ("POST /v1/tools/noop/call", "/v1/tools/noop/call", lua.name),
        ):
            for conc in (1, 32):
                r = run_wrk(base + path, conc, args.duration, script)
                print(
                    f"{label:<34}{conc:>5}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                    f"{r['rps']:>10.0f}{r['non_2xx']:>9}"
                )
        os.unlink(lua.name)
    finally:
        server.terminate()
        server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
