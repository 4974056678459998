"""The Helm chart: it lints, renders valid Kubernetes objects and grants least privilege.

Runs the real ``helm`` (built once per machine by ``stack.helm_tool``) offline: ``helm
template`` renders without a cluster, so every ``lookup`` comes back empty and the chart
takes its first-install path (fresh salt, fresh webhook certificate). Rendered objects are
checked against Kubernetes 1.30's schemas with ``kubernetes_validate``; the record schema
itself is tested in ``test_crd``.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stack import helm_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kubeledger"
CRD_FILE = ROOT / "crds" / "auditrecords.yaml"
RELEASE = "ledger"
NAMESPACE = "audit"
KUBERNETES_VERSION = "1.30.0"
# Kinds kubernetes_validate has no schema for (cert-manager's CRDs).
CERT_MANAGER_KINDS = {"Issuer", "Certificate"}

# Every optional feature switched on at once.
FULL_VALUES: dict[str, Any] = {
    "clusterName": "prod-eu-1",
    "watch": {"extraKinds": ["statefulsets", "daemonsets"]},
    "webhook": {"certManager": {"enabled": True}, "timeoutSeconds": 5},
    "elasticsearch": {
        "url": "https://elasticsearch.logging.svc:9200",
        "existingSecret": "es-credentials",
        "caSecret": "es-ca",
        "verifyCerts": True,
    },
    "config": {"redaction": {"secret_name_patterns": ["(?i)token"]}, "max_changes_per_record": 32},
    "podAnnotations": {"example.com/team": "platform"},
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


def container_env(manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """The operator container's environment, by variable name."""
    (container,) = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in container["env"]}


def test_lint_strict_passes(helm: Helm, full_values_file: Path) -> None:
    for args in ([], ["--values", str(full_values_file)]):
        done = helm.run("lint", "--strict", str(CHART), *args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_object_is_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        if manifest["kind"] in CERT_MANAGER_KINDS:
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
        ("replicaCount=2", "/replicaCount"),
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


def test_role_is_limited_to_the_operators_configmaps(
    default_manifests: list[Manifest],
) -> None:
    role = only(default_manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("", "configmaps"): {"get", "list", "watch", "create", "update", "patch"},
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
                                 "--readiness", "http://0.0.0.0:8081/readyz"]
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
    assert env["KUBELEDGER_WATCH_EXTRA_KINDS"]["value"] == ""
    assert env["ELASTICSEARCH_URL"]["value"] == ""
    assert env["ELASTICSEARCH_INDEX_PREFIX"]["value"] == "kubeledger"
    assert not {"ELASTICSEARCH_USERNAME", "ELASTICSEARCH_CA_CERTS", "KUBELEDGER_CONFIG"} & set(env)
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
    assert env["KUBELEDGER_CONFIG"]["value"] == "/etc/kubeledger/config/config.yaml"
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
    (port,) = only(default_manifests, "Service")["spec"]["ports"]
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
    kinds = {doc["kind"] for doc in manifests}
    assert not {"ValidatingWebhookConfiguration", "Service"} & kinds
    env = container_env(manifests)
    assert "KUBELEDGER_WEBHOOK_PORT" not in env


def test_namespaced_objects_land_in_the_release_namespace(
    full_manifests: list[Manifest],
) -> None:
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
    }
    for doc in full_manifests:
        expected = "" if doc["kind"] in cluster_scoped else NAMESPACE
        assert doc["metadata"].get("namespace", "") == expected, doc["metadata"]["name"]


AUDIT_VALUES = ("--set", "audit.enabled=true", "--set", "audit.clientCASecret=apiserver-ca",
                "--set", "webhook.service.clusterIP=10.96.0.50")


def test_audit_receiver_serves_on_the_webhook_service(helm: Helm) -> None:
    manifests = helm.template(*AUDIT_VALUES)
    service = only(manifests, "Service")["spec"]
    assert service["clusterIP"] == "10.96.0.50"
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["ports"]}
    assert ports == {"https": (443, "webhook"), "audit": (8443, "audit")}
    env = container_env(manifests)
    assert env["KUBELEDGER_AUDIT_PORT"]["value"] == "8443"
    assert env["KUBELEDGER_AUDIT_CLIENT_CA"]["value"] == "/etc/kubeledger/audit-ca/ca.crt"
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "audit-ca"]
    assert volume["secret"]["secretName"] == "apiserver-ca"


def test_audit_receiver_alone_still_serves_tls(helm: Helm) -> None:
    manifests = helm.template(*AUDIT_VALUES, "--set", "webhook.enabled=false")
    assert "ValidatingWebhookConfiguration" not in {doc["kind"] for doc in manifests}
    (port,) = only(manifests, "Service")["spec"]["ports"]
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


def test_upgrades_replace_the_single_writer(default_manifests: list[Manifest]) -> None:
    spec = only(default_manifests, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
