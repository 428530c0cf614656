"""Code interpreter figures, local backend, through the gateway's REST API.

Starts ``toolfleet serve`` (real settings, sandbox tools only), then prints:
- stateful ``print(1+1)`` in warm sessions: p50/p99 at concurrency 1 and calls/s at 16 (wrk);
- stateless ``print(1+1)`` and ``import numpy as np; print(np.arange(10).sum())``: p50/p99 (wrk);
- new session + first call, SandboxFusion's ``/run_code`` of ``print(1+1)``, and fork of a
  session holding a 10 MB numpy array: p50/p99 (sequential Python client, bounded counts);
- N concurrent idle sessions, and the unique memory (USS) they add (every process the
  service started for them: kernels, and since the trust boundary their supervisors).

``--compare REF`` also runs the same measurements against the code at git REF (a worktree
made and synced under /tmp, its own virtualenv), the two trees in turn ``--rounds`` times in
this run (so that a machine whose load drifts weighs on both alike), and prints the median of
the rounds of each side by side. Then (``--paired N``) the c=1 rows once more (the warm call,
a new session's first call, a fork) with both trees' servers up at once and N short turns
alternated between them: the rows most sensitive to a VM's minute-to-minute drift, measured
paired. Asserts nothing.

    .venv/bin/python bench/sandbox_local.py [--duration 10] [--idle 500] [--compare ff33a1b]
                                         [--rounds 3] [--paired 10]
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
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port, run_wrk  # noqa: E402

OLD_UID_BASE = 1_500_000  # the old code has no slots: a range no default instance uses


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
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        return 0
    return total


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from each process's parent)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def serve(python: str, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``toolfleet serve`` of the tree at ``cwd``, ready; its process and URL."""
    port = free_port()
    server = subprocess.Popen(
        [python, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.2)


def new_session_first_call(http: httpx.Client) -> str:
    """A new session and its first call (``print(1+1)``); the session's id."""
    sid = http.post("/v1/sessions").json()["session_id"]
    r = http.post(
        "/v1/tools/python/call", json={"arguments": {"code": "print(1+1)"}, "session_id": sid}
    )
    assert r.json()["ok"], r.text
    return sid


def numpy_parent(http: httpx.Client) -> str:
    """A session holding a 10 MB numpy array, to be forked; its id."""
    parent = http.post("/v1/sessions").json()["session_id"]
    code = "import numpy as np\nbig = np.random.rand(10 * 1024 * 1024 // 8)\nbig.nbytes"
    r = http.post("/v1/tools/python/call", json={"session_id": parent, "arguments": {"code": code}})
    assert r.json()["data"]["result"] == "10485760", r.text
    return parent


def measure(base: str, server_pid: int, duration: int, idle: int) -> dict[str, dict]:
    """Every figure of one server; rows by label."""
    rows: dict[str, dict] = {}
    http = httpx.Client(base_url=base, timeout=60)
    call = f"{base}/v1/tools/python/call"
    try:
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
        rows["stateful print(1+1), warm session"] = run_wrk(call, 1, duration, scripts["stateful1"])
        rows["stateful print(1+1), 16 sessions, c=16"] = run_wrk(
            call, 16, duration, scripts["stateful16"]
        )
        rows["stateless print(1+1)"] = run_wrk(call, 1, duration, scripts["stateless"])
        rows["stateless numpy arange sum"] = run_wrk(call, 1, duration, scripts["numpy"])
        for path in scripts.values():
            os.unlink(path)

        made: list[str] = []
        times = timed(lambda: made.append(new_session_first_call(http)), 100)
        rows["new session + first call (seq.)"] = _summary(times)
        for sid in made:
            http.delete(f"/v1/sessions/{sid}")

        def run_code():  # SandboxFusion's route
            r = http.post("/run_code", json={"code": "print(1+1)", "language": "python"})
            assert r.json()["run_result"]["stdout"] == "2\n", r.text

        rows["SandboxFusion /run_code print(1+1) (seq.)"] = _summary(timed(run_code, 50))

        parent = numpy_parent(http)
        forks: list[str] = []

        def fork():
            forks.append(http.post(f"/v1/sessions/{parent}/fork").json()["session_id"])

        rows["fork of a session with 10 MB numpy (seq.)"] = _summary(timed(fork, 30))
        r = http.post(
            "/v1/tools/python/call",
            json={"session_id": forks[-1], "arguments": {"code": "big.nbytes"}},
        )
        assert r.json()["data"]["result"] == "10485760", r.text
        for sid in [*forks, parent, *sessions]:
            http.delete(f"/v1/sessions/{sid}")

        # idle sessions: each has run one call; hold them all at once
        time.sleep(2)
        before = descendants(server_pid)
        opened: list[str] = []
        t0 = time.perf_counter()
        for _ in range(idle):
            sid = http.post("/v1/sessions").json()["session_id"]
            r = http.post(
                "/v1/tools/python/call", json={"arguments": {"code": "x = 1"}, "session_id": sid}
            )
            if not r.json()["ok"]:
                print("idle session failed:", r.text[:300])
                break
            opened.append(sid)
        elapsed = time.perf_counter() - t0
        time.sleep(2)
        added = descendants(server_pid) - before
        uss = sum(uss_kb(p) for p in added)
        alive = sum(
            http.post(
                "/v1/tools/python/call", json={"arguments": {"code": "x"}, "session_id": sid}
            ).json()["ok"]
            for sid in opened
        )
        rows["idle sessions"] = {
            "opened": len(opened),
            "answer": alive,
            "seconds": elapsed,
            "processes": len(added),
            "uss_mib_per_session": uss / 1024 / max(1, len(opened)),
            "uss_mib_total": uss / 1024,
        }
        for sid in opened:
            http.delete(f"/v1/sessions/{sid}")
    finally:
        http.close()
    return rows


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(times), "p99_ms": pct(times, 0.99)}


