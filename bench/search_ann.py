"""Dense ANN figures on a synthetic 1M-passage, 768-d index (e5-base's size): for flat (exact),
HNSW and IVF-PQ, as ``toolfleet search build --dense --index-type ...`` makes them
(``toolfleet.search.dense``): build time, peak memory of the build, memory of a process
serving it (private vs memory-mapped file pages), p50/p99 of a top-10 search (one query, and
a batch of 64; the encoder's time excluded: see bench/search_encoders.py), and recall@10
against the exact top-10.

The vectors: 2,000 random unit centres in 768-d, each passage a centre plus noise of about
the same length, normalised (clustered, as real embeddings are; uniform random vectors are
the worst case for any ANN index); the 1,000 queries are passages plus smaller noise (a
question near its passage): 512 are measured, the other 488 warm the index up first (the
pages of memory-mapped vectors come in on first use). Deterministic (seeded). Each index
type is built and served in a process of its own, so their memory figures do not mix.

Usage: .venv/bin/python bench/search_ann.py [--passages 1000000] [--work /tmp/...] [--reuse]
(--reuse keeps vectors and indexes an earlier run left in --work: then the build figures
are that run's, read from its meta.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 768
CENTRES = 2000
QUERIES = 1000


def memory() -> dict[str, float]:
    """This process's resident memory, MiB: private (anonymous) and mapped file pages."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("RssAnon", "RssFile", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    return out


