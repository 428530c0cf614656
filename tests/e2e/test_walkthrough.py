"""The README's and the docs' shell blocks, extracted from the markdown and run as they are
written against one fresh gateway, so a doc that drifts from the code fails here.

Rules, said in the README too:

- Every fenced ``bash``/``sh`` block of ``README.md`` and ``docs/**/*.md`` runs, in a fresh
  directory holding the checkout's ``.venv`` and ``examples`` (the commands use
  ``.venv/bin/...``), with ``bash -e``: a command that fails fails the test.
- ``localhost:8000``, ``127.0.0.1:8000`` and ``TOOLFLEET_HOST:8000`` are the walkthrough's
  gateway, started like ``make run`` (``toolfleet serve``) on a free port, with a small search
  index and the ``chinook`` database served (what the docs say the search and SQL examples
  need); a line that starts a gateway itself (``make run``, ``toolfleet serve``) is left out,
  since that gateway is already serving.
- A block preceded by ``<!-- walkthrough: skip (why) -->`` does not run (a GPU trainer, your
  own data, containers, Redis workers): the set is kept small, and each says why.
- A ``python`` block preceded by ``<!-- walkthrough: python -->`` runs with ``.venv/bin/python``.
- What a block prints must hold no gateway error body (``{"error":{"code": ...``: a 422, a
  404 session, a 500 ...), and what it writes to stderr no traceback and no
  "command not found".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, SHARED_DATA, serving

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(  # a fence may be indented (in a list item); its marker line just above
    r"(?:^ {0,3}<!-- walkthrough: (?P<marker>[^>]*?) -->\n)?"
    r"^(?P<indent> {0,3})```(?P<lang>[a-z]*)\n(?P<code>.*?)^(?P=indent)```",
    re.S | re.M,
)
STARTS_GATEWAY = re.compile(r"^\s*(make run|\.venv/bin/toolfleet serve)\b.*$", re.M)
GATEWAY_ADDRESS = re.compile(r"\b(localhost|127\.0\.0\.1|TOOLFLEET_HOST):8000\b")
ERROR_BODY = re.compile(r'\{"error":\s*\{"code":')
MAX_SKIPPED = 16  # the blocks that cannot run here (GPU, your data, containers): keep it small
#: A command that needs uv on the PATH, which ``make`` does not put there (it may bootstrap uv
#: into .tools/): documented commands use ``.venv/bin/...`` or a make target instead.
NEEDS_UV = re.compile(r"(?:^|[^/\w.-])uv (?:run|sync|lock|pip|add|tool)\b", re.M)


@dataclass
class Block:
    """One fenced block of a markdown file."""

    path: Path
    number: int  # 1-based, among the file's fenced blocks
    lang: str
    marker: str | None
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}#{self.number}"

    @property
    def runs(self) -> bool:
        if self.marker is not None and self.marker.startswith("skip"):
            return False
        if self.lang in ("bash", "sh", "shell"):
            return True
        return self.lang == "python" and self.marker == "python"


def blocks() -> list[Block]:
    """Every fenced block of the README and the docs."""
    found = []
    for path in DOCS:
        for number, m in enumerate(FENCE.finditer(path.read_text()), 1):
            code = textwrap.dedent(m["code"])
            found.append(Block(path, number, m["lang"], m["marker"], code))
    return found


RUNNABLE = [b for b in blocks() if b.runs]


def test_the_skipped_blocks_are_few_and_say_why() -> None:
    skipped = [b for b in blocks() if b.marker and b.marker.startswith("skip")]
    assert len(skipped) <= MAX_SKIPPED, [b.name for b in skipped]
    assert all(re.fullmatch(r"skip \(.+\)", b.marker or "") for b in skipped), skipped
    unknown = [b.name for b in blocks() if b.marker and not b.marker.startswith(("skip", "python"))]
    assert unknown == []
    assert len(RUNNABLE) >= 8  # the README's curl, CLI and Python blocks at least


def test_no_documented_command_needs_uv_on_the_path() -> None:
    """Every command the README, the docs, the examples' and the bench scripts' usage lines
    give works verbatim on a fresh machine after ``make run``, prose included."""
    written = [*DOCS, *(ROOT / "examples").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    written.append(ROOT / "bench" / "README.md")
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in written
        for text in [path.read_text()]
        for m in NEEDS_UV.finditer(text)
    ]
    assert found == []


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("walkthrough-data")
    corpus = data / "corpus.jsonl"
    with (SHARED_DATA / "search" / "squad_v1.1_corpus.jsonl").open() as source:
        lines = [next(source) for _ in range(300)]
    abc = {
        "id": "abc",
        "title": "ABC",
        "text": "The American Broadcasting Company (ABC) was founded in 1943 from the former "
        "NBC Blue radio network, bought by Edward J. Noble.",
    }
    corpus.write_text("".join(lines) + json.dumps(abc) + "\n")
    index = data / "index"
    subprocess.run(
        [ROOT / ".venv/bin/toolfleet", "search", "build", corpus, "--out", index, "--quiet"],
        check=True,
        timeout=600,
    )
    env = {
        "TOOLFLEET_SEARCH_INDEXES": json.dumps({"demo": str(index)}),
        "TOOLFLEET_SQL_SQLITE_FILES": json.dumps(
            {"chinook": str(SHARED_DATA / "sql" / "chinook.sqlite")}
        ),
    }
    with serving(env=env, timeout_s=600) as url:
        yield url


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_block_runs_as_written(block: Block, gateway_url: str, tmp_path: Path) -> None:
    address = gateway_url.removeprefix("http://")
    code = GATEWAY_ADDRESS.sub(address, STARTS_GATEWAY.sub("", block.code))
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
    env["TOOLFLEET_URL"] = gateway_url
    if block.lang == "python":
        command = [str(ROOT / ".venv/bin/python"), "-c", code]
    else:
        command = ["bash", "-e", "-c", code]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    said = (
        f"{block.name}\n--- code\n{code}\n--- stdout\n{done.stdout[-3000:]}"
        f"\n--- stderr\n{done.stderr[-3000:]}"
    )
    assert done.returncode == 0, said
    assert not ERROR_BODY.search(done.stdout), said
    for bad in ("Traceback (most recent call last)", "command not found"):
        assert bad not in done.stderr, said