def run_tree(root: Path, python: str, env: dict[str, str], args: argparse.Namespace) -> dict:
    server, base = serve(python, root, env)
    try:
        return measure(base, server.pid, args.duration, args.idle)
    finally:
        stop([server])


def stop(servers: list[subprocess.Popen]) -> None:
    """Stop the servers, then wait until every process they had is gone (``settle``)."""
    left: set[int] = set()
    for server in servers:
        left |= descendants(server.pid)
        server.send_signal(signal.SIGTERM)
    for server in servers:
        server.wait(timeout=180)
    settle(left)


PAIRED = ("warm call, c=1 (wrk)", "new session + first call", "fork, 10 MB numpy")


def paired(trees: list[tuple], runs: int) -> dict[str, dict[str, list[float]]]:
    """The c=1 rows of every tree with their servers up at once, in short turns alternated
    between the trees, so that a machine whose speed drifts from minute to minute (a VM's)
    weighs on each tree alike. Each turn: 2 s of wrk on a warm session, 10 new sessions
    with their first call, 10 forks of a new session holding 10 MB of numpy. Per tree and row,
    each turn's p50 (ms)."""
    servers, clients, scripts = [], {}, {}
    p50s: dict[str, dict[str, list[float]]] = {}
    try:
        for name, root, python, env in trees:
            server, base = serve(python, root, env)
            servers.append(server)
            http = clients[name] = httpx.Client(base_url=base, timeout=60)
            sid = http.post("/v1/sessions").json()["session_id"]
            body = {"arguments": {"code": "print(1+1)"}, "session_id": sid}
            for _ in range(20):
                http.post("/v1/tools/python/call", json=body)
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write(lua_post([body]))
            scripts[name] = (f"{base}/v1/tools/python/call", f.name)
            p50s[name] = {row: [] for row in PAIRED}
        for _ in range(runs):
            for name, (url, script) in scripts.items():
                http, rows = clients[name], p50s[name]
                rows[PAIRED[0]].append(run_wrk(url, 1, 2, script)["p50_ms"])
                made: list[str] = []
                times = timed(lambda: made.append(new_session_first_call(http)), 10)  # noqa: B023
                rows[PAIRED[1]].append(statistics.median(times))
                # a parent per turn: in ff33a1b the forks a parent had and ended stay its
                # zombies until it runs a cell, and fill its family's process limit
                made.append(numpy_parent(http))
                fork = f"/v1/sessions/{made[-1]}/fork"
                times = timed(lambda: made.append(http.post(fork).json()["session_id"]), 10)  # noqa: B023
                rows[PAIRED[2]].append(statistics.median(times))
                for sid in made:
                    http.delete(f"/v1/sessions/{sid}")
                time.sleep(1)  # their teardown is not the next turn's to share
    finally:
        for http in clients.values():
            http.close()
        for _, script in scripts.values():
            os.unlink(script)
        stop(servers)
    return p50s