def make_vectors(work: Path, count: int) -> None:
    """dense.npy (the passages) and queries.npy, deterministic."""
    from numpy.lib.format import open_memmap

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = open_memmap(work / "dense.npy", mode="w+", dtype=np.float32, shape=(count, DIM))
    for start in range(0, count, 50_000):
        n = min(50_000, count - start)
        x = centres[rng.integers(0, CENTRES, n)]
        x += rng.standard_normal((n, DIM), dtype=np.float32) / np.sqrt(DIM)
        out[start : start + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = rng.integers(0, count, QUERIES)
    q = np.asarray(out[np.sort(rows)]) + 0.5 * rng.standard_normal((QUERIES, DIM), np.float32) / (
        np.sqrt(DIM)
    )
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    np.save(work / "queries.npy", q)
    out.flush()


def child(work: Path, index_type: str, reuse: bool, tuning: dict[str, int]) -> None:
    """Build (unless reused) and serve one index type; print one JSON line of figures and
    save the top-10 rows found for the parent's recall."""
    from toolfleet.search.dense import FILES, AnnParams, DenseSearcher, build_ann

    params = AnnParams(index_type=index_type)
    meta_path = work / f"build-{index_type}.json"
    if reuse and meta_path.exists():
        made = json.loads(meta_path.read_text())
    else:
        made = build_ann(work, params)
        made["peak_rss_mib"] = memory()["VmHWM"]
        meta_path.write_text(json.dumps(made))
        print(json.dumps({"built": index_type, **made}), flush=True)
        # serve from a fresh process, so the build's memory does not count
        subprocess.run(
            [sys.executable, __file__, "--work", str(work), "--child", index_type, "--reuse"],
            check=True,
        )
        return
    before = memory()
    searcher = DenseSearcher(
        work / "dense.npy" if index_type in ("flat", "ivf-pq") else None,
        work / FILES[index_type] if index_type != "flat" else None,
        rerank=tuning.get("rerank", params.rerank) if index_type == "ivf-pq" else 0,
        tuning={k: v for k, v in tuning.items() if k != "rerank"},
    )
    loaded = memory()
    queries = np.load(work / "queries.npy")
    singles = []
    found = np.zeros((len(queries), 10), np.int64)
    count = 512 if index_type != "flat" else 100  # flat: 100 singles are enough
    # warm up with the other queries (pages of memory-mapped vectors come in on first use)
    for start in range(512, len(queries), 64):
        searcher.search(queries[start : start + 64], 10)
    for i in range(count):
        started = time.perf_counter()
        _, rows = searcher.search(queries[i : i + 1], 10)
        singles.append((time.perf_counter() - started) * 1000)
        found[i] = rows[0]
    batches = []
    for start in range(0, 64 * 8, 64):
        started = time.perf_counter()
        _, rows = searcher.search(queries[start : start + 64], 10)
        batches.append((time.perf_counter() - started) * 1000)
        if index_type == "flat" or start >= count:
            found[start : start + 64] = rows
    label = index_type + "".join(f" {k}={v}" for k, v in tuning.items())
    np.save(work / f"found-{label}.npy", found)
    served = memory()
    disk = sum(
        (work / f).stat().st_size
        for f in ["dense.npy"] * (index_type != "hnsw") + [FILES.get(index_type, "")]
        if f and (work / f).exists()
    )
    print(
        json.dumps(
            {
                "index_type": label,
                "build_s": made.get("seconds"),
                "build_peak_rss_mib": made.get("peak_rss_mib"),
                "params": {k: made[k] for k in ("nlist", "pq_m") if k in made},
                "disk_mib": round(disk / 2**20),
                "load_anon_mib": round(loaded["RssAnon"] - before["RssAnon"]),
                "served_anon_mib": round(served["RssAnon"] - before["RssAnon"]),
                "served_file_mib": round(served["RssFile"] - before["RssFile"]),
                "single_p50_ms": statistics.median(singles),
                "single_p99_ms": float(np.percentile(singles, 99)),
                "batch64_p50_ms": statistics.median(batches),
                "queries_per_s_batch64": 64 / (statistics.median(batches) / 1000),
            }
        ),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "toolfleet-ann-bench"
    )
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument(
        "--types",
        default="flat,hnsw,hnsw:efSearch=256,ivf-pq,ivf-pq:rerank=16,ivf-pq:nprobe=128;rerank=16",
        help="index types, each with FAISS search parameters after a colon (no rebuild)",
    )
    parser.add_argument("--tune", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.work, args.child, args.reuse, json.loads(args.tune))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.reuse and (args.work / "queries.npy").exists()):
        started = time.perf_counter()
        make_vectors(args.work, args.passages)
        print(f"vectors: {args.passages:,} x {DIM} in {time.perf_counter() - started:.0f} s")
    figures = {}
    for item in args.types.split(","):
        index_type, _, tune = item.partition(":")
        tuning = {k: int(v) for k, v in (p.split("=") for p in tune.split(";") if p)}
        cmd = [sys.executable, __file__, "--work", str(args.work), "--child", index_type]
        cmd += ["--tune", json.dumps(tuning)]
        reuse = args.reuse or (args.work / f"build-{index_type}.json").exists()
        done = subprocess.run(cmd + ["--reuse"] * reuse, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        figure = next(x for x in lines if "index_type" in x and "built" not in x)
        figures[figure["index_type"]] = figure
    exact = np.load(args.work / "found-flat.npy")
    print(
        f"\n{args.passages:,} passages x {DIM}-d, {QUERIES} queries, top-10, "
        f"{resource.getpagesize()}-byte pages"
    )
    print(
        f"{'index':<8}{'build s':>9}{'build peak':>12}{'disk':>9}{'RAM anon':>10}"
        f"{'mmapped':>9}{'p50 1q ms':>11}{'p99 1q ms':>11}{'p50 64q ms':>12}{'recall@10':>11}"
    )
    measured = 100  # flat answered 100 single queries, plus the batches
    for index_type, f in figures.items():
        found = np.load(args.work / f"found-{index_type}.npy")
        rows = list(range(measured)) + list(range(64, 64 * 8))
        hits = sum(len(set(found[i]) & set(exact[i])) for i in set(rows))
        recall = hits / (10 * len(set(rows)))
        print(
            f"{index_type:<8}{f['build_s'] or 0:>9.0f}{(f['build_peak_rss_mib'] or 0):>9.0f} MiB"
            f"{f['disk_mib']:>5} MiB{f['served_anon_mib']:>6} MiB{f['served_file_mib']:>5} MiB"
            f"{f['single_p50_ms']:>11.2f}{f['single_p99_ms']:>11.2f}{f['batch64_p50_ms']:>12.1f}"
            f"{recall:>11.3f}  {f['params'] or ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
