"""Languages and the judge, local backend, through the gateway's REST API (``toolfleet
serve``, sandbox tools only). Prints:

- cpp hello world through SandboxFusion's ``/run_code``: compile + run p50 (a new source
  each time, so nothing is cached) and the cached-compile p50 (the same source again);
- a 100-case judge (``POST /v1/judge``) of accepted C++ and Python solutions of a real
  competitive-programming problem (below), expected outputs from a brute-force solution:
  wall time and cases/s (the first C++ judge compiles; the figure is of the cached runs),
  and how the machine's CPUs were spent meanwhile (user, kernel, idle: /proc/stat);
- every language's hello world: compile p50, and run p50 (the program's own time) and call
  p50 (the whole call) of the cached program, through ``run_program``;
- with ``--sf URL``, SandboxFusion at URL doing the same: cpp hello through its
  ``/run_code``, and each judge (C++ and Python) as 100 ``/run_code`` calls of the same
  program, one per case, each output checked against the expected, first one call after
  another, then all at once as verl's ``check_correctness`` sends them (a thread pool of
  max(32, 5 x CPUs)); with the speed-ups.

The problem: given n integers and K, count the pairs i < j with a_i + a_j <= K
(n <= 2000, |a_i| <= 10^9). Solutions sort and walk two pointers; the brute force is O(n^2).

    .venv/bin/python bench/judge.py [--rounds 5] [--sf http://127.0.0.1:PORT] [--judge-only]
    (TOOLFLEET_SANDBOX_JUDGE_PARALLEL=N: cases at once, default the CPUs)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from sandbox_local import serve  # noqa: E402

from tests.sandbox import programs as P  # noqa: E402

CPP = """#include <bits/stdc++.h>
using namespace std;
int main() {
    int n; long long k; scanf("%d %lld", &n, &k);
    vector<long long> a(n);
    for (auto &x : a) scanf("%lld", &x);
    sort(a.begin(), a.end());
    long long count = 0;
    for (int i = 0, j = n - 1; i < j; ) {
        if (a[i] + a[j] <= k) { count += j - i; i++; } else j--;
    }
    printf("%lld\\n", count);
}
"""
PYTHON = """import sys
def main():
    data = sys.stdin.buffer.read().split()
    n, k = int(data[0]), int(data[1])
    a = sorted(map(int, data[2:2 + n]))
    count, i, j = 0, 0, n - 1
    while i < j:
        if a[i] + a[j] <= k:
            count += j - i
            i += 1
        else:
            j -= 1
    print(count)