def settle(pids: set[int], within_s: float = 120.0) -> None:
    """Wait until a stopped tree's processes are all gone, then a moment more, so that the
    next tree's rows do not run beside the teardown of the last one's sessions (memory freed,
    cgroups removed); says how long that took."""
    start = time.monotonic()
    while time.monotonic() < start + within_s and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.2)
    print(f"  its {len(pids)} processes gone {time.monotonic() - start:.1f} s after the stop",
          flush=True)  # fmt: skip
    time.sleep(3)


def old_tree(ref: str) -> Path:
    """A worktree of ``ref`` with its virtualenv synced (reused between runs)."""
    path = Path(tempfile.gettempdir()) / f"toolfleet-bench-{ref}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    uv = os.environ.get("UV") or str(ROOT / ".tools/bin/uv")
    subprocess.run([uv, "sync", "--frozen", "--all-packages", "--quiet"], cwd=path, check=True)
    return path


def print_rows(columns: dict[str, dict]) -> None:
    names = list(columns)
    labels = [k for k in next(iter(columns.values())) if k != "idle sessions"]
    head = "".join(f"{n + ' p50':>12}{n + ' p99':>12}{n + ' /s':>10}" for n in names)
    print(f"{'what':<44}{head}")
    for label in labels:
        cells = ""
        for n in names:
            r = columns[n][label]
            cells += f"{r['p50_ms']:>12.2f}{r['p99_ms']:>12.2f}{r.get('rps', 0):>10.0f}"
        print(f"{label:<44}{cells}")
    for n in names:
        i = columns[n]["idle sessions"]
        print(
            f"{n}: {i['opened']} idle sessions opened in {i['seconds']:.1f} s, {i['answer']} "
            f"answer afterwards; {i['processes']} processes, USS "
            f"{i['uss_mib_per_session']:.2f} MiB per session ({i['uss_mib_total']:.0f} MiB)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--idle", type=int, default=500, help="idle sessions to hold at once")
    parser.add_argument("--compare", metavar="REF", help="also measure the code at git REF")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the trees")
    parser.add_argument(
        "--paired", type=int, default=10, metavar="N",
        help="with --compare: N alternated turns of the c=1 rows, the servers up at once",
    )  # fmt: skip
    args = parser.parse_args()
    if args.paired < 0 or args.rounds < 1:
        parser.error("--paired must be 0 (none) or more, --rounds 1 or more")
    env = {
        **os.environ,
        "TOOLFLEET_SERVICES": '["sandbox"]',
        "TOOLFLEET_MAX_SESSIONS": "2000",
        "TOOLFLEET_SANDBOX_POOL_SIZE": "8",
    }
    trees = [("now", ROOT, sys.executable, env)]
    if args.compare:
        old = old_tree(args.compare)
        old_env = {**env, "TOOLFLEET_SANDBOX_UID_BASE": str(OLD_UID_BASE)}
        trees.insert(0, (args.compare, old, str(old / ".venv/bin/python"), old_env))
    runs: dict[str, list[dict]] = {name: [] for name, *_ in trees}
    for round_ in range(args.rounds):
        for name, root, python, tree_env in trees:
            print(f"round {round_ + 1}: measuring {name} ...", flush=True)
            runs[name].append(run_tree(root, python, tree_env, args))
    columns = {name: median_rows(results) for name, results in runs.items()}
    print(
        f"\ncode interpreter, local backend; wrk -t1, {args.duration} s per wrk row; "
        f"median of {args.rounds} round(s)"
    )
    print_rows(columns)
    if args.compare and args.paired:
        print(f"\nthe c=1 rows again, the servers up at once, {args.paired} turns per tree "
              "alternated (each: 2 s of wrk, 10 new sessions, 10 forks)", flush=True)  # fmt: skip
        p50s = paired(trees, args.paired)
        first = next(iter(p50s.values()))
        for row in PAIRED:
            print(f"  {row}:")
            for name, rows in p50s.items():
                median, base = statistics.median(rows[row]), statistics.median(first[row])
                print(f"    {name:>10}: median of the turns' p50 {median:.3f} ms (turns "
                      f"{min(rows[row]):.3f}-{max(rows[row]):.3f}), "
                      f"{100 * (median / base - 1):+.1f}%")  # fmt: skip
    return 0


def median_rows(results: list[dict]) -> dict:
    """Each figure's median over rounds."""
    merged: dict[str, dict] = {}
    for label in results[0]:
        keys = results[0][label]
        merged[label] = {
            k: statistics.median(r[label][k] for r in results)
            for k in keys
            if isinstance(keys[k], int | float)
        }
    return merged


if __name__ == "__main__":
    sys.exit(main())
