"""The Kubernetes manifests (deploy/k8s): every kustomization renders with `kubectl kustomize`
and validates offline (kubernetes-validate --strict; KEDA's ScaledObject against its vendored
schema), and the rendered pods carry the security settings docs/operations.md promises."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import module_from_file

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


v = module_from_file(K8S / "validate.py", "toolfleet_k8s_validate")
NAMES = [str(p.relative_to(K8S)) for p in v.kustomizations()]
from tests.deploy.test_services import services as _services  # noqa: E402

WORKERS = tuple(_services.services())  # the workspace's services (deploy/docker/services.py)


@cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(v.render(K8S / name))


def objects(name: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered(name) if o["kind"] == kind]


def deployment(name: str, component: str) -> dict[str, Any]:
    (found,) = [o for o in objects(name, "Deployment") if o["metadata"]["name"] == component]
    return found


def test_every_overlay_is_there():
    assert {"base", "overlays/gvisor", "overlays/keda", "overlays/production"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_renders_and_validates(name):
    count, problems = v.check(K8S / name)
    assert count > 10 and problems == []


def test_validation_catches_mistakes():
    gateway = copy.deepcopy(deployment("base", "toolfleet-gateway"))
    gateway["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnly"] = True
    assert any("readOnly" in p for p in v.validate(gateway))  # strict: unknown field
    (scaled, *_) = objects("overlays/keda", "ScaledObject")
    assert v.validate(scaled) == []
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["triggers"][0]["metadata"]["streamLength"] = 8  # KEDA wants strings
    assert any("is not of type 'string'" in p for p in v.validate(wrong))
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["maxReplicas"] = 3  # a field of HPAs, not of ScaledObjects
    assert any("maxReplicas" in p for p in v.validate(wrong))
    unknown = {"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("no schema" in p for p in v.validate(unknown))


def pods(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in objects(name, "Deployment")]


@pytest.mark.parametrize("name", NAMES)
def test_sandbox_pods_are_locked_down(name):
    spec = deployment(name, "toolfleet-sandbox")["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec
    for container in spec["containers"] + spec.get("initContainers", []):
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx.get("privileged", False) is False and "runAsUser" not in ctx
        assert "limits" in container["resources"] and "requests" in container["resources"]
    if name == "overlays/gvisor":
        assert spec["runtimeClassName"] == "gvisor"
        (runtime,) = objects(name, "RuntimeClass")
        assert runtime["metadata"]["name"] == "gvisor" and runtime["handler"] == "runsc"


def selects_sandbox(policy: dict[str, Any]) -> bool:
    labels = deployment("base", "toolfleet-sandbox")["spec"]["template"]["metadata"]["labels"]
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == val for k, val in wanted.items())


@pytest.mark.parametrize("name", NAMES)
def test_sandbox_egress_is_denied_but_for_redis_and_dns(name):
    policies = [p for p in objects(name, "NetworkPolicy") if selects_sandbox(p)]
    # one policy selects the sandbox pods and allows nothing at all
    assert any(
        {"Ingress", "Egress"} <= set(p["spec"]["policyTypes"])
        and not p["spec"].get("egress")
        and not p["spec"].get("ingress")
        for p in policies
    )
    # what the others allow: Redis on 6379 and the cluster DNS on 53, nothing else
    allowed = []
    for policy in policies:
        assert not policy["spec"].get("ingress")
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), rule  # no "anywhere" rule
            for peer in rule["to"]:
                assert "ipBlock" not in peer
            allowed += [
                (peer["podSelector"]["matchLabels"], port["port"])
                for peer in rule["to"]
                for port in rule["ports"]
            ]
    assert allowed
    for labels, port in allowed:
        assert (labels, port) in (
            ({"app.kubernetes.io/name": "toolfleet-redis"}, 6379),
            ({"k8s-app": "kube-dns"}, 53),
        )


@pytest.mark.parametrize("name", NAMES)
def test_every_pod_meets_the_restricted_pod_security_standard(name):
    (namespace,) = objects(name, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deploy, template in pods(name):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, deploy
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", deploy
        assert spec["automountServiceAccountToken"] is False, deploy
        assert not any(v.get("hostPath") for v in spec.get("volumes", [])), deploy
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False, deploy
            assert ctx["capabilities"]["drop"] == ["ALL"] and "add" not in ctx["capabilities"]
            assert ctx["readOnlyRootFilesystem"] is True, deploy
    for deploy in objects(name, "Deployment"):
        assert deploy["metadata"]["namespace"] == "toolfleet"


@pytest.mark.parametrize("name", NAMES)
def test_probes_budgets_settings_and_autoscaling(name):
    gateway = deployment(name, "toolfleet-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    sources = {next(iter(s.values()))["name"].rsplit("-", 1)[0] for s in gateway["envFrom"]}
    assert sources == {"toolfleet-settings", "toolfleet-secrets"}
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in objects(name, "PodDisruptionBudget")
    }
    assert budgets >= {"toolfleet-gateway", *(f"toolfleet-{w}" for w in WORKERS)}
    (hpa,) = objects(name, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "toolfleet-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    (settings,) = objects(name, "ConfigMap")
    assert settings["data"]["TOOLFLEET_REDIS_URL"].startswith("redis://toolfleet-redis:")
    for worker in WORKERS:
        container = deployment(name, f"toolfleet-{worker}")["spec"]["template"]["spec"]
        container = container["containers"][0]
        assert container["command"][-1] == worker
        assert "heartbeat" in " ".join(container["livenessProbe"]["exec"]["command"])


@pytest.mark.parametrize("name", NAMES)
def test_the_gateway_service_balances_per_request_with_no_session_affinity(name):
    """Every gateway serves every session (state in Redis): no client pinning, so the HPA's
    replicas all take load, and each drains on SIGTERM within the pod's grace."""
    (service,) = [
        s for s in objects(name, "Service") if s["metadata"]["name"] == "toolfleet-gateway"
    ]
    assert service["spec"].get("sessionAffinity", "None") == "None"
    assert "sessionAffinityConfig" not in service["spec"]
    pod = deployment(name, "toolfleet-gateway")["spec"]["template"]["spec"]
    (settings,) = objects(name, "ConfigMap")
    grace = float(settings["data"]["TOOLFLEET_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > grace + 5  # preStop sleep + drain
    for worker in WORKERS:
        spec = deployment(name, f"toolfleet-{worker}")["spec"]["template"]["spec"]
        drain = float(settings["data"]["TOOLFLEET_DRAIN_GRACE_S"]) + 30  # + drain_timeout_s
        assert spec["terminationGracePeriodSeconds"] > drain


def test_keda_scales_each_worker_on_its_tool_streams():
    name = "overlays/keda"
    scaled = {o["spec"]["scaleTargetRef"]["name"]: o for o in objects(name, "ScaledObject")}
    assert set(scaled) == {f"toolfleet-{w}" for w in WORKERS}
    for target, obj in scaled.items():
        assert "replicas" not in deployment(name, target)["spec"]  # KEDA owns it
        streams = [t for t in obj["spec"]["triggers"] if t["type"] == "redis-streams"]
        assert streams
        for trigger in streams:
            meta = trigger["metadata"]
            assert meta["stream"].startswith("toolfleet:calls:")
            assert meta["consumerGroup"] == "workers"
            assert meta["address"].startswith("toolfleet-redis.toolfleet.svc")
    python = scaled["toolfleet-sandbox"]["spec"]["triggers"]
    assert {t["metadata"].get("stream") for t in python} >= {"toolfleet:calls:python"}


def test_production_spreads_replicas_and_keeps_the_call_log():
    name = "overlays/production"
    for component in ("toolfleet-gateway", *(f"toolfleet-{w}" for w in WORKERS)):
        spec = deployment(name, component)["spec"]["template"]["spec"]
        anti = spec["affinity"]["podAntiAffinity"]
        term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert spec["topologySpreadConstraints"][0]["topologyKey"].endswith("zone")
    assert deployment(name, "toolfleet-sandbox")["spec"]["replicas"] >= 4
    (settings,) = objects(name, "ConfigMap")
    assert settings["data"]["TOOLFLEET_CALL_LOG"] == "true"
    for deploy in objects(name, "Deployment"):
        image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        assert not image.endswith(":latest"), image
