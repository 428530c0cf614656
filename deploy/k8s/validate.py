"""Render every kustomization of deploy/k8s and validate the output offline.

For each of ``base`` and ``overlays/*``: ``kubectl kustomize`` renders it (the kubectl of
``install-kubectl.sh``), then every object is checked against its schema: Kubernetes' own
kinds with kubernetes-validate in strict mode (unknown fields are errors) for each Kubernetes
version in ``K8S_VERSIONS``, KEDA's ScaledObject against the schema vendored in ``schemas/``.
An object of a kind with no schema here is an error too.

    uv run --frozen python deploy/k8s/validate.py [KUSTOMIZATION ...]     # or validate.sh

tests/deploy/test_k8s.py imports it, renders the same overlays and asserts the security settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: The oldest Kubernetes these manifests support, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
#: Schemas of custom resources: (apiVersion, kind) -> file in schemas/.
CUSTOM = {("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json"}


def kustomizations() -> list[Path]:
    """The base and every overlay."""
    return [HERE / "base", *sorted(p for p in (HERE / "overlays").iterdir() if p.is_dir())]


@cache
def kubectl() -> str:
    """A kubectl whose kustomize is v4+ (installed by install-kubectl.sh if need be)."""
    found = subprocess.run(
        ["bash", str(HERE / "install-kubectl.sh")], check=True, capture_output=True, text=True
    )
    return found.stdout.strip().splitlines()[-1]


def render(path: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize PATH`` renders."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@cache
def custom_schema(name: str) -> dict[str, Any]:
    return json.loads((HERE / "schemas" / name).read_text())


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(obj: dict[str, Any]) -> list[str]:
    """Problems of one object (empty: valid)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CUSTOM:
        validator = jsonschema.Draft202012Validator(custom_schema(CUSTOM[key]))
        return [
            f"{name_of(obj)}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.absolute_path)) or "(root)"
            problems.append(f"{name_of(obj)} (Kubernetes {version}): {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{name_of(obj)}: no schema: {e.message}")
            break
    return problems


def check(path: Path) -> tuple[int, list[str]]:
    """Render and validate one kustomization: (objects, problems)."""
    try:
        objects = render(path)
    except subprocess.CalledProcessError as exc:
        return 0, [f"kubectl kustomize {path} failed: {exc.stderr.strip()}"]
    problems = [p for obj in objects for p in validate(obj)]
    return len(objects), problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    paths = [Path(a).resolve() for a in args] or kustomizations()
    failed = False
    for path in paths:
        count, problems = check(path)
        label = os.path.relpath(path, ROOT)
        if problems:
            failed = True
            print(f"FAIL {label}: {len(problems)} problems in {count} objects")
            for problem in problems:
                print(f"     {problem}")
        else:
            versions = ", ".join(v.rsplit(".", 1)[0] for v in K8S_VERSIONS)
            print(f"ok   {label}: {count} objects valid (Kubernetes {versions}, strict; KEDA)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
