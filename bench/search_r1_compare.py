"""toolfleet side by side with Search-R1's own retrieval server, on the same index and queries.

Search-R1's code is not part of toolfleet: give a checkout of it (``--search-r1``, the
repository's root) and a Python environment that runs it (``--python``: torch, transformers,
datasets, faiss-cpu, fastapi, uvicorn). This script then, all on this machine:

1. writes the SQuAD dev passages (2,067) as a wiki-18-shaped corpus (``{"id",
   "contents": "\\"Title\\"\\ntext"}``);
2. builds its FAISS Flat index with Search-R1's ``index_builder.py`` (``--retrieval_method
   e5``: ``passage: `` prefix, mean pooling, unit vectors, 256 tokens) using the packaged
   all-MiniLM-L6-v2 directory as the model (e5-base-v2's weights are not on this machine;
   the code path is e5's);
3. starts Search-R1's ``retrieval_server.py`` on that index, and toolfleet's gateway on the
   same files after ``toolfleet search import`` (fp32, and bf16);
4. sends both the same ``POST /retrieve`` bodies (SQuAD dev questions, topk 10, scores):
   identical top-k or not, per query, and latency p50/p99 and queries/s for single queries
   and batches of 64 (sequential calls, one at a time).

Search-R1's scripts expect CUDA (``.cuda()`` calls, ``model.half()``); a small preamble run
before them (written here, not theirs) makes ``.cuda()`` a no-op, keeps fp32 (``.half()`` a
no-op: fp16 on a CPU is slow and is not what a GPU computes either), and binds the server to
127.0.0.1 on a free port. Nothing else of theirs is changed.

Usage: .venv/bin/python bench/search_r1_compare.py --search-r1 /tmp/Search-R1 \\
           --python /tmp/sr1-venv/bin/python [--work /tmp/...] [--batches 10]
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
from gateway_overhead import free_port  # noqa: E402

PREAMBLE = """
import os, runpy, sys
import torch, transformers, uvicorn
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.nn.Module.half = lambda self, *a, **k: self
torch.Tensor.cuda = lambda self, *a, **k: self
_to = transformers.BatchEncoding.to
transformers.BatchEncoding.to = (
    lambda self, device, **k: self if device == "cuda" else _to(self, device, **k)
)
_run = uvicorn.run
uvicorn.run = lambda app, **k: _run(
    app, host="127.0.0.1", port=int(os.environ["SR1_PORT"]), log_level="warning"
)
script = sys.argv.pop(1)
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


def write_corpus(path: Path) -> int:
    rows = 0
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f, path.open("w") as out:
        for line in f:
            p = json.loads(line)
            if p["id"].startswith("squad-dev-"):
                contents = f'"{p["title"]}"\n{p["text"]}'
                out.write(json.dumps({"id": str(rows), "contents": contents}) + "\n")
                rows += 1
    return rows


def timed(url: str, bodies: list[dict]) -> tuple[list[float], list[dict]]:
    spent, answers = [], []
    with httpx.Client(timeout=600) as http:
        http.post(url, json=bodies[0]).raise_for_status()  # warm
        for body in bodies:
            started = time.perf_counter()
            r = http.post(url, json=body)
            spent.append((time.perf_counter() - started) * 1000)
            r.raise_for_status()
            answers.append(r.json())
    return spent, answers


