"""Search figures over the real SQuAD corpus (../shared/data/search) and a 1M-passage
synthetic one, through the gateway's REST API (``toolfleet serve`` with the search service).

Prints:
- index build speed (passages/s) for BM25 over all 20,963 passages, and for dense over the
  dev passages (2,067, which hold every question's gold passage; the numpy MiniLM encoder
  embeds about 13 passages/s on this 2-core VM, so the whole corpus would take half an hour);
- recall@1/@5 of the 6,529 questions: BM25 over the whole corpus, and BM25, dense and hybrid
  over the dev passages;
- query latency (wrk, c=1): top-10 single queries and batches of 64, per retriever;
- with ``--synthetic N`` (default 1,000,000; 0 to skip): a corpus of N passages drawn from
  the real vocabulary (bench/search_synth.py): BM25 build time, index size on disk, memory of
  the serving process, query p50 single and batch of 64; then, in process, the BM25 scorer
  against bm25s's numpy scoring per query, and what a query costs beyond its postings at 1M
  and 21M passages, now and with the old buffer passes (``--synthetic-only`` runs this part
  alone).
Asserts nothing. Usage: .venv/bin/python bench/search.py [--duration 10] [--synthetic 1000000]
[--reuse] (--reuse keeps the indexes an earlier run left in --work: the figures then come
from the current code against them, the build figures from that earlier run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared/data/search"
sys.path.insert(0, str(HERE))
from distributed import processes, serve, wait_for  # noqa: E402
from gateway_overhead import free_port, run_wrk  # noqa: E402
from sandbox_local import lua_post  # noqa: E402


def build(corpus: Path, out: Path, *extra: str, reuse: bool = False) -> dict:
    """Index ``corpus`` into ``out``; with ``reuse``, an index already there is kept (its
    meta.json holds the build figures of the run that made it)."""
    if reuse and (out / "meta.json").exists():
        return json.loads((out / "meta.json").read_text())
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolfleet.search.cli",
            "build",
            str(corpus),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    meta = json.loads(done.stdout)
    meta["wall_s"] = time.perf_counter() - started
    return meta


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def recall(base: str, questions: list[dict], index: str, retriever: str) -> tuple[float, float]:
    hit1 = hit5 = 0
    with httpx.Client(base_url=base, timeout=300) as http:
        for start in range(0, len(questions), 64):
            chunk = questions[start : start + 64]
            obs = http.post(
                "/v1/tools/search/call",
                json={
                    "arguments": {
                        "queries": [q["question"] for q in chunk],
                        "top_k": 5,
                        "index": index,
                        "retriever": retriever,
                    }
                },
            ).json()
            for q, hits in zip(chunk, obs["data"]["results"], strict=True):
                ids = [h["id"] for h in hits]
                hit1 += bool(ids) and ids[0] == q["passage_id"]
                hit5 += q["passage_id"] in ids
    return hit1 / len(questions), hit5 / len(questions)


def latency(base: str, questions: list[dict], index: str, retriever: str, duration: int) -> dict:
    single = [
        {"arguments": {"query": q["question"], "top_k": 10, "index": index, "retriever": retriever}}
        for q in questions[:200]
    ]
    batches = [
        {
            "arguments": {
                "queries": [q["question"] for q in questions[i : i + 64]],
                "top_k": 10,
                "index": index,
                "retriever": retriever,
            }
        }
        for i in range(0, 64 * 20, 64)
    ]
    out = {}
    for name, bodies in (("single", single), ("batch64", batches)):
        # one call first: it waits out whatever the previous measurement left running
        httpx.post(f"{base}/v1/tools/search/call", json=bodies[0], timeout=600)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(lua_post(bodies))
        out[name] = run_wrk(f"{base}/v1/tools/search/call", 1, duration, f.name)
        os.unlink(f.name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "toolfleet-search-bench"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep indexes an earlier run built in --work"
    )
    parser.add_argument(
        "--synthetic-only", action="store_true", help="only the synthetic corpus's figures"
    )
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    corpus = DATA / "squad_v1.1_corpus.jsonl"
    questions = [json.loads(line) for line in (DATA / "squad_v1.1_dev_questions.jsonl").open()]

    if not args.synthetic_only:
        real_corpus(args, work, corpus, questions)
    if args.synthetic:
        synthetic_corpus(args, work, questions)
    return 0


def real_corpus(args: argparse.Namespace, work: Path, corpus: Path, questions: list[dict]) -> None:
    """Build, recall and latency figures over the real corpus."""
    dev = work / "dev.jsonl"
    with corpus.open() as f, dev.open("w") as w:
        w.writelines(line for line in f if '"squad-dev-' in line)
    full = build(corpus, work / "full", reuse=args.reuse)
    print(
        f"BM25 build, {full['passages']} passages: {full['build_seconds']['bm25_s']:.1f} s, "
        f"{full['passages'] / full['build_seconds']['bm25_s']:.0f} passages/s"
    )
    dense = build(dev, work / "dev", "--dense", reuse=args.reuse)
    print(
        f"dense build, {dense['passages']} passages: {dense['build_seconds']['dense_s']:.0f} s, "
        f"{dense['passages'] / dense['build_seconds']['dense_s']:.1f} passages/s (numpy MiniLM)"
    )

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    indexes = json.dumps({"full": str(work / "full"), "dev": str(work / "dev")})
    with processes(
        serve(port, {"TOOLFLEET_SERVICES": '["search"]', "TOOLFLEET_SEARCH_INDEXES": indexes})
    ):
        wait_for(base, "search")
        print(f"\nrecall of {len(questions)} questions   @1      @5")
        for index, retriever in (
            ("full", "bm25"),
            ("dev", "bm25"),
            ("dev", "dense"),
            ("dev", "hybrid"),
        ):
            r1, r5 = recall(base, questions, index, retriever)
            print(f"  {retriever:<7} over {index:<5}            {r1:.3f}   {r5:.3f}")
        print(f"\nquery latency through the gateway, top-10, wrk c=1, {args.duration} s")
        print(f"  {'what':<34}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>9}")
        for index, retriever in (("full", "bm25"), ("dev", "dense"), ("dev", "hybrid")):
            for name, r in latency(base, questions, index, retriever, args.duration).items():
                print(
                    f"  {retriever + ' over ' + index + ', ' + name:<34}{r['p50_ms']:>9.2f}"
                    f"{r['p99_ms']:>9.2f}{r['rps']:>9.0f}"
                )


def synthetic_corpus(args: argparse.Namespace, work: Path, questions: list[dict]) -> None:
    """Build, size, memory and BM25 latency figures over the synthetic corpus."""
    synth = work / f"synth-{args.synthetic}.jsonl"
    if not synth.exists():
        subprocess.run(
            [
                sys.executable,
                str(HERE / "search_synth.py"),
                str(synth),
                "--passages",
                str(args.synthetic),
            ],
            check=True,
        )
    meta = build(synth, work / "synth", reuse=args.reuse)
    size = du(work / "synth")
    print(
        f"\nsynthetic corpus, {meta['passages']:,} passages "
        f"({synth.stat().st_size / 2**20:.0f} MiB):"
    )
    print(
        f"  BM25 build {meta['build_seconds']['bm25_s']:.0f} s "
        f"({meta['passages'] / meta['build_seconds']['bm25_s']:.0f} passages/s); index on disk "
        f"{size / 2**20:.0f} MiB (passages included)"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env_extra = {
        "TOOLFLEET_SERVICES": '["search"]',
        "TOOLFLEET_SEARCH_INDEXES": json.dumps({"synth": str(work / "synth")}),
    }
    cmd, env = serve(port, env_extra)
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(base, "search", timeout_s=600)
        results = latency(base, questions, "synth", "bm25", args.duration)
        print(f"  serving process RSS {rss_mb(proc.pid):.0f} MiB (index memory-mapped)")
        for name, r in results.items():
            print(
                f"  BM25 top-10 {name:<8} p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                f"{r['rps']:.0f} calls/s"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    scorers(work / "synth", questions)
    fixed_cost(work, questions)


def scorers(index: Path, questions: list[dict], count: int = 300) -> None:
    """In-process BM25 top-10 per query over one index: the compiled scorer the service uses
    against bm25s's numpy scoring (``add.at``) followed by the same top-k."""
    from toolfleet.search.retrievers import BM25Retriever
    from toolfleet.search.topk import top_k

    bm25 = BM25Retriever(index)
    texts = [q["question"] for q in questions[:count]]
    queries = [ids for ids in bm25.token_ids(texts) if ids]
    ways = {
        "compiled (the service's)": lambda ids: bm25.scorer.top(ids, 10),
        "bm25s numpy add.at + top-k": lambda ids: top_k(bm25.model.get_scores_from_ids(ids), 10),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for ids in queries:  # alternating, so both see the same machine
        for name, way in ways.items():
            started = time.perf_counter()
            way(ids)
            times[name].append((time.perf_counter() - started) * 1000)
    print(f"  in-process BM25 top-10 scoring, {len(queries)} questions, median ms per query:")
    for name, spent in times.items():
        print(f"    {name:<30}{statistics.median(spent):.3f}")


def fixed_cost(work: Path, questions: list[dict], repeats: int = 20) -> None:
    """What a BM25 query pays beyond its postings, by corpus size. The real SQuAD index's
    impacts are spread over 1M and 21M rows (passage ``r`` at row ``r * spread``): the
    postings stay the same few thousand a question, the score buffer grows to the corpus's
    size. The service's scorer (block maxima kept while adding, the buffer cleared by
    replaying the postings) against the passes the scorer made before (a block-maxima pass
    over the whole buffer, and zeroing it)."""
    import numpy as np
    from toolfleet.search.impacts import ImpactScorer
    from toolfleet.search.retrievers import BM25Retriever
    from toolfleet.search.topk import top_k

    whole = work / "full"
    if not (whole / "meta.json").exists():
        build(DATA / "squad_v1.1_corpus.jsonl", whole)
    bm25 = BM25Retriever(whole)
    queries = [ids for ids in bm25.token_ids([q["question"] for q in questions[:300]]) if ids]
    impacts = bm25.model.scores
    print("  BM25 per query beyond its postings, median ms (SQuAD postings spread out):")
    print(f"    {'rows':>12}{'scorer (all)':>14}{'old buffer passes':>19}")
    for rows in (1_000_000, 21_000_000):
        spread = rows // bm25.size
        scorer = ImpactScorer(
            np.asarray(impacts["data"]),
            np.asarray(impacts["indices"]).astype(np.int64) * spread,
            np.asarray(impacts["indptr"]),
            bm25.size * spread,
        )
        spent = []
        for ids in queries:
            started = time.perf_counter()
            scorer.top(ids, 10)
            spent.append((time.perf_counter() - started) * 1000)
        scores = np.zeros(bm25.size * spread, np.float32)
        old = []
        for _ in range(repeats):
            scores[np.asarray(impacts["indices"][:1000]) * spread] = 1.0
            started = time.perf_counter()
            top_k(scores, 10)
            scores.fill(0)
            old.append((time.perf_counter() - started) * 1000)
        print(
            f"    {bm25.size * spread:>12,}{statistics.median(spent):>14.3f}"
            f"{statistics.median(old):>19.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
