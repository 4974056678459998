"""The Helm chart: it lints, renders valid Kubernetes objects and grants least privilege.

Runs the real ``helm`` (built once per machine by ``stack.helm_tool``) offline: ``helm
template`` renders without a cluster, so every ``lookup`` comes back empty and the chart
takes its first-install path (fresh salt, fresh webhook certificate). Rendered objects are
checked against Kubernetes 1.30's schemas with ``kubernetes_validate``, the ServiceMonitor
against the fields of the Prometheus Operator's CRD it uses; the record schema itself is
tested in ``test_crd``.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # ships no type information
import kubernetes_validate
import pytest
import yaml

from kubeledger import config
from kubeledger.core import record_index
from kubeledger.core.model import AnomalyKind
from stack import helm_tool
from unit.certificates import serving_directory

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kubeledger"
CRD_FILE = ROOT / "crds" / "auditrecords.yaml"
RELEASE = "ledger"
NAMESPACE = "audit"
KUBERNETES_VERSION = "1.30.0"
# Kinds kubernetes_validate has no schema for (cert-manager's and the Prometheus Operator's
# CRDs).
CUSTOM_KINDS = {"Issuer", "Certificate", "ServiceMonitor", "PrometheusRule"}
FULLNAME = f"{RELEASE}-kubeledger"
SELECTOR = {"app.kubernetes.io/name": "kubeledger", "app.kubernetes.io/instance": RELEASE}

# Every optional feature switched on at once.
FULL_VALUES: dict[str, Any] = {
    "clusterName": "prod-eu-1",
    "watch": {"extraKinds": ["statefulsets", "daemonsets"]},
    "webhook": {"certManager": {"enabled": True}, "timeoutSeconds": 5},
    "protection": {"breakGlassGroups": ["kubeledger:break-glass", "sre"]},
    "elasticsearch": {
        "url": "https://elasticsearch.logging.svc:9200",
        "existingSecret": "es-credentials",
        "caSecret": "es-ca",
        "verifyCerts": True,
        "checkpoints": {"intervalSeconds": 60, "keySecret": "checkpoint-key"},
    },
    "config": {"redaction": {"secret_name_patterns": ["(?i)token"]}, "max_changes_per_record": 32},
    "podAnnotations": {"example.com/team": "platform"},
    "replicaCount": 3,
    "leaderElection": {
        "leaseDurationSeconds": 30,
        "renewDeadlineSeconds": 20,
        "retryPeriodSeconds": 2.5,
    },
    "logFormat": "text",
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "1m", "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "interval": "30s", "firingMinutes": 5,
                           "labels": {"release": "prom"},
                           "severities": {"default": "info", "critical-rbac": "page"}},
    },
    "anomalies": {
        "disabled": ["burst"],
        "protectedNamespaces": ["prod", "prod-*"],
        "changeWindows": ["0 9 * * 1-5 8h", "0 10 * * 6 2h"],
        "changeWindowTimeZone": "Europe/Berlin",
        "changeWindowExempt": ["oncall"],
        "gitopsExempt": ["system:serviceaccount:kube-system:horizontal-pod-autoscaler"],
        "burst": {"changes": 40, "minutes": 2},
        "spikes": {"rollbacks": 2, "failures": 4, "minutes": 15},
        "approvedRegistries": ["ghcr.io/acme", "registry.example.com"],
    },
}

Manifest = dict[str, Any]


class Helm:
    """Runs the cached helm binary with its own empty config, cache and data directories."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def template(self, *args: str) -> list[Manifest]:
        done = self.run("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_tool.ensure_helm(), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def full_values_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("values") / "full.yaml"
    path.write_text(yaml.safe_dump(FULL_VALUES))
    return path


@pytest.fixture(scope="session")
def default_manifests(helm: Helm) -> list[Manifest]:
    return helm.template()


@pytest.fixture(scope="session")
def full_manifests(helm: Helm, full_values_file: Path) -> list[Manifest]:
    return helm.template("--values", str(full_values_file))


@pytest.fixture(params=["default", "full"])
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    result: list[Manifest] = request.getfixturevalue(f"{request.param}_manifests")
    return result


def only(manifests: list[Manifest], kind: str) -> Manifest:
    (found,) = [doc for doc in manifests if doc["kind"] == kind]
    return found


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [
        doc for doc in manifests if doc["kind"] == kind and doc["metadata"]["name"] == name
    ]
    return found


def names_of(manifests: list[Manifest], kind: str) -> set[str]:
    return {doc["metadata"]["name"] for doc in manifests if doc["kind"] == kind}


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = only(manifests, "Deployment")["spec"]["template"]["spec"]
    return spec


def container_env(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The operator container's environment, by variable name."""
    (container,) = pod_spec(manifests)["containers"]
    return {item["name"]: item for item in container["env"]}


def role_grants(manifests: list[Manifest]) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """The namespaced Role's verbs by API group, resource and resource names (() for any)."""
    role = only(manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    granted: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames", ())))
                assert key not in granted, f"{key} granted twice"
                granted[key] = set(rule["verbs"])
    return granted


def test_lint_strict_passes(helm: Helm, full_values_file: Path) -> None:
    for args in ([], ["--values", str(full_values_file)]):
        done = helm.run("lint", "--strict", str(CHART), *args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_object_is_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {error.message}")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("rbca.create=false", "rbca"),
        ("webhook.enabled=yes", "/webhook/enabled"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("watch.extraKinds={pods}", "/watch/extraKinds"),
        ("elasticsearch.tls=true", "tls"),
        ("replicaCount=-1", "/replicaCount"),
        ("leaderElection.leaseDuration=15", "/leaderElection': additional properties"),
        ("leaderElection.retryPeriodSeconds=0", "/leaderElection/retryPeriodSeconds"),
        ("logFormat=yaml", "/logFormat"),
        ("metrics.enabled=true", "/metrics': additional properties 'enabled'"),
        ("metrics.serviceMonitor.scrapeInterval=1m", "/metrics/serviceMonitor': additional"),
        ("metrics.serviceMonitor.interval=30sec", "/metrics/serviceMonitor/interval"),
        ("audit.enabled=true", "/audit/clientCASecret"),
        ("webhook.service.clusterIP=somewhere", "/webhook/service/clusterIP"),
    ],
)
def test_schema_rejects_typos_and_wrong_types(helm: Helm, flag: str, expected: str) -> None:
    done = helm.run("template", RELEASE, str(CHART), "--set", flag)
    assert done.returncode != 0
    assert "schema" in done.stderr
    assert expected in done.stderr


def test_cluster_role_is_least_privilege(full_manifests: list[Manifest]) -> None:
    read = {"get", "list", "watch"}
    allowed_writes = {
        ("kubeledger.io", "auditrecords"): ({"create", "delete"}, None),
        ("apiextensions.k8s.io", "customresourcedefinitions"): (
            {"update", "patch"},
            ["auditrecords.kubeledger.io"],
        ),
        ("", "events"): ({"create"}, None),
    }
    rules = only(full_manifests, "ClusterRole")["rules"]
    granted: set[tuple[str, str]] = set()
    for rule in rules:
        verbs = set(rule["verbs"])
        assert "*" not in verbs
        assert verbs, rule
        for group in rule["apiGroups"]:
            assert group != "*"
            for resource in rule["resources"]:
                assert "*" not in resource
                assert resource not in {"secrets", "pods", "pods/exec"}
                granted.add((group, resource))
                writes = verbs - read
                if writes:
                    expected_verbs, names = allowed_writes[group, resource]
                    assert writes <= expected_verbs, rule
                    assert rule.get("resourceNames") == names, rule
    assert ("apps", "statefulsets") in granted
    assert ("apps", "daemonsets") in granted
    assert ("", "namespaces") in granted
    assert ("argoproj.io", "applications") in granted


def test_extra_kinds_are_off_by_default(default_manifests: list[Manifest]) -> None:
    resources = {
        resource
        for rule in only(default_manifests, "ClusterRole")["rules"]
        for resource in rule["resources"]
    }
    assert "deployments" in resources
    assert not {"statefulsets", "daemonsets"} & resources


def test_role_is_limited_to_the_operators_configmaps_lease_and_peers(
    default_manifests: list[Manifest],
) -> None:
    assert role_grants(default_manifests) == {
        ("", "configmaps", ()): {"get", "list", "watch", "create", "update", "patch"},
        # A create cannot name its object; everything else is this release's Lease only.
        ("coordination.k8s.io", "leases", ()): {"create"},
        ("coordination.k8s.io", "leases", (FULLNAME,)): {"get", "update"},
        ("discovery.k8s.io", "endpointslices", ()): {"list"},
    }


def test_chart_crd_is_the_project_crd_plus_keep(default_manifests: list[Manifest]) -> None:
    rendered = only(default_manifests, "CustomResourceDefinition")
    source = yaml.safe_load(CRD_FILE.read_text())
    metadata = rendered["metadata"]
    assert metadata.pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert metadata.pop("labels")["app.kubernetes.io/instance"] == RELEASE
    assert rendered == source


def test_crd_can_be_left_to_the_cluster_admin(helm: Helm) -> None:
    kinds = {doc["kind"] for doc in helm.template("--set", "crds.install=false")}
    assert "CustomResourceDefinition" not in kinds


def test_deployment_is_locked_down(default_manifests: list[Manifest]) -> None:
    pod = only(default_manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["args"] == ["run", "--liveness", "http://0.0.0.0:8080/healthz",
                                 "--readiness", "http://0.0.0.0:8081/readyz",
                                 "--metrics", "http://0.0.0.0:8082/metrics",
                                 "--log-format", "json"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"health": 8080, "ready": 8081, "metrics": 8082, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    tmp = {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108  # the pod's own emptyDir
    assert tmp in container["volumeMounts"]


def test_default_environment(default_manifests: list[Manifest]) -> None:
    env = container_env(default_manifests)
    assert env["KUBELEDGER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.namespace"
    )
    assert env["KUBELEDGER_REDACTION_SALT"]["valueFrom"]["secretKeyRef"] == {
        "name": "ledger-kubeledger-redaction-salt",
        "key": "salt",
    }
    assert env["KUBELEDGER_WEBHOOK_PORT"]["value"] == "9443"
    assert env["KUBELEDGER_WEBHOOK_CERT_DIR"]["value"] == "/etc/kubeledger/webhook"
    assert env["KUBELEDGER_RETENTION_DAYS"]["value"] == "7"
    assert env["KUBELEDGER_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["KUBELEDGER_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["KUBELEDGER_LEASE_NAME"]["value"] == FULLNAME
    assert env["KUBELEDGER_LEASE_DURATION_SECONDS"]["value"] == "15"
    assert env["KUBELEDGER_LEASE_RENEW_DEADLINE_SECONDS"]["value"] == "10"
    assert env["KUBELEDGER_LEASE_RETRY_PERIOD_SECONDS"]["value"] == "2"
    # The peers' Service is the webhook's.
    assert env["KUBELEDGER_PEER_SERVICE"]["value"] == f"{FULLNAME}-webhook"
    assert names_of(default_manifests, "Service") == {f"{FULLNAME}-webhook", f"{FULLNAME}-metrics"}
    assert env["KUBELEDGER_WATCH_EXTRA_KINDS"]["value"] == ""
    assert env["ELASTICSEARCH_URL"]["value"] == ""
    assert env["ELASTICSEARCH_INDEX_PREFIX"]["value"] == "kubeledger"
    assert env["ELASTICSEARCH_CHECKPOINT_INTERVAL_SECONDS"]["value"] == "300"
    assert not {"ELASTICSEARCH_USERNAME", "ELASTICSEARCH_CA_CERTS", "KUBELEDGER_CONFIG",
                "ELASTICSEARCH_CHECKPOINT_KEY_FILE"} & set(env)
    assert not [doc for doc in default_manifests if doc["kind"] == "ConfigMap"]


def test_full_environment(full_manifests: list[Manifest]) -> None:
    env = container_env(full_manifests)
    assert env["KUBELEDGER_CLUSTER_NAME"]["value"] == "prod-eu-1"
    assert env["KUBELEDGER_WATCH_EXTRA_KINDS"]["value"] == "statefulsets,daemonsets"
    for variable, key in [
        ("ELASTICSEARCH_USERNAME", "username"),
        ("ELASTICSEARCH_PASSWORD", "password"),
        ("ELASTICSEARCH_API_KEY", "apiKey"),
    ]:
        assert env[variable]["valueFrom"]["secretKeyRef"] == {
            "name": "es-credentials",
            "key": key,
            "optional": True,
        }
    assert env["ELASTICSEARCH_CA_CERTS"]["value"] == "/etc/kubeledger/elasticsearch-ca/ca.crt"
    assert env["ELASTICSEARCH_CHECKPOINT_INTERVAL_SECONDS"]["value"] == "60"
    assert env["ELASTICSEARCH_CHECKPOINT_KEY_FILE"]["value"] == "/etc/kubeledger/checkpoint-key/key"
    assert {"name": "checkpoint-key", "secret": {
        "secretName": "checkpoint-key", "items": [{"key": "key", "path": "key"}]},
    } in pod_spec(full_manifests)["volumes"]
    assert env["KUBELEDGER_CONFIG"]["value"] == "/etc/kubeledger/config/config.yaml"
    assert env["KUBELEDGER_LEASE_DURATION_SECONDS"]["value"] == "30"
    assert env["KUBELEDGER_LEASE_RENEW_DEADLINE_SECONDS"]["value"] == "20"
    assert env["KUBELEDGER_LEASE_RETRY_PERIOD_SECONDS"]["value"] == "2.5"
    (container,) = pod_spec(full_manifests)["containers"]
    assert container["args"][-2:] == ["--log-format", "text"]
    config_map = only(full_manifests, "ConfigMap")
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == FULL_VALUES["config"]


def test_salt_is_generated_and_kept(default_manifests: list[Manifest]) -> None:
    salt = [doc for doc in default_manifests if doc["metadata"]["name"].endswith("-salt")]
    (secret,) = salt
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert len(base64.b64decode(secret["data"]["salt"])) == 32


def webhook_of(manifests: list[Manifest]) -> dict[str, Any]:
    (webhook,) = only(manifests, "ValidatingWebhookConfiguration")["webhooks"]
    result: dict[str, Any] = webhook
    return result


def test_webhook_observes_without_ever_blocking(default_manifests: list[Manifest]) -> None:
    webhook = webhook_of(default_manifests)
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] == 2
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["clientConfig"]["service"] == {
        "name": "ledger-kubeledger-webhook",
        "namespace": NAMESPACE,
        "path": "/validate",
        "port": 443,
    }
    resources = {resource for rule in webhook["rules"] for resource in rule["resources"]}
    assert resources == {
        "deployments",
        "deployments/scale",
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
        "rollouts",
        "rollouts/scale",
    }
    for rule in webhook["rules"]:
        assert rule["operations"] == ["CREATE", "UPDATE", "DELETE"]
    (port,) = named(default_manifests, "Service", f"{FULLNAME}-webhook")["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (443, "webhook")


def test_helm_generated_certificate_matches_ca_bundle(default_manifests: list[Manifest]) -> None:
    (secret,) = [doc for doc in default_manifests if doc.get("type") == "kubernetes.io/tls"]
    ca_bundle = webhook_of(default_manifests)["clientConfig"]["caBundle"]
    assert secret["data"]["ca.crt"] == ca_bundle
    for key in ("tls.crt", "ca.crt"):
        assert base64.b64decode(secret["data"][key]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY")


def test_cert_manager_issues_and_injects(full_manifests: list[Manifest]) -> None:
    configuration = only(full_manifests, "ValidatingWebhookConfiguration")
    certificate = only(full_manifests, "Certificate")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{certificate['metadata']['name']}",
    }
    assert "caBundle" not in webhook_of(full_manifests)["clientConfig"]
    assert certificate["spec"]["dnsNames"] == [f"ledger-kubeledger-webhook.{NAMESPACE}.svc"]
    assert (
        certificate["spec"]["issuerRef"]["name"]
        == only(full_manifests, "Issuer")["metadata"]["name"]
    )
    assert not [doc for doc in full_manifests if doc.get("type") == "kubernetes.io/tls"]
    assert webhook_of(full_manifests)["timeoutSeconds"] == 5
    resources = {r for rule in webhook_of(full_manifests)["rules"] for r in rule["resources"]}
    assert {"statefulsets", "statefulsets/scale", "daemonsets"} <= resources


def test_webhook_can_be_disabled(helm: Helm) -> None:
    manifests = helm.template("--set", "webhook.enabled=false")
    assert "ValidatingWebhookConfiguration" not in {doc["kind"] for doc in manifests}
    assert names_of(manifests, "Service") == {f"{FULLNAME}-metrics"}
    env = container_env(manifests)
    assert not {"KUBELEDGER_WEBHOOK_PORT", "KUBELEDGER_PEER_SERVICE"} & set(env)
    # Without the peers' Service there is nothing to find them by.
    assert ("discovery.k8s.io", "endpointslices", ()) not in role_grants(manifests)


def test_namespaced_objects_land_in_the_release_namespace(
    full_manifests: list[Manifest],
) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for doc in full_manifests:
        expected = "" if doc["kind"] in cluster_scoped else NAMESPACE
        assert doc["metadata"].get("namespace", "") == expected, doc["metadata"]["name"]


AUDIT_VALUES = ("--set", "audit.enabled=true", "--set", "audit.clientCASecret=apiserver-ca",
                "--set", "webhook.service.clusterIP=10.96.0.50")


def test_audit_receiver_serves_on_the_webhook_service(helm: Helm) -> None:
    manifests = helm.template(*AUDIT_VALUES)
    service = named(manifests, "Service", f"{FULLNAME}-webhook")["spec"]
    assert service["clusterIP"] == "10.96.0.50"
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["ports"]}
    assert ports == {"https": (443, "webhook"), "audit": (8443, "audit")}
    env = container_env(manifests)
    assert env["KUBELEDGER_AUDIT_PORT"]["value"] == "8443"
    assert env["KUBELEDGER_AUDIT_CLIENT_CA"]["value"] == "/etc/kubeledger/audit-ca/ca.crt"
    assert env["KUBELEDGER_AUDIT_INITIAL_BACKOFF_SECONDS"]["value"] == "10"
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "audit-ca"]
    assert volume["secret"]["secretName"] == "apiserver-ca"


def test_audit_receiver_alone_still_serves_tls(helm: Helm) -> None:
    manifests = helm.template(*AUDIT_VALUES, "--set", "webhook.enabled=false")
    assert "ValidatingWebhookConfiguration" not in {doc["kind"] for doc in manifests}
    (port,) = named(manifests, "Service", f"{FULLNAME}-webhook")["spec"]["ports"]
    assert port["name"] == "audit"
    env = container_env(manifests)
    assert "KUBELEDGER_WEBHOOK_PORT" not in env
    assert env["KUBELEDGER_WEBHOOK_CERT_DIR"]["value"] == "/etc/kubeledger/webhook"


def test_own_serving_certificate_replaces_the_generated_one(helm: Helm) -> None:
    manifests = helm.template("--set", "webhook.tls.existingSecret=my-tls")
    assert not [doc for doc in manifests if doc.get("type") == "kubernetes.io/tls"]
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "webhook-tls"]
    assert volume["secret"]["secretName"] == "my-tls"


def test_a_standby_waits_beside_the_writer(default_manifests: list[Manifest]) -> None:
    spec = only(default_manifests, "Deployment")["spec"]
    assert spec["replicas"] == 2
    # The new pod starts as a standby beside the old ones, so the receivers never go away.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    budget = only(default_manifests, "PodDisruptionBudget")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    assert spec["selector"] == {"matchLabels": SELECTOR}


def test_replicas_prefer_different_nodes(default_manifests: list[Manifest]) -> None:
    affinity = pod_spec(default_manifests)["affinity"]
    assert affinity == {
        "podAntiAffinity": {
            # Preferred, not required: a one-node cluster must still run every replica.
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": SELECTOR},
                    },
                },
            ],
        },
    }


@pytest.mark.parametrize("replicas", ["0", "1"])
def test_a_single_replica_has_no_budget_and_no_spreading(helm: Helm, replicas: str) -> None:
    manifests = helm.template("--set", f"replicaCount={replicas}")
    assert only(manifests, "Deployment")["spec"]["replicas"] == int(replicas)
    assert "PodDisruptionBudget" not in {doc["kind"] for doc in manifests}
    assert "affinity" not in pod_spec(manifests)


def test_users_affinity_replaces_the_default(helm: Helm, tmp_path: Path) -> None:
    affinity = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kubeledger"}},
                },
            ],
        },
    }
    values = tmp_path / "affinity.yaml"
    values.write_text(yaml.safe_dump({"affinity": affinity}))
    manifests = helm.template("--values", str(values))
    assert pod_spec(manifests)["affinity"] == affinity


