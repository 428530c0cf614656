"""The deployment follows the workspace's service list (deploy/docker/services.py): every
service has its image, a compose service, a Kubernetes Deployment, its image tag and a KEDA
ScaledObject; and the service docs/architecture.md builds as its recipe gets its worker image
from the one Dockerfile with nothing but its package (built for real with Docker)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_extending import documented_files
from tests.helpers import module_from_file

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = "deploy/docker/Dockerfile"


services = module_from_file(ROOT / "deploy/docker/services.py", "toolfleet_deploy_services")


def test_the_service_list_is_the_packages_with_a_service_entry_point():
    assert {"sandbox", "search", "sql", "vision"} <= set(services.services())
    assert "core" not in services.services() and "gateway" not in services.services()
    out = subprocess.run(
        [sys.executable, str(ROOT / "deploy/docker/services.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["gateway", *services.services()]


# Images with a Dockerfile of their own, and why: the sandbox's is the kernel image with its
# runtime; mcp's holds Node.js and the MCP servers and runs as root for the servers' jail.
OWN_DOCKERFILE = {"sandbox", "mcp"}


def test_every_image_but_the_sandbox_and_mcp_images_is_built_by_the_one_dockerfile():
    for name in OWN_DOCKERFILE:
        assert services.dockerfile(name) == f"services/{name}/Dockerfile"
    for name in ["gateway", *services.services()]:
        if name not in OWN_DOCKERFILE:
            assert services.dockerfile(name) == DOCKERFILE
            assert not (ROOT / "services" / name / "Dockerfile").exists()


def test_compose_runs_a_worker_of_every_service_from_its_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ["gateway", *services.services()]:
        assert name in compose, f"docker-compose.yml has no service {name!r}"
        entry = compose[name]
        assert entry["image"] == f"toolfleet-{name}:latest"
        build = entry["build"]
        assert build["dockerfile"] == services.dockerfile(name)
        if build["dockerfile"] == DOCKERFILE:
            assert build["args"]["SERVICE"] == name
            assert build["target"] == ("gateway" if name == "gateway" else "worker")


def test_kubernetes_deploys_and_scales_every_service():
    k8s = ROOT / "deploy/k8s"
    base = yaml.safe_load((k8s / "base/kustomization.yaml").read_text())
    images = {image["name"] for image in base["images"]}
    keda = list(yaml.safe_load_all((k8s / "overlays/keda/scaledobjects.yaml").read_text()))
    scaled = {o["spec"]["scaleTargetRef"]["name"] for o in keda if o}
    for name in services.services():
        assert f"{name}.yaml" in base["resources"], f"deploy/k8s/base has no {name}.yaml"
        assert f"toolfleet-{name}" in images
        assert f"toolfleet-{name}" in scaled, f"no KEDA ScaledObject for toolfleet-{name}"


def _docker_or_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command: run deploy/docker/install-docker.sh"
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    if info.returncode != 0:
        return "no Docker engine: run deploy/docker/install-docker.sh"
    base = os.environ.get("BASE_IMAGE", "toolfleet-base:bookworm")
    found = subprocess.run(
        ["docker", "image", "inspect", base], capture_output=True, timeout=60, check=False
    )
    if found.returncode != 0:
        return f"no base image {base}: run deploy/docker/base-image.sh"
    return None


def test_the_documented_service_gets_its_worker_image_from_its_package_alone(tmp_path):
    problem = _docker_or_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    # the build context: the repository's files the Dockerfile reads, plus the notes package
    # written from docs/architecture.md (and nothing else: no Dockerfile, no list edited)
    context = tmp_path / "context"
    for part in ("deploy/docker", "clients/python", "services/core"):
        shutil.copytree(
            ROOT / part, context / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy2(ROOT / "uv.lock", context / "uv.lock")
    for name, code in documented_files().items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(code)
    listed = subprocess.run(
        [sys.executable, str(context / "deploy/docker/services.py"), "--workers"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listed == ["notes"]

    tag = f"toolfleet-notes:test-{uuid.uuid4().hex[:8]}"
    base = os.environ.get("BASE_IMAGE", "toolfleet-base:bookworm")
    args = ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", "SERVICE=notes"]
    args += ["--target", "worker", "-f", str(context / DOCKERFILE), "-t", tag, str(context)]
    build = subprocess.run(
        ["docker", "build", "--network", "host", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    try:
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        assert "image ok: notes" in build.stdout
        config = json.loads(
            subprocess.run(
                ["docker", "image", "inspect", "--format", "{{json .Config}}", tag],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert "TOOLFLEET_IMAGE_SERVICE=notes" in config["Env"]
        assert "toolfleet.core.worker" in " ".join(config["Cmd"])
        assert config["User"] == "65532:65532"
        assert config["Labels"]["toolfleet.image"] == "notes"
        # the worker's own code and the service, as the worker loads it (its entry point)
        probe = (
            "from importlib.metadata import entry_points; "
            "(ep,) = entry_points(group='toolfleet.services', name='notes'); "
            "from toolfleet.core.settings import Settings; "
            "from toolfleet.core.service import load_service; "
            "s = load_service(ep, Settings()); "
            "print(sorted(t.name for t in s.tools()))"
        )
        ran = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", probe],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        assert ran.stdout.strip() == "['count_notes', 'take_note']"
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
