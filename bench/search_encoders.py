"""Encoder throughput and retrieval quality on the real SQuAD data (../shared/data/search).

Prints:
- passages/s embedding SQuAD passages (title + text, ~170 tokens on average) on this
  machine's cores: the old numpy MiniLM path with OPENBLAS_CORETYPE unset and set
  (``--coretype``, default Haswell: set on some of these machines, it picks slower kernels),
  then the ONNX graph run by ONNX Runtime (fp32) and OpenVINO (fp32, bf16), in one process on
  every core and over a pool of one-thread processes (``toolfleet search build``'s way);
  and the same for a base-size BERT (12 layers, 768 wide: e5-base-v2's shape) whose weights
  are seeded random numbers (throughput does not depend on their values; e5-base's weights
  are not on this machine);
- recall@1/@5 of the 6,529 dev questions: BM25 over the whole corpus, and BM25, dense (each
  shipped encoder setting) and hybrid over the 2,067 dev passages (every question's gold
  passage is there), with ``--full`` dense and hybrid over the whole corpus too (bf16).

Asserts nothing. Usage: .venv/bin/python bench/search_encoders.py [--passages 512] [--full]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from toolfleet.search.index import SearchIndex

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared/data/search"


def passages(n: int) -> list[str]:
    out = []
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f:
        for line in f:
            p = json.loads(line)
            out.append(f"{p['title']}\n{p['text']}")
            if len(out) == n:
                break
    return out


def numpy_rate(n: int) -> None:
    """Child: the old numpy encoder's passages/s, and the BLAS kernel it ran."""
    from threadpoolctl import threadpool_info
    from toolfleet.search.encoder import Encoder

    texts = passages(n)
    encoder = Encoder()
    encoder.encode(texts[:8])
    started = time.perf_counter()
    encoder.encode(texts)
    rate = n / (time.perf_counter() - started)
    kernel = next(
        (i.get("architecture") for i in threadpool_info() if "numpy" in i["filepath"]), "?"
    )
    print(json.dumps({"rate": rate, "kernel": kernel}))


