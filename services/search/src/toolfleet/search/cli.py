"""``toolfleet search build CORPUS.jsonl --out DIR``: make an index the search service serves.

The corpus is JSON Lines, ``{id, title, text}`` or Search-R1's ``{id, contents}``; it is read
as a stream. Serve the result with ``TOOLFLEET_SEARCH_INDEXES='{"NAME": "DIR"}'``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from toolfleet.search.corpus import CorpusError


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``toolfleet search``."""
    parser = argparse.ArgumentParser(prog="toolfleet search", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="index a JSON Lines corpus")
    build.add_argument("corpus", type=Path, help="corpus.jsonl")
    build.add_argument("--out", type=Path, required=True, help="index directory to write")
    build.add_argument(
        "--dense", action="store_true", help="also embed passages (MiniLM) for dense search"
    )
    build.add_argument("--limit", type=int, help="index only the first N passages")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    from toolfleet.search.index import build_index

    if not args.corpus.is_file():
        print(f"toolfleet search: no such corpus file: {args.corpus}", file=sys.stderr)
        return 2
    try:
        meta = build_index(
            args.corpus, args.out, dense=args.dense, progress=not args.quiet, limit=args.limit
        )
    except CorpusError as exc:
        print(f"toolfleet search: {args.corpus}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
