"""Write the per-service parts of the deployment from the service list.

The list is the workspace's (``deploy/docker/services.py``: every package under ``services/``
with a ``toolfleet.services`` entry point); what differs between services is data in each
package's ``pyproject.toml``, ``[tool.toolfleet.deploy]`` (every key optional but
``streams``; defaults in ``DEFAULTS``). From them this writes:

- ``deploy/k8s/base/<service>.yaml``: the workers' Deployment and PodDisruptionBudget;
- ``deploy/k8s/overlays/keda/scaledobjects.yaml``: a ScaledObject per service;
- the marked regions (``# >>> deploy/generate.py: ...`` to ``# <<< deploy/generate.py``) of
  ``docker-compose.yml``, ``deploy/compose/host-network.yml``, the base's and the overlays'
  ``kustomization.yaml`` and ``overlays/production/spread.yaml``; the rest of those files is
  written by hand.

    python3 deploy/generate.py          # (make deploy-files) write what changed
    python3 deploy/generate.py --check  # list what differs from the service list; exit 1

The output is checked in (tests/deploy/test_generate.py fails when it drifts). Python 3.11+,
no third-party imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARK_BEGIN = "# >>> deploy/generate.py: "
MARK_END = "# <<< deploy/generate.py"
REDIS = "toolfleet-redis.toolfleet.svc.cluster.local:6379"

# What a service's [tool.toolfleet.deploy] may set, and its default.
DEFAULTS: dict[str, Any] = {
    "comment": "",  # its Kubernetes manifest's header (default: "The <name> service's workers.")
    "replicas": 1,  # workers in the base (KEDA owns the count in its overlay)
    "production-replicas": 2,
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"cpu": "2", "memory": "2Gi"},
    "state-size": "2Gi",  # the writable /var/lib/toolfleet
    "env": {},  # the worker container's environment in Kubernetes (besides the ConfigMap)
    "volumes": [],  # extra emptyDirs: {name, path, size, read-only}
    "gvisor": False,  # its pods under gVisor in the gvisor overlay
    "streams": None,  # the tools whose Redis streams KEDA scales it on (required)
    "stream-length": 16,  # calls queued or running per worker before KEDA adds one
    "max-replicas": 10,
    "cpu-target": 75,  # KEDA's CPU trigger, percent of the request
    "slow-scale-down": False,  # one pod per 10 minutes after 30 below target (sessions)
    "keda-comment": "",  # above its ScaledObject
    "compose": {},  # its compose service: comment, command, user, working_dir, cap_add,
    # security_opt, environment (besides TOOLFLEET_REDIS_URL)
}
COMPOSE_KEYS = ("command", "user", "working_dir", "cap_add", "security_opt")


def _services_module() -> Any:
    path = Path(__file__).resolve().parent / "docker" / "services.py"
    spec = importlib.util.spec_from_file_location("toolfleet_deploy_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _services_module()


def settings(name: str, root: Path = ROOT) -> dict[str, Any]:
    """The deployment data of service ``name``: its ``[tool.toolfleet.deploy]`` over
    ``DEFAULTS``. Unknown keys and a missing ``streams`` are errors."""
    pyproject = root / "services" / name / "pyproject.toml"
    with pyproject.open("rb") as f:
        own = tomllib.load(f).get("tool", {}).get("toolfleet", {}).get("deploy", {})
    unknown = set(own) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"{pyproject}: unknown [tool.toolfleet.deploy] keys {sorted(unknown)}")
    if not own.get("streams"):
        raise SystemExit(
            f"{pyproject}: [tool.toolfleet.deploy] needs `streams`, the tools KEDA scales on"
        )
    data = {**DEFAULTS, **own}
    data["comment"] = data["comment"] or f"The {name} service's workers."
    return data


# ------------------------------------------------------------------ YAML pieces


def scalar(value: object) -> str:
    """``value`` as a YAML scalar: plain when it reads back as the same string, else quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, int) or not re.fullmatch(r"[A-Za-z_/][\w./=:@-]*", text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if text.lower() in {"true", "false", "yes", "no", "on", "off", "null"} or text.endswith(":"):
        return f'"{text}"'
    return text


def flow(value: object) -> str:
    """A compose value on one line: a flow sequence for a list."""
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    return scalar(value)


def comment(text: str, indent: str) -> str:
    """``text`` as comment lines at ``indent``."""
    return "".join(f"{indent}# {line}".rstrip() + "\n" for line in text.strip().splitlines())


# ------------------------------------------------------------------ docker compose

COMPOSE_BUILD_SHARED = """\
      <<: *service-build
      args: {{<<: *build-args, SERVICE: {name}}}
"""
COMPOSE_BUILD_OWN = """\
      context: .
      dockerfile: {dockerfile}
      network: host
      args: *build-args
"""


def compose_service(name: str, data: dict[str, Any], root: Path) -> str:
    """The compose service of ``name``'s workers."""
    spec = data["compose"]
    dockerfile = services.dockerfile(name, root)
    build = COMPOSE_BUILD_SHARED if dockerfile == services.SHARED_DOCKERFILE else COMPOSE_BUILD_OWN
    out = comment(spec.get("comment", ""), "  ")
    out += f"  {name}:\n    <<: *worker\n    image: toolfleet-{name}:latest\n    build:\n"
    out += build.format(name=name, dockerfile=dockerfile)
    out += "".join(f"    {key}: {flow(spec[key])}\n" for key in COMPOSE_KEYS if key in spec)
    out += "    environment:\n      TOOLFLEET_REDIS_URL: redis://redis:6379/0\n"
    out += "".join(f"      {k}: {scalar(v)}\n" for k, v in spec.get("environment", {}).items())
    return out


def host_network_service(name: str) -> str:
    """The host-network override of ``name``'s workers."""
    return (
        f"  {name}:\n    network_mode: host\n"
        "    environment:\n      TOOLFLEET_REDIS_URL: *redis-url\n"
    )


# ------------------------------------------------------------------ Kubernetes

K8S_WORKER = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: toolfleet-{name}
  labels:
    app.kubernetes.io/name: toolfleet-{name}
    app.kubernetes.io/component: {name}
spec:
  replicas: {replicas}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: toolfleet-{name}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        app.kubernetes.io/name: toolfleet-{name}
        app.kubernetes.io/component: {name}
        app.kubernetes.io/part-of: toolfleet
    spec:
      serviceAccountName: toolfleet
      automountServiceAccountToken: false
      enableServiceLinks: false
      # SIGTERM drains: no new calls or sessions; the sessions it holds are served until they
      # end or TOOLFLEET_DRAIN_GRACE_S (60 s) passes, running calls finish
      # (TOOLFLEET_DRAIN_TIMEOUT_S, 30 s), then the rest is told its state is lost
      terminationGracePeriodSeconds: 105
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: worker
          image: toolfleet-{name}
          imagePullPolicy: IfNotPresent
          command: [python, -m, toolfleet.core.worker, {name}]
{env}\
          envFrom:
            - configMapRef:
                name: toolfleet-settings
            - secretRef:
                name: toolfleet-secrets
          # Workers listen on no port. The worker touches its heartbeat file every second
          # (TOOLFLEET_WORKER_HEARTBEAT_FILE), even while Redis is unreachable: a stale file
          # means its event loop is stuck.
          startupProbe:  # tools start (zygotes, indexes) before the first heartbeat
            exec:
              command: &heartbeat
                - sh
                - -c
                - test $(( $(date +%s) - $(stat -c %Y /var/lib/toolfleet/heartbeat) )) -lt 30
            periodSeconds: 5
            failureThreshold: 60
          livenessProbe:
            exec:
              command: *heartbeat
            periodSeconds: 15
            failureThreshold: 4
          resources:
            requests:
              cpu: "{requests[cpu]}"
              memory: {requests[memory]}
            limits:
              cpu: "{limits[cpu]}"
              memory: {limits[memory]}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
          volumeMounts:
            - name: state
              mountPath: /var/lib/toolfleet
            - name: tmp
              mountPath: /tmp
{mounts}\
      volumes:
        - name: state
          emptyDir:
            sizeLimit: {state_size}
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
{volumes}\
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: toolfleet-{name}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: toolfleet-{name}
"""


def k8s_worker(name: str, data: dict[str, Any]) -> str:
    """``deploy/k8s/base/<name>.yaml``."""
    env = "".join(
        f"            - name: {k}\n              value: {scalar(v)}\n"
        for k, v in data["env"].items()
    )
    mounts = volumes = ""
    for volume in data["volumes"]:
        mounts += (
            f"            - name: {volume['name']}\n              mountPath: {volume['path']}\n"
        )
        if volume.get("read-only"):
            mounts += "              readOnly: true\n"
        volumes += f"        - name: {volume['name']}\n          emptyDir:\n"
        volumes += f"            sizeLimit: {volume['size']}\n"
    return comment(data["comment"], "") + K8S_WORKER.format(
        name=name,
        replicas=data["replicas"],
        env=f"          env:\n{env}" if env else "",
        requests=data["requests"],
        limits=data["limits"],
        mounts=mounts,
        state_size=data["state-size"],
        volumes=volumes,
    )


SCALED_OBJECTS_HEADER = """\
# One ScaledObject per tool service. Redis: the in-cluster one (KEDA runs in its own
# namespace, hence the full name); for an external Redis change `address` and add a
# TriggerAuthentication for its password. Stream names are <TOOLFLEET_REDIS_PREFIX>:calls:<tool>.
# Stateful calls go to the worker holding their session, not to these streams, so CPU
# counts too; scaling down ends the sessions of the worker that leaves, hence the slow
# scale-down (one pod per 10 minutes, after 30 minutes below target).
"""
SLOW_SCALE_DOWN = """\
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 1800
          policies:
            - type: Pods
              value: 1
              periodSeconds: 600
"""
STREAM_TRIGGER = """\
    - type: redis-streams
      name: {trigger}-stream
      metadata:
        address: {redis}
        databaseIndex: "0"
        stream: toolfleet:calls:{tool}
        consumerGroup: workers
        streamLength: "{length}"
"""


def scaled_object(name: str, data: dict[str, Any]) -> str:
    """The KEDA ScaledObject of ``name``'s workers."""
    out = comment(data["keda-comment"], "")
    out += "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n"
    out += f"  name: toolfleet-{name}\n  namespace: toolfleet\nspec:\n"
    out += f"  scaleTargetRef:\n    name: toolfleet-{name}\n"
    out += f"  minReplicaCount: 1\n  maxReplicaCount: {data['max-replicas']}\n"
    out += "  pollingInterval: 10\n  cooldownPeriod: 300\n"
    out += SLOW_SCALE_DOWN if data["slow-scale-down"] else ""
    out += "  triggers:\n"
    for tool in data["streams"]:
        trigger = tool.replace("_", "-").replace(".", "-").lower()
        out += STREAM_TRIGGER.format(
            trigger=trigger, redis=REDIS, tool=tool, length=data["stream-length"]
        )
    out += "    - type: cpu\n      metricType: Utilization\n      metadata:\n"
    out += f'        value: "{data["cpu-target"]}"\n'
    return out


PRODUCTION_SPREAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: toolfleet-{name}
spec:
  replicas: {replicas}
  template:
    spec:
      affinity:
        podAntiAffinity:  # spread over nodes: losing one takes out as few as possible
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 100
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels:
                    app.kubernetes.io/name: toolfleet-{name}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: toolfleet-{name}
---
"""


# ------------------------------------------------------------------ files


def fill(text: str, regions: dict[str, str], path: Path) -> str:
    """``text`` with each marked region replaced by its generated lines."""
    for key, body in regions.items():
        pattern = re.compile(
            rf"(^[ \t]*{re.escape(MARK_BEGIN + key)}\n)(.*?)(^[ \t]*{re.escape(MARK_END)}\n)",
            re.MULTILINE | re.DOTALL,
        )
        text, found = pattern.subn(lambda m, body=body: m.group(1) + body + m.group(3), text)
        if found != 1:
            raise SystemExit(f"{path}: no region `{MARK_BEGIN}{key}` ... `{MARK_END}`")
    return text


def deployments(names: list[str]) -> str:
    """The name (a regular expression for kustomize's patch targets) of ``names``' workers."""
    return f"toolfleet-{names[0]}" if len(names) == 1 else f"toolfleet-({'|'.join(names)})"


def render(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file's text, by its path under ``root``."""
    names = services.services(root)
    data = {name: settings(name, root) for name in names}
    k8s = root / "deploy" / "k8s"
    files = {k8s / "base" / f"{name}.yaml": k8s_worker(name, data[name]) for name in names}
    files[k8s / "overlays" / "keda" / "scaledobjects.yaml"] = SCALED_OBJECTS_HEADER + "---\n".join(
        scaled_object(name, data[name]) for name in names
    )
    images = "".join(f"  - name: toolfleet-{name}\n    newTag: latest\n" for name in names)
    registry = "".join(
        f"  - name: toolfleet-{name}\n"
        f"    newName: registry.example.org/toolfleet/toolfleet-{name}\n    newTag: 0.1.0\n"
        for name in names
    )
    gvisor = [name for name in names if data[name]["gvisor"]]
    regions: dict[Path, dict[str, str]] = {
        root / "docker-compose.yml": {
            "workers": "\n".join(compose_service(name, data[name], root) for name in names)
        },
        root / "deploy" / "compose" / "host-network.yml": {
            "workers": "\n".join(host_network_service(name) for name in names)
        },
        k8s / "base" / "kustomization.yaml": {
            "resources": "".join(f"  - {name}.yaml\n" for name in names),
            "images": images,
        },
        k8s / "overlays" / "keda" / "kustomization.yaml": {
            "workers": f"      name: {deployments(names)}\n"
        },
        k8s / "overlays" / "gvisor" / "kustomization.yaml": {
            "workers": f"      name: {deployments(gvisor)}\n"
        },
        k8s / "overlays" / "production" / "kustomization.yaml": {"images": registry},
        k8s / "overlays" / "production" / "spread.yaml": {
            "workers": "".join(
                PRODUCTION_SPREAD.format(name=name, replicas=data[name]["production-replicas"])
                for name in names
            )
        },
    }
    for path, parts in regions.items():
        files[path] = fill(path.read_text(), parts, path)
    return files


def stale(root: Path = ROOT) -> list[Path]:
    """The generated files whose checked-in text differs from the service list's."""
    return [
        path
        for path, text in render(root).items()
        if not path.is_file() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift")
    args = parser.parse_args(argv)
    changed = stale()
    if args.check:
        for path in changed:
            print(f"{path.relative_to(ROOT)} differs from the service list")
        if changed:
            print("run `make deploy-files` (python3 deploy/generate.py)")
        return 1 if changed else 0
    files = render()
    for path in changed:
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
