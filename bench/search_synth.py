"""Write a large synthetic corpus from a real one's vocabulary, to show how search cost grows.

Each passage's length is drawn from the real passages' lengths and its words from the real
corpus's word frequencies (unigram); titles are real titles. Deterministic (seeded).

Usage: .venv/bin/python bench/search_synth.py OUT.jsonl [--passages 1000000]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

CORPUS = (
    Path(__file__).resolve().parent.parent.parent / "shared/data/search/squad_v1.1_corpus.jsonl"
)
WORD = re.compile(r"\w+|[^\w\s]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    counts: Counter[str] = Counter()
    lengths, titles = [], []
    with args.corpus.open() as f:
        for line in f:
            p = json.loads(line)
            words = WORD.findall(p["text"])
            counts.update(words)
            lengths.append(len(words))
            titles.append(p["title"])
    vocab = np.array(list(counts))
    probs = np.array(list(counts.values()), dtype=np.float64)
    probs /= probs.sum()
    rng = np.random.default_rng(0)
    chunk = 10_000
    with args.out.open("w") as out:
        for start in range(0, args.passages, chunk):
            n = min(chunk, args.passages - start)
            sizes = rng.choice(lengths, n)
            words = vocab[rng.choice(len(vocab), int(sizes.sum()), p=probs)]
            at = 0
            for i, size in enumerate(sizes):
                text = " ".join(words[at : at + size])
                at += size
                title = titles[rng.integers(len(titles))]
                out.write(
                    json.dumps({"id": f"synth-{start + i}", "title": title, "text": text}) + "\n"
                )
    print(f"{args.passages} passages, vocabulary {len(vocab)} words -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
