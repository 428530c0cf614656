"""The deployment's service list, read from the workspace: every package under ``services/``
whose pyproject.toml declares a ``toolfleet.services`` entry point is a service, deployed as
an image ``toolfleet-<name>`` running ``toolfleet worker <name>``; the gateway is the image
that serves them. What builds images, compose and Kubernetes reads the list from here, so a
new service is one package and its entry point.

    python3 deploy/docker/services.py             # one name a line: gateway, then services
    python3 deploy/docker/services.py --workers   # the services only
    python3 deploy/docker/services.py --dockerfile NAME   # the Dockerfile that builds NAME

An image is built by ``deploy/docker/Dockerfile`` (``--build-arg SERVICE=<name>``) unless
the package has a Dockerfile of its own (the sandbox: its kernel image and runtime).

Python 3.11+ (tomllib); no third-party imports.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = "gateway"
SHARED_DOCKERFILE = "deploy/docker/Dockerfile"


def services(root: Path = ROOT) -> list[str]:
    """The names of the workspace's services (their ``toolfleet.services`` entry points)."""
    found: set[str] = set()
    for pyproject in sorted(root.glob("services/*/pyproject.toml")):
        with pyproject.open("rb") as f:
            project = tomllib.load(f).get("project", {})
        for name in project.get("entry-points", {}).get("toolfleet.services", {}):
            if name != pyproject.parent.name:
                raise SystemExit(f"{pyproject}: service {name!r} must be in services/{name}/")
            found.add(name)
    return sorted(found)


def dockerfile(name: str, root: Path = ROOT) -> str:
    """The Dockerfile (relative to ``root``) that builds ``name``'s image."""
    own = root / "services" / name / "Dockerfile"
    return str(own.relative_to(root)) if own.is_file() else SHARED_DOCKERFILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", action="store_true", help="the services only")
    parser.add_argument("--dockerfile", metavar="NAME", help="the Dockerfile of NAME's image")
    args = parser.parse_args(argv)
    if args.dockerfile:
        print(dockerfile(args.dockerfile))
        return 0
    names = services() if args.workers else [GATEWAY, *services()]
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