main()
"""


def brute(a: list[int], k: int) -> int:
    n = len(a)
    return sum(1 for i in range(n) for j in range(i + 1, n) if a[i] + a[j] <= k)


def cases(count: int, seed: int = 18) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for t in range(count):
        n = rng.choice([1, 2, 3, 10, 100, 500]) if t < 20 else rng.randint(1, 400)
        bound = rng.choice([5, 1000, 10**9])
        a = [rng.randint(-bound, bound) for _ in range(n)]
        k = rng.randint(-2 * bound, 2 * bound)
        stdin = f"{n} {k}\n{' '.join(map(str, a))}\n"
        out.append({"stdin": stdin, "expected_stdout": f"{brute(a, k)}\n"})
    return out


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def ms(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def ok(response: httpx.Response) -> dict:
    response.raise_for_status()
    return response.json()


def run_code(http: httpx.Client, code: str, language: str = "cpp") -> dict:
    out = ok(http.post("/run_code", json={"language": language, "code": code}))
    if out["status"] != "Success":
        raise RuntimeError(f"/run_code failed: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sf", help="SandboxFusion's URL, to compare")
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument(
        "--judge-only",
        action="store_true",
        help="no per-language table (SandboxFusion still compared with --sf)",
    )
    args = parser.parse_args()
    env = {**os.environ, "TOOLFLEET_SERVICES": '["sandbox"]', "TOOLFLEET_SANDBOX_POOL_SIZE": "1",
           "TOOLFLEET_SANDBOX_LIGHT_POOL_SIZE": "4"}  # fmt: skip
    server, base = serve(sys.executable, ROOT, env)
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    try:
        http = httpx.Client(base_url=base, timeout=600)
        hello = P.HELLO["cpp"]
        fresh = [ms(lambda i=i: run_code(http, f"{hello}// {time.time_ns()} {i}\n"))
                 for i in range(args.rounds)]  # fmt: skip
        run_code(http, hello)
        cached = [ms(lambda: run_code(http, hello)) for _ in range(max(20, args.rounds))]
        print(f"cpp hello /run_code: compile+run p50 {p50(fresh)} ms, cached p50 {p50(cached)} ms")

        tests = cases(args.cases)
        judge_walls: dict[str, float] = {}
        for language, code in (("cpp", CPP), ("python", PYTHON)):
            body = {"language": language, "code": code, "cases": tests, "time_limit_s": 5}
            walls, inner = [], []
            first = ok(http.post("/v1/judge", json=body))
            assert first["data"]["verdict"] == "AC", first["data"]["cases"][:3]
            before = machine_cpu()
            for _ in range(args.rounds):
                t = time.perf_counter()
                out = ok(http.post("/v1/judge", json=body))
                walls.append(time.perf_counter() - t)
                assert out["data"]["verdict"] == "AC" and out["data"]["passed"] == args.cases
                inner.append(out["data"]["wall_s"])
            split = cpu_split(before, machine_cpu())
            wall = judge_walls[language] = statistics.median(walls)
            print(f"judge {language} {args.cases} cases: wall p50 {wall:.3f} s "
                  f"({args.cases / wall:.0f} cases/s; judge's own {statistics.median(inner):.3f}"
                  f" s); first (compile) {first['data']['wall_s']:.3f} s; the machine's CPUs "
                  f"meanwhile: {split}")  # fmt: skip

        if not args.judge_only:
            language_table(http)
        if args.sf:
            compare_sf(args.sf, args.rounds, tests, p50(cached), judge_walls)
        else:
            print("SandboxFusion: not compared (no --sf URL)")
    finally:
        server.terminate()
        server.wait(30)


def machine_cpu() -> list[int]:
    """The machine's CPU time so far (/proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal), in ticks."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def cpu_split(before: list[int], after: list[int]) -> str:
    """Where the machine's CPU time went between two readings (user, kernel, idle): a
    judge's cases are forks, and most of their cost is the kernel's (fork, copy-on-write
    faults, exit)."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    user, kernel, idle = d[0] + d[1], d[2] + d[5] + d[6], d[3] + d[4]
    shares = (("user", user), ("kernel", kernel), ("idle", idle))
    return ", ".join(f"{100 * ticks / total:.0f}% {name}" for name, ticks in shares)


def language_table(http: httpx.Client) -> None:
    """Every language's hello world: compile p50, and run and call p50 of the cached
    program."""
    tools = ok(http.get("/v1/tools"))["tools"]
    offered = next(t for t in tools if t["name"] == "run_program")["input_schema"][
        "properties"]["language"]["enum"]  # fmt: skip
    print(f"{'language':12} {'version':14} {'compile p50 ms':>15} {'run p50 ms':>11} "
          f"{'call p50 ms':>12}")  # fmt: skip
    versions = ok(http.get("/readyz"))["services"]["sandbox"].get("languages") or {}
    for language in P.LANGUAGE_NAMES:
        if language not in offered:
            print(f"{language:12} not offered here")
            continue
        code = P.HELLO[language]
        compiles, runs, calls = [], [], []
        for i in range(3):
            variant = _variant(language, code, i)
            out = ok(http.post("/v1/tools/run_program/call", json={
                "arguments": {"language": language, "code": variant}}))  # fmt: skip
            assert out["ok"], out
            compiles.append(((out["data"].get("compile") or {}).get("time_s") or 0) * 1000)
        for _ in range(5):  # cached: the program's own time, and the whole call's
            t = time.perf_counter()
            out = ok(http.post("/v1/tools/run_program/call", json={
                "arguments": {"language": language, "code": code}}))  # fmt: skip
            calls.append((time.perf_counter() - t) * 1000)
            runs.append(out["data"]["time_s"] * 1000)
        compiled = f"{p50(compiles):>15}" if any(compiles) else f"{'-':>15}"
        print(f"{language:12} {versions.get(language, '')[:14]:14} {compiled} {p50(runs):>11} "
              f"{p50(calls):>12}")  # fmt: skip


def _variant(language: str, code: str, i: int) -> str:
    """The same program, a different source (so it is compiled, not cached)."""
    comment = {"python": "#", "ruby": "#", "perl": "#", "R": "#", "racket": ";",
               "lua": "--", "php": "//"}.get(language, "//")  # fmt: skip
    return f"{code}\n{comment} {time.time_ns()} {i}\n"


def compare_sf(url: str, rounds: int, tests: list[dict[str, str]], cached_ms: float,
               judge_walls: dict[str, float]) -> None:  # fmt: skip
    """SandboxFusion: cpp hello, and each judge as one /run_code call per case, beside
    toolfleet's cached cpp hello p50 (``cached_ms``) and judge wall p50s (``judge_walls``)."""
    http = httpx.Client(base_url=url, timeout=120)
    hello = P.HELLO["cpp"]
    times, statuses = [], []
    for i in range(rounds):
        t = time.perf_counter()
        out = http.post("/run_code", json={"language": "cpp", "code": f"{hello}// {i}\n"}).json()
        times.append((time.perf_counter() - t) * 1000)
        statuses.append(out.get("status"))
    print(f"SandboxFusion cpp hello /run_code p50 {p50(times)} ms (statuses {statuses}); "
          f"toolfleet's cached {cached_ms} ms: {p50(times) / cached_ms:.1f}x")  # fmt: skip
    for language, code, hello_ok in (("cpp", CPP, "Success" in statuses),
                                     ("python", PYTHON, None)):  # fmt: skip
        if hello_ok is None:  # does SandboxFusion run this language here at all?
            out = http.post("/run_code", json={"language": language, "code": "print(1)"}).json()
            hello_ok = out.get("status") == "Success"
        if not hello_ok:
            print(f"SandboxFusion does not run {language} here ({out.get('message') or out}): "
                  f"the 100-case comparison is skipped")  # fmt: skip
            continue

        def right(
            case: dict[str, str], client: httpx.Client = http, language: str = language,
            code: str = code,
        ) -> bool:  # fmt: skip
            out = client.post("/run_code", json={"language": language, "code": code,
                                                 "stdin": case["stdin"]}).json()  # fmt: skip
            run = out.get("run_result") or {}
            return (run.get("stdout") or "").split() == case["expected_stdout"].split()

        t = time.perf_counter()
        passed = sum(right(case) for case in tests)
        wall = time.perf_counter() - t
        print(f"SandboxFusion {len(tests)} /run_code calls ({language}), one after another: "
              f"{wall:.2f} s, {passed}/{len(tests)} right; toolfleet's judge "
              f"{judge_walls[language]:.3f} s: {wall / judge_walls[language]:.1f}x")  # fmt: skip
        # as verl's sandbox_fusion check_correctness calls it: every case at once, from a
        # thread pool of max(32, 5 x CPUs) workers
        workers = max(32, 5 * (os.cpu_count() or 1))
        pool = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=workers))
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as executor:
            passed = sum(executor.map(right, tests, [pool] * len(tests)))
        wall = time.perf_counter() - t
        print(f"SandboxFusion {len(tests)} /run_code calls ({language}), at once as verl calls "
              f"them ({workers} threads): {wall:.2f} s, {passed}/{len(tests)} right; "
              f"toolfleet's judge {judge_walls[language]:.3f} s: "
              f"{wall / judge_walls[language]:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