def same_top_k(a: list[dict], b: list[dict]) -> tuple[int, int, float]:
    """Queries answered with identical documents in identical order, of all; the largest
    score difference."""
    same = total = 0
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for docs_x, docs_y in zip(x["result"], y["result"], strict=True):
            total += 1
            same += [d["document"] for d in docs_x] == [d["document"] for d in docs_y]
            worst = max(
                worst,
                max(abs(p["score"] - q["score"]) for p, q in zip(docs_x, docs_y, strict=True)),
            )
    return same, total, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--search-r1", type=Path, required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "toolfleet-sr1-bench"
    )
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--singles", type=int, default=100)
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    from toolfleet.search.encoders import EncoderSpec

    model = EncoderSpec().directory()
    preamble = work / "cpu_preamble.py"
    preamble.write_text(PREAMBLE)
    corpus = work / "corpus.jsonl"
    count = write_corpus(corpus)
    index_file = work / "sr1" / "e5_Flat.index"
    if not index_file.exists():
        started = time.perf_counter()
        builder = args.search_r1 / "search_r1/search/index_builder.py"
        subprocess.run(
            [
                args.python,
                str(preamble),
                str(builder),
                "--retrieval_method",
                "e5",
                "--model_path",
                str(model),
                "--corpus_path",
                str(corpus),
                "--save_dir",
                str(work / "sr1"),
                "--max_length",
                "256",
                "--batch_size",
                "64",
                "--pooling_method",
                "mean",
                "--faiss_type",
                "Flat",
            ],
            check=True,
            capture_output=True,
        )
        print(
            f"Search-R1 index_builder.py: {count} passages in "
            f"{time.perf_counter() - started:.0f} s (torch, CPU, fp32)"
        )
    questions = [
        json.loads(line)["question"] for line in (DATA / "squad_v1.1_dev_questions.jsonl").open()
    ]
    singles = [
        {"queries": [q], "topk": 10, "return_scores": True} for q in questions[: args.singles]
    ]
    batches = [
        {"queries": questions[i : i + 64], "topk": 10, "return_scores": True}
        for i in range(0, 64 * args.batches, 64)
    ]

    sr1_port = free_port()
    server = args.search_r1 / "search_r1/search/retrieval_server.py"
    sr1 = subprocess.Popen(
        [
            args.python,
            str(preamble),
            str(server),
            "--index_path",
            str(index_file),
            "--corpus_path",
            str(corpus),
            "--topk",
            "3",
            "--retriever_name",
            "e5",
            "--retriever_model",
            str(model),
        ],
        env={**os.environ, "SR1_PORT": str(sr1_port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures: dict[str, dict] = {}
    try:
        url = f"http://127.0.0.1:{sr1_port}/retrieve"
        deadline = time.monotonic() + 600
        while True:
            try:
                httpx.post(url, json=singles[0], timeout=60).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or sr1.poll() is not None:
                    raise
                time.sleep(1)
        figures["Search-R1 retrieval_server.py (torch fp32)"] = run(url, singles, batches)
    finally:
        sr1.terminate()
        sr1.wait(timeout=60)

    for precision in ("fp32", "bf16"):
        out = work / f"toolfleet-{precision}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "toolfleet.search.cli",
                "import",
                "--corpus",
                str(corpus),
                "--faiss-index",
                str(index_file),
                "--encoder",
                str(model),
                "--retriever-name",
                "e5",
                "--precision",
                precision,
                "--out",
                str(out),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        env = {
            "TOOLFLEET_SERVICES": '["search"]',
            "TOOLFLEET_SEARCH_INDEXES": json.dumps({"wiki": str(out)}),
            "TOOLFLEET_SEARCH_MAX_TOP_K": "50",
        }
        with processes(serve(port, env)):
            wait_for(f"http://127.0.0.1:{port}", "search", timeout_s=600)
            figures[f"toolfleet /retrieve (OpenVINO {precision})"] = run(
                f"http://127.0.0.1:{port}/retrieve", singles, batches
            )

    reference = figures["Search-R1 retrieval_server.py (torch fp32)"]
    print(
        f"\n{count} passages (FAISS Flat, Search-R1's file), top-10, "
        f"{len(singles)} single queries, {len(batches)} batches of 64, one call at a time"
    )
    print(
        f"{'server':<44}{'1q p50':>8}{'1q p99':>8}{'64q p50':>9}{'64q p99':>9}"
        f"{'q/s @64':>9}  same top-10 as Search-R1"
    )
    for name, f in figures.items():
        same, total, worst = same_top_k(f["answers"], reference["answers"])
        print(
            f"{name:<44}{f['single_p50']:>8.1f}{f['single_p99']:>8.1f}{f['batch_p50']:>9.1f}"
            f"{f['batch_p99']:>9.1f}{f['qps']:>9.0f}  {same}/{total} (score diff <= {worst:.1e})"
        )
    return 0


def run(url: str, singles: list[dict], batches: list[dict]) -> dict:
    one, _ = timed(url, singles)
    many, answers = timed(url, batches)
    return {
        "single_p50": statistics.median(one),
        "single_p99": sorted(one)[int(0.99 * (len(one) - 1))],
        "batch_p50": statistics.median(many),
        "batch_p99": sorted(many)[int(0.99 * (len(many) - 1))],
        "qps": 64 / (statistics.median(many) / 1000),
        "answers": answers,
    }


if __name__ == "__main__":
    sys.exit(main())