def test_metrics_service_reaches_every_replica(default_manifests: list[Manifest]) -> None:
    service = named(default_manifests, "Service", f"{FULLNAME}-metrics")
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR,
        "ports": [{"name": "metrics", "port": 8082, "targetPort": "metrics", "protocol": "TCP"}],
    }
    assert "ServiceMonitor" not in {doc["kind"] for doc in default_manifests}


# The fields of the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) that the
# chart sets, closed so that a misspelt or misplaced field fails. The interval pattern is
# the CRD's own (a Prometheus duration).
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": (
                                    "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                    "(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
                                ),
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_scrapes_the_metrics_service(full_manifests: list[Manifest]) -> None:
    monitor = only(full_manifests, "ServiceMonitor")
    jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).validate(monitor)
    labels = monitor["metadata"]["labels"]
    assert labels["release"] == "prom"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    service = named(full_manifests, "Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    # It picks the metrics Service, and not the webhook's, which has the same instance labels.
    assert selector.items() <= service["metadata"]["labels"].items()
    webhook = named(full_manifests, "Service", f"{FULLNAME}-webhook")
    assert not selector.items() <= webhook["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "1m"}


def test_service_monitor_schema_catches_mistakes(full_manifests: list[Manifest]) -> None:
    """The schema above can fail: a ServiceMonitor with a bad interval does not pass it."""
    monitor = copy.deepcopy(only(full_manifests, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = "30"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).validate(monitor)


def test_service_monitor_interval_may_be_left_to_prometheus(helm: Helm) -> None:
    manifests = helm.template("--set", "metrics.serviceMonitor.enabled=true",
                              "--set", "metrics.serviceMonitor.interval=")
    (endpoint,) = only(manifests, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics"}


@pytest.mark.parametrize(
    ("lease", "renew", "retry"),
    [("10", "10", "2"), ("15", "20", "2"), ("15", "2", "2"), ("15", "10", "12")],
)
def test_lease_timings_out_of_order_fail(helm: Helm, lease: str, renew: str, retry: str) -> None:
    done = helm.run(
        "template", RELEASE, str(CHART),
        "--set", f"leaderElection.leaseDurationSeconds={lease}",
        "--set", f"leaderElection.renewDeadlineSeconds={renew}",
        "--set", f"leaderElection.retryPeriodSeconds={retry}",
    )
    assert done.returncode != 0
    assert (
        f"leaderElection: leaseDurationSeconds ({lease}) must be greater than "
        f"renewDeadlineSeconds ({renew}), and renewDeadlineSeconds greater than "
        f"retryPeriodSeconds ({retry})"
    ) in done.stderr



@pytest.mark.parametrize(("values", "break_glass"), [
    ("default", "[]"), ("full", '["kubeledger:break-glass","sre"]')])
def test_records_are_guarded_by_an_admission_policy_the_apiserver_enforces(
        values: str, break_glass: str, request: pytest.FixtureRequest) -> None:
    manifests: list[Manifest] = request.getfixturevalue(f"{values}_manifests")
    policy = only(manifests, "ValidatingAdmissionPolicy")
    binding = only(manifests, "ValidatingAdmissionPolicyBinding")

    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["kubeledger.io"], "apiVersions": ["*"],
         "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["auditrecords"]},
        # Deleting the CRD deletes every record.
        {"apiGroups": ["apiextensions.k8s.io"], "apiVersions": ["*"], "operations": ["DELETE"],
         "resources": ["customresourcedefinitions"],
         "resourceNames": ["auditrecords.kubeledger.io"]}]
    variables = {variable["name"]: variable["expression"] for variable in spec["variables"]}
    # The index annotation, of the object and of what it was before an update.
    index, old_index = variables.pop("index"), variables.pop("oldIndex")
    assert f"object.metadata.annotations['{record_index.ANNOTATION}']" in index
    assert old_index == index.replace("object.", "oldObject.")
    assert variables == {
        "record": "request.resource.resource == 'auditrecords'",
        "operator": f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:'
                    f'{FULLNAME}"',
        "breakGlass": f"{break_glass}.exists(g, g in request.userInfo.groups)"}
    assert {rule["reason"] for rule in spec["validations"]} == {"Forbidden"}
    *about_records, about_crd = spec["validations"]
    # Every rule about records leaves the CRD's deletion to the last one.
    assert all(rule["expression"].startswith("!variables.record || ")
               for rule in about_records)
    deletion = about_records[-1]
    assert deletion["expression"] == ("!variables.record || request.operation != 'DELETE' || "
                                      "variables.operator || variables.breakGlass")
    assert ("or by a member of kubeledger:break-glass, sre (break-glass)" in deletion["message"]
            ) is (values == "full")
    # Not even the operator deletes its CRD: it only creates and upgrades it.
    assert about_crd["expression"] == "variables.record || variables.breakGlass"
    assert about_crd["message"].startswith(
        "the AuditRecord CRD cannot be deleted: it would delete every record")
    assert ("(only a member of kubeledger:break-glass, sre may, break-glass)"
            in about_crd["message"]) is (values == "full")


def test_the_guard_and_the_operators_rbac_carry_the_protection_label(
        default_manifests: list[Manifest]) -> None:
    labelled = {(doc["kind"], doc["metadata"]["name"]) for doc in default_manifests
                if doc["metadata"].get("labels", {}).get("kubeledger.io/protection") == "true"}

    policy = f"{FULLNAME}-protect-records"
    assert labelled == {("ValidatingAdmissionPolicy", policy),
                        ("ValidatingAdmissionPolicyBinding", policy),
                        *((kind, FULLNAME) for kind in ("ClusterRole", "ClusterRoleBinding",
                                                        "Role", "RoleBinding"))}


def test_the_operator_reads_what_protects_the_records(default_manifests: list[Manifest]) -> None:
    read = {(group, resource) for rule in only(default_manifests, "ClusterRole")["rules"]
            if {"get", "list", "watch"} <= set(rule["verbs"]) and "resourceNames" not in rule
            for group in rule["apiGroups"] for resource in rule["resources"]}

    assert {("admissionregistration.k8s.io", "validatingadmissionpolicies"),
            ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("kubeledger.io", "auditrecords")} <= read


def test_the_guard_can_be_left_out(helm: Helm) -> None:
    kinds = {doc["kind"] for doc in helm.template("--set", "protection.enabled=false")}
    assert not kinds & {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


@pytest.fixture(scope="module")
def mounts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pod's mounted certificates, laid out under a root of their own: the operator
    checks them while it reads its settings."""
    root = tmp_path_factory.mktemp("pod")
    serving = serving_directory(root / "etc/kubeledger/webhook")
    audit_ca = root / "etc/kubeledger/audit-ca"
    audit_ca.mkdir()
    shutil.copy(serving / "ca.crt", audit_ca / "ca.crt")
    return root


def operator_settings(manifests: list[Manifest], mounts: Path) -> config.Settings:
    """What the operator makes of the environment the chart gives it, its files mounted."""
    environ = {name: item.get("value", "") for name, item in container_env(manifests).items()
               if "value" in item and name.startswith(config.ENV_PREFIX)
               and name != config.CONFIG_FILE_ENV}  # the config file is not rendered here
    mounted = {name: f"{mounts}{value}" if value.startswith("/etc/kubeledger/") else value
               for name, value in environ.items()}
    return config.load({**mounted, "KUBELEDGER_REDACTION_SALT": "unit-test"})


def test_anomaly_values_reach_the_operator(default_manifests: list[Manifest],
                                           full_manifests: list[Manifest],
                                           mounts: Path) -> None:
    defaults = operator_settings(default_manifests, mounts).anomaly_policy()
    assert defaults.disabled == frozenset() and defaults.protected_namespaces == ()
    assert (defaults.burst.count, defaults.burst.within.total_seconds()) == (20, 300)
    policy = operator_settings(full_manifests, mounts).anomaly_policy()
    assert policy.disabled == {AnomalyKind.BURST}
    assert policy.protected_namespaces == ("prod", "prod-*")
    assert [window.text for window in policy.change_windows] == FULL_VALUES["anomalies"][
        "changeWindows"]
    assert policy.change_window_zone.key == "Europe/Berlin"
    assert policy.change_window_exempt == {"oncall"}
    assert policy.gitops_exempt == set(FULL_VALUES["anomalies"]["gitopsExempt"])
    assert (policy.burst.count, policy.burst.within.total_seconds()) == (40, 120)
    assert (policy.rollback_spike.count, policy.failure_spike.count) == (2, 4)
    assert policy.failure_spike.within.total_seconds() == 900
    assert policy.approved_registries == ("ghcr.io/acme", "registry.example.com")


def test_prometheus_rule_alerts_on_every_anomaly_kind(default_manifests: list[Manifest],
                                                      full_manifests: list[Manifest]) -> None:
    assert not [doc for doc in default_manifests if doc["kind"] == "PrometheusRule"]
    rule = only(full_manifests, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    (group,) = rule["spec"]["groups"]
    assert group["interval"] == "30s"
    by_kind = {alert["expr"].split('"')[1]: alert for alert in group["rules"]}
    assert set(by_kind) == {kind.value for kind in AnomalyKind}
    for alert in by_kind.values():
        assert alert["expr"].endswith("> time() - 300")
        assert "{{ $labels.subject }}" in alert["annotations"]["summary"]
        assert "{{ $labels.initiator }}" in alert["annotations"]["summary"]
    # Helm merges the maps: the chart's own entries stay unless overridden.
    assert [by_kind[kind]["labels"]["severity"] for kind in (
        "critical-rbac", "out-of-band-change", "burst")] == ["page", "critical", "info"]


def test_anomaly_values_are_checked(helm: Helm) -> None:
    for flag, expected in [
        ("anomalies.disabled[0]=bursts", "anomalies/disabled/0"),
        ("anomalies.changeWindows[0]=9am", "anomalies/changeWindows/0"),
        ("metrics.prometheusRule.severities.outofband=page", "outofband"),
    ]:
        done = helm.run("template", RELEASE, str(CHART), "--set", flag)
        assert done.returncode != 0 and expected in done.stderr, done.stderr
