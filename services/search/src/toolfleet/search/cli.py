"""``toolfleet search``: make the indexes the search service serves.

- ``build CORPUS.jsonl --out DIR [--dense --index-type flat|hnsw|ivf-pq]``: BM25 (and dense
  embeddings with an ANN index) of a corpus, ``{id, title, text}`` or Search-R1's
  ``{id, contents}``, read as a stream;
- ``ann DIR --index-type ...``: another ANN index from an index's embeddings;
- ``import --corpus wiki-18.jsonl --faiss-index e5_Flat.index --encoder DIR --out DIR``:
  serve Search-R1's corpus and FAISS index file as they are.

Serve the result with ``TOOLFLEET_SEARCH_INDEXES='{"NAME": "DIR"}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from toolfleet.search.corpus import CorpusError

if TYPE_CHECKING:  # the libraries load only when a command runs (--help stays quick)
    from toolfleet.search.dense import AnnParams
    from toolfleet.search.encoders import EncoderSpec


# Quantizing a model to int8 takes ~1.5 min of a quiet 2-core machine once per corpus, and
# int8 embeds ~1.4x faster than bf16 (docs/search.md): it pays for itself from about 15k
# passages, so smaller corpora (and the test suite's) are embedded in bf16.
INT8_FROM = 20_000


def _auto_precision(corpus: Path, limit: int | None) -> str:
    """int8 when the corpus (its first ``limit`` lines) is large enough to repay quantizing."""
    with corpus.open("rb") as f:
        count = 0
        for count, _ in enumerate(f, start=1):
            if count >= INT8_FROM or (limit is not None and count >= limit):
                break
    return "int8" if count >= INT8_FROM else "bf16"


def _encoder_options(parser: argparse.ArgumentParser, precision: str) -> None:
    group = parser.add_argument_group("encoder (dense)")
    group.add_argument(
        "--encoder",
        default="all-MiniLM-L6-v2",
        help="all-MiniLM-L6-v2 (packaged) or a local Hugging Face model directory",
    )
    group.add_argument("--pooling", choices=["mean", "cls", "pooler"])
    group.add_argument("--query-prefix", help="text put before each query")
    group.add_argument("--passage-prefix", help="text put before each passage")
    group.add_argument("--no-normalize", action="store_true", help="keep embeddings' length")
    group.add_argument("--max-length", type=int, default=256, help="tokens per text at most")
    group.add_argument("--runtime", choices=["openvino", "onnxruntime"], default="openvino")
    group.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8", *(["auto"] if precision == "auto" else [])],
        default=precision,
        help="openvino: bf16 on CPUs with AVX-512 BF16 / AMX; int8 (quantized by NNCF, "
        "calibrated on the corpus's first 300 passages) with VNNI / AMX; auto: int8 for "
        f"corpora of {INT8_FROM:,} passages or more, else bf16 (default {precision})",
    )


def _ann_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ANN index (dense)")
    group.add_argument("--index-type", choices=["flat", "hnsw", "ivf-pq"], default="flat")
    group.add_argument("--hnsw-m", type=int, default=32)
    group.add_argument("--ef-construction", type=int, default=80)
    group.add_argument("--ef-search", type=int, default=128)
    group.add_argument("--nlist", type=int, help="IVF cells (default 4*sqrt(passages))")
    group.add_argument("--pq-m", type=int, help="PQ bytes per vector (default dimension/8)")
    group.add_argument("--nprobe", type=int, default=32)
    group.add_argument("--rerank", type=int, default=4, help="ivf-pq: exact rescoring factor")


def _spec(args: argparse.Namespace, search_r1_name: str | None = None) -> EncoderSpec:
    from toolfleet.search.encoders import EncoderSpec

    base = (
        EncoderSpec.search_r1(search_r1_name, args.encoder, args.max_length)
        if search_r1_name
        else EncoderSpec(model=args.encoder, max_length=args.max_length)
    )
    update: dict[str, object] = {"runtime": args.runtime, "precision": args.precision}
    for field, value in (
        ("pooling", args.pooling),
        ("query_prefix", args.query_prefix),
        ("passage_prefix", args.passage_prefix),
    ):
        if value is not None:
            update[field] = value
    if args.no_normalize:
        update["normalize"] = False
    return EncoderSpec.model_validate({**base.model_dump(), **update})


def _ann(args: argparse.Namespace) -> AnnParams:
    from toolfleet.search.dense import AnnParams

    return AnnParams(
        index_type=args.index_type,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ef_search=args.ef_search,
        nlist=args.nlist,
        pq_m=args.pq_m,
        nprobe=args.nprobe,
        rerank=args.rerank,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``toolfleet search``."""
    parser = argparse.ArgumentParser(
        prog="toolfleet search", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="index a JSON Lines corpus")
    build.add_argument("corpus", type=Path, help="corpus.jsonl")
    build.add_argument("--out", type=Path, required=True, help="index directory to write")
    build.add_argument("--dense", action="store_true", help="also embed passages for dense search")
    build.add_argument("--limit", type=int, help="index only the first N passages")
    build.add_argument(
        "--processes",
        type=int,
        help="embedding processes of one thread each (default: 1 process on every core for "
        "openvino, whose own threads measured faster; one per core for onnxruntime)",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    _encoder_options(build, "auto")
    _ann_options(build)

    ann = sub.add_parser("ann", help="make another ANN index from an index's embeddings")
    ann.add_argument("index", type=Path, help="an index directory built with --dense")
    _ann_options(ann)

    imp = sub.add_parser("import", help="serve a Search-R1 corpus and FAISS index as they are")
    imp.add_argument("--corpus", type=Path, required=True, help="the corpus JSONL (wiki-18.jsonl)")
    imp.add_argument("--faiss-index", type=Path, required=True, help="e5_Flat.index, or any")
    imp.add_argument(
        "--retriever-name",
        default="e5",
        help="Search-R1's --retriever_name: e5 adds 'query: ', bge its instruction, dpr keeps "
        "length (the other encoder options override)",
    )
    imp.add_argument("--out", type=Path, required=True, help="index directory to write")
    imp.add_argument("--bm25", action="store_true", help="also build BM25 (for hybrid search)")
    imp.add_argument("--quiet", action="store_true", help="no progress bars")
    _encoder_options(imp, "fp32")
    args = parser.parse_args(argv)

    from pydantic import ValidationError
    from toolfleet.search.encoders import EncoderError
    from toolfleet.search.index import build_index, import_faiss, remake_ann

    try:
        if args.command == "build":
            if not args.corpus.is_file():
                return _fail(f"no such corpus file: {args.corpus}")
            if args.precision == "auto":
                args.precision = _auto_precision(args.corpus, args.limit)
            meta = build_index(
                args.corpus,
                args.out,
                dense=args.dense,
                progress=not args.quiet,
                limit=args.limit,
                encoder=_spec(args),
                ann=_ann(args),
                processes=args.processes
                if args.processes is not None
                else (1 if args.runtime == "openvino" else os.cpu_count() or 1),
            )
        elif args.command == "ann":
            meta = remake_ann(args.index, _ann(args))
        else:
            for path in (args.corpus, args.faiss_index):
                if not path.is_file():
                    return _fail(f"no such file: {path}")
            meta = import_faiss(
                args.corpus,
                args.faiss_index,
                _spec(args, args.retriever_name),
                args.out,
                bm25=args.bm25,
                progress=not args.quiet,
            )
    except (CorpusError, EncoderError, ValidationError, ValueError, RuntimeError) as exc:
        return _fail(str(exc))
    print(json.dumps(meta, indent=2))
    return 0


def _fail(message: str) -> int:
    print(f"toolfleet search: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