def base_model(directory: Path) -> Path:
    """A BERT-base-shaped model directory (seeded random weights, MiniLM's tokenizer)."""
    from safetensors.numpy import save_file
    from toolfleet.search.encoders import EncoderSpec

    if (directory / "model.safetensors").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    hidden, inner, layers, vocab = 768, 3072, 12, 30522
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": w(vocab, hidden),
        "embeddings.position_embeddings.weight": w(512, hidden),
        "embeddings.token_type_embeddings.weight": w(2, hidden),
        "embeddings.LayerNorm.weight": np.ones(hidden, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(hidden, np.float32),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (rows, cols) in {
            "attention.self.query": (hidden, hidden),
            "attention.self.key": (hidden, hidden),
            "attention.self.value": (hidden, hidden),
            "attention.output.dense": (hidden, hidden),
            "intermediate.dense": (inner, hidden),
            "output.dense": (hidden, inner),
        }.items():
            weights[p + name + ".weight"] = w(rows, cols)
            weights[p + name + ".bias"] = np.zeros(rows, np.float32)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[p + norm + ".weight"] = np.ones(hidden, np.float32)
            weights[p + norm + ".bias"] = np.zeros(hidden, np.float32)
    save_file(weights, str(directory / "model.safetensors"))
    minilm = EncoderSpec().directory()
    config = json.loads((minilm / "config.json").read_text())
    config.update(hidden_size=hidden, intermediate_size=inner, num_hidden_layers=layers)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_bytes((minilm / "tokenizer.json").read_bytes())
    return directory


VARIANTS = (  # runtime, precision, processes (0: one process on every core)
    ("onnxruntime", "fp32", 0),
    ("openvino", "fp32", 0),
    ("openvino", "bf16", 0),
    ("openvino", "bf16", -1),
    ("openvino", "int8", 0),
    ("openvino", "int8", -1),
)


def onnx_rates(
    model: str,
    texts: list[str],
    calibration: list[str],
    label: str,
    rounds: int,
    variants: tuple[tuple[str, str, int], ...] = VARIANTS,
) -> None:
    """passages/s of each variant, alternated over ``rounds`` rounds (the machine is shared:
    a variant run alone would take whatever load came then), the median; the cosine of
    its passage embeddings with OpenVINO fp32's; one query's p50 in process."""
    from toolfleet.search.encode_pool import EncoderPool
    from toolfleet.search.encoders import EncoderSpec, TextEncoder
    from toolfleet.search.quantize import calibrate

    cores = os.cpu_count() or 1
    with (DATA / "squad_v1.1_dev_questions.jsonl").open() as f:
        questions = [json.loads(line)["question"] for _, line in zip(range(32), f, strict=False)]
    with contextlib.ExitStack() as stack:
        pools, rates, cpu, embeddings, single = {}, {}, {}, {}, {}
        for runtime, precision, processes in variants:
            spec = EncoderSpec(model=model, runtime=runtime, precision=precision)
            spec = calibrate(spec, lambda: calibration)
            n = cores if processes < 0 else 1
            key = (runtime, precision, processes)
            pools[key] = stack.enter_context(EncoderPool(spec, n))
            embeddings[key] = pools[key].encode(texts, "passage")  # warms every process
            rates[key], cpu[key] = [], []
            if processes == 0:
                encoder = TextEncoder(spec)
                times = []
                for q in questions:
                    started = time.perf_counter()
                    encoder.encode([q])
                    times.append(time.perf_counter() - started)
                single[key] = 1000 * float(np.median(times))
        for _ in range(rounds):
            for key, pool in pools.items():
                started, used = time.perf_counter(), time.process_time()
                for _ in pool.stream(iter(texts), "passage", chunk=64):
                    pass
                rates[key].append(len(texts) / (time.perf_counter() - started))
                # passages per CPU-second of this process (in-process rows only): what the
                # cores give when other programs take their share of them
                cpu[key].append(len(texts) / (time.process_time() - used))
        reference = embeddings.get(("openvino", "fp32", 0))
        for (runtime, precision, processes), rate in rates.items():
            way = "1 process, every core" if processes == 0 else f"{cores} processes x 1"
            query = single.get((runtime, precision, processes))
            line = f"  {label:<10}{runtime + ' ' + precision:<18}{way:<24}"
            line += f"{float(np.median(rate)):>8.1f}"
            if processes == 0:
                line += f"  per CPU-s {float(np.median(cpu[(runtime, precision, processes)])):.1f}"
            if reference is not None:
                cosine = (embeddings[(runtime, precision, processes)] * reference).sum(1)
                line += f"  cos {cosine.mean():.4f}/{cosine.min():.4f}"
            line += f"  query p50 {query:.1f} ms" if query else ""
            rounds_text = " ".join(f"{r:.1f}" for r in rate)
            print(f"{line}  (rounds {rounds_text}; load {os.getloadavg()[0]:.1f})")


def recall(index: SearchIndex, questions: list[dict], retriever: str) -> tuple[float, float]:
    hit1 = hit5 = 0
    for start in range(0, len(questions), 64):
        chunk = questions[start : start + 64]
        found = index.search([q["question"] for q in chunk], 5, retriever)
        for q, hits in zip(chunk, found, strict=True):
            ids = [index.passage(row).id for row, _ in hits]
            hit1 += bool(ids) and ids[0] == q["passage_id"]
            hit5 += q["passage_id"] in ids
    return hit1 / len(questions), hit5 / len(questions)


def quality(work: Path, full: bool, precisions: list[str]) -> None:
    from toolfleet.search.encoders import EncoderSpec
    from toolfleet.search.index import SearchIndex, build_index

    questions = [json.loads(line) for line in (DATA / "squad_v1.1_dev_questions.jsonl").open()]
    dev = work / "dev.jsonl"
    with (DATA / "squad_v1.1_corpus.jsonl").open() as f, dev.open("w") as out:
        out.writelines(line for line in f if '"squad-dev-' in line)
    print(f"\nrecall of {len(questions)} SQuAD dev questions          @1      @5   embed/s")
    rows = []
    whole = work / "whole-bm25"
    if not (whole / "meta.json").exists():
        build_index(DATA / "squad_v1.1_corpus.jsonl", whole)
    rows.append(("bm25, whole corpus (20,963)", SearchIndex("w", whole), "bm25", None))
    settings = [("openvino", "bf16"), ("openvino", "int8"), ("openvino", "fp32"),
                ("onnxruntime", "fp32")]  # fmt: skip
    for runtime, precision in settings:
        if precision not in precisions:
            continue
        out = work / f"dev-{runtime}-{precision}"
        if not (out / "meta.json").exists():
            spec = EncoderSpec(runtime=runtime, precision=precision)
            build_index(dev, out, dense=True, encoder=spec, processes=os.cpu_count() or 1)
        index = SearchIndex("d", out)
        rate = json.loads((out / "meta.json").read_text())["dense"]["passages_per_s"]
        if runtime == "openvino" and precision == "bf16":
            rows.append(("bm25, dev passages (2,067)", index, "bm25", None))
        name = f"MiniLM {runtime} {precision}"
        rows.append((f"dense {name}, dev", index, "dense", rate))
        rows.append((f"hybrid {name}, dev", index, "hybrid", None))
    for precision in precisions if full else []:
        out = work / f"whole-{precision}"
        if not (out / "meta.json").exists():
            spec = EncoderSpec(precision=precision)
            build_index(DATA / "squad_v1.1_corpus.jsonl", out, dense=True, encoder=spec,
                        processes=os.cpu_count() or 1)  # fmt: skip
        index = SearchIndex("f", out)
        rate = json.loads((out / "meta.json").read_text())["dense"]["passages_per_s"]
        rows.append((f"dense MiniLM {precision}, whole corpus", index, "dense", rate))
        rows.append((f"hybrid MiniLM {precision}, whole corpus", index, "hybrid", None))
    for name, index, retriever, rate in rows:
        r1, r5 = recall(index, questions, retriever)
        extra = f"{rate:>10.1f}" if rate else ""
        print(f"  {name:<44}{r1:>6.3f}  {r5:>6.3f}{extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--numpy-passages", type=int, default=64)
    parser.add_argument("--coretype", default="Haswell")
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--base-passages", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (median)")
    parser.add_argument(
        "--precisions", default="bf16,int8,fp32", help="the recall rows' precisions"
    )
    parser.add_argument("--skip-numpy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--base-all", action="store_true", help="base-size: fp32 rows too")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "toolfleet-encoder-bench"
    )
    parser.add_argument("--numpy-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.numpy_child:
        numpy_rate(args.numpy_child)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"passages/s, SQuAD passages, {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})")
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_CORE")}
    base.pop("OPENBLAS_L2_SIZE", None)
    numpy_runs = [("unset", {}), (args.coretype, {"OPENBLAS_CORETYPE": args.coretype})]
    for label, extra in [] if args.skip_numpy else numpy_runs:
        done = subprocess.run(
            [sys.executable, __file__, "--numpy-child", str(args.numpy_passages)],
            env={**base, **extra}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(done.stdout.splitlines()[-1])
        print(f"  {'MiniLM':<10}{'numpy (old)':<18}{'OPENBLAS_CORETYPE ' + label:<24}"
              f"{r['rate']:>8.1f}  ({r['kernel']} kernels)")  # fmt: skip
    if not args.skip_speed:
        texts = passages(args.passages)
        # int8's calibration: 300 passages far from the measured ones (the build takes the
        # corpus's first 300); 64 for the base-size model, whose random weights make its
        # fidelity meaningless anyway (its speed is what is measured)
        calibration = passages(10_300)[10_000:]
        onnx_rates("all-MiniLM-L6-v2", texts, calibration, "MiniLM", args.rounds)
        base = [v for v in VARIANTS if args.base_all or (v[1] != "fp32" and v[2] == 0)]
        onnx_rates(str(base_model(args.work / "bert-base-shape")), texts[: args.base_passages],
                   calibration[:64], "base-size", args.rounds, tuple(base))  # fmt: skip
    if not args.skip_quality:
        quality(args.work, args.full, args.precisions.split(","))
    return 0


if __name__ == "__main__":
    sys.exit(main())
