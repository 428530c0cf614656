"""The per-service parts of the deployment are written from the service list by
deploy/generate.py: the checked-in files are its output (run `make deploy-files` after
changing a service's `[tool.toolfleet.deploy]` or adding a service), and the service
docs/architecture.md builds as its recipe gets a compose service, Kubernetes workers, their
kustomization entries and a KEDA ScaledObject from its package alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_k8s import v as validator
from tests.e2e.test_extending import documented_files
from tests.helpers import module_from_file

ROOT = Path(__file__).resolve().parents[2]


generate = module_from_file(ROOT / "deploy/generate.py", "toolfleet_deploy_generate")


def test_the_checked_in_deploy_files_are_the_generators_output():
    stale = [str(p.relative_to(ROOT)) for p in generate.stale()]
    assert stale == [], f"{stale} differ from the service list: run `make deploy-files`"
    check = subprocess.run(
        [sys.executable, str(ROOT / "deploy/generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout


def test_every_service_declares_the_streams_keda_scales_it_on(tmp_path):
    pyproject = tmp_path / "services/bare/pyproject.toml"
    pyproject.parent.mkdir(parents=True)
    pyproject.write_text('[project.entry-points."toolfleet.services"]\nbare = "x:Y"\n')
    with pytest.raises(SystemExit, match="streams"):
        generate.settings("bare", tmp_path)
    pyproject.write_text(pyproject.read_text() + '[tool.toolfleet.deploy]\nstream = ["b"]\n')
    with pytest.raises(SystemExit, match="unknown"):
        generate.settings("bare", tmp_path)


def test_the_documented_service_gets_compose_and_kubernetes_files_from_its_package(tmp_path):
    # the repository's deployment files and packages' pyproject.toml (and own Dockerfiles),
    # plus the notes package written from docs/architecture.md
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy", ignore=shutil.ignore_patterns("__py*"))
    shutil.copy2(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    for path in [*ROOT.glob("services/*/pyproject.toml"), *ROOT.glob("services/*/Dockerfile")]:
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    for name, code in documented_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)
    stale = generate.stale(tmp_path)
    for path, text in generate.render(tmp_path).items():
        path.write_text(text)
    k8s = tmp_path / "deploy/k8s"
    assert k8s / "base/notes.yaml" in stale

    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())["services"]
    notes = compose["notes"]
    assert notes["image"] == "toolfleet-notes:latest"
    assert notes["build"]["args"]["SERVICE"] == "notes"
    assert notes["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert notes["depends_on"]["redis"]["condition"] == "service_healthy"  # the worker anchor
    assert compose["sandbox"]["cap_add"] == ["SYS_ADMIN"]  # the others keep what they had
    host = (tmp_path / "deploy/compose/host-network.yml").read_text()  # (!reset tags)
    assert "\n  notes:\n    network_mode: host\n" in host

    def objects(overlay: str, kind: str) -> list[dict]:
        return [o for o in validator.render(k8s / overlay) if o["kind"] == kind]

    for overlay in ("base", "overlays/keda", "overlays/production"):
        _count, problems = validator.check(k8s / overlay)
        assert problems == [], (overlay, problems)
    (deploy,) = [
        d for d in objects("base", "Deployment") if d["metadata"]["name"] == "toolfleet-notes"
    ]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "toolfleet.core.worker", "notes"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "2Gi"}  # the defaults
    scaled = {o["metadata"]["name"]: o for o in objects("overlays/keda", "ScaledObject")}
    streams = [t["metadata"].get("stream") for t in scaled["toolfleet-notes"]["spec"]["triggers"]]
    assert "toolfleet:calls:take_note" in streams
    keda = [
        d
        for d in objects("overlays/keda", "Deployment")
        if d["metadata"]["name"] == "toolfleet-notes"
    ]
    assert "replicas" not in keda[0]["spec"]
    production = objects("overlays/production", "Deployment")
    (notes_prod,) = [d for d in production if d["metadata"]["name"] == "toolfleet-notes"]
    assert notes_prod["spec"]["replicas"] == 2
    assert notes_prod["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        "toolfleet-notes:0.1.0"
    )
