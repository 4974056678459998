"""The Helm chart installed for real into the session's stack, checked the way an admin would.

One release (``ledger`` in namespace ``kubeledger-chart``) is installed once per module by
the real ``helm`` (``stack.release.Helm``) and always uninstalled afterwards, together with
what the chart keeps on uninstall and the namespace itself. Its image
(``ghcr.io/kubeledger/kubeledger``) is never pulled here (the node pulls nothing from
outside), so its pod never runs: a second operator would be a second writer of the chain
beside the tests' own. Its ValidatingWebhookConfiguration then points the apiserver at a
Service with no ready endpoints, which every later write of an audited kind would pay for.

The AuditRecord CRD is owned by the operator (it installs it at start-up), not by Helm, so
the release runs with ``crds.install=false``; a second release that brings the CRD along is
refused by Helm's ownership check, and nothing it would have installed is left behind.
Privileges are asked of the apiserver's real RBAC authorizer (``kubectl auth can-i --as``
the operator's ServiceAccount), not read off the rendered ClusterRole (tests/unit/test_chart).

The tests of the shared release run in file order: install checks, upgrade, uninstall.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.kubectl import Kubectl, eventually
from kubeledger.kube import crd
from stack.cluster import Endpoints
from stack.release import Helm as StackHelm

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubeledger"
NAMESPACE = "kubeledger-chart"
RELEASE = "ledger"
FULLNAME = f"{RELEASE}-kubeledger"  # the chart's `kubeledger.fullname` for this release
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
SALT_SECRET = f"{FULLNAME}-redaction-salt"
TLS_SECRET = f"{FULLNAME}-webhook-tls"
WEBHOOK_SERVICE = f"{FULLNAME}-webhook"
# The CRD belongs to the operator: the release must not bring (or take over) its own. Nor
# its guard of the records: that would refuse the session's host-run operator its writes
# (the e2e tests check the guard, with the release that is the only writer).
VALUES = ("--set", "crds.install=false", "--set", "clusterName=chart-test",
          "--set", "protection.enabled=false")
# The chart's cluster-scoped kinds, but the CRD (the operator's, and kept by design).
CLUSTER_SCOPED_KINDS = "validatingwebhookconfigurations,clusterrolebindings,clusterroles"

Json = dict[str, Any]


# -- helm ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm(StackHelm):
    """The stack's helm (``stack.release.Helm``) with the checks these tests make."""

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout

    def install(self, release: str, namespace: str,
                *values: str) -> subprocess.CompletedProcess[str]:
        return self.run("install", release, str(CHART), "--namespace", namespace,
                        "--create-namespace", "--wait=false", *values)

    def status(self, release: str, namespace: str) -> Json | None:
        """The release as `helm status` reports it, or None when Helm knows no such release."""
        done = self.run("status", release, "--namespace", namespace, "--output", "json")
        if done.returncode != 0:
            assert "release: not found" in done.stderr, done.stderr
            return None
        status: Json = json.loads(done.stdout)
        return status


@pytest.fixture(scope="module")
def helm(stack: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(stack.kubeconfig, tmp_path_factory.mktemp("helm-home"))


def remove_release(helm: Helm, kubectl: Kubectl, release: str, namespace: str) -> None:
    """Leaves nothing of ``release``: the release, what the chart keeps, the namespace.

    Every step runs even when an earlier one fails, so a broken uninstall still does not
    leave the namespace behind (and the other way round); the first failure is raised.
    """
    managed = f"app.kubernetes.io/instance={release},app.kubernetes.io/managed-by=Helm"
    steps: list[Callable[[], object]] = [
        lambda: helm.ok("uninstall", release, "--namespace", namespace, "--ignore-not-found"),
        # A fallback for a failed uninstall: the release's cluster-scoped objects.
        lambda: kubectl("delete", CLUSTER_SCOPED_KINDS, "-l", managed, "--ignore-not-found"),
        # The salt Secret is kept by `helm uninstall` (helm.sh/resource-policy: keep).
        lambda: kubectl("delete", "secrets", "-n", namespace, "-l", managed,
                        "--ignore-not-found"),
        lambda: kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=50s"),
    ]
    failures: list[Exception] = []
    for step in steps:
        try:
            step()
        except Exception as failure:  # cleanup goes on after a failed step
            failures.append(failure)
    if failures:
        raise failures[0]


@pytest.fixture(scope="module")
def operator_crd(kubectl: Kubectl) -> Json:
    """The AuditRecord CRD as the operator installs it; created only if no one has yet.

    In a full session the operator of the other tests has installed it already; run alone,
    this module creates the very object the operator would (``kubeledger.kube.crd.manifest``),
    so a later operator start finds it unchanged. It is never modified or deleted here.
    """
    if not kubectl("get", "crd", crd.CRD_NAME, "--ignore-not-found", "-o", "name"):
        kubectl("create", "-f", "-", stdin=json.dumps(crd.manifest()))
    kubectl("wait", "--for=condition=Established", f"crd/{crd.CRD_NAME}", "--timeout=30s")
    found: Json = kubectl.json("get", "crd", crd.CRD_NAME)
    return found


@pytest.fixture(scope="module")
def release(helm: Helm, kubectl: Kubectl, operator_crd: Json) -> Iterator[str]:
    """Release ``ledger`` installed once for the module; always removed again afterwards."""
    try:
        installed = helm.install(RELEASE, NAMESPACE, *VALUES)
        assert installed.returncode == 0, f"helm install failed:\n{installed.stderr}"
        yield installed.stdout
    finally:
        remove_release(helm, kubectl, RELEASE, NAMESPACE)


# -- reading the cluster ------------------------------------------------------------------


def get(kubectl: Kubectl, kind: str, name: str, namespace: str | None = None) -> Json | None:
    """The object, or None when it does not exist."""
    scope = ["--namespace", namespace] if namespace else []
    text = kubectl("get", kind, name, *scope, "--ignore-not-found", "--output", "json")
    if not text.strip():
        return None
    found: Json = json.loads(text)
    return found


def secret_data(kubectl: Kubectl, name: str) -> dict[str, str]:
    secret = get(kubectl, "secret", name, NAMESPACE)
    assert secret is not None, f"Secret {NAMESPACE}/{name} is missing"
    data: dict[str, str] = secret["data"]
    return data


def only_webhook(kubectl: Kubectl) -> Json:
    configuration = get(kubectl, "validatingwebhookconfiguration", FULLNAME)
    assert configuration is not None, "the release's ValidatingWebhookConfiguration is missing"
    (webhook,) = configuration["webhooks"]
    found: Json = webhook
    return found


def resource_policy(found: Json | None) -> str | None:
    """The helm.sh/resource-policy annotation of an object ("keep": uninstall leaves it)."""
    annotations: dict[str, str] = ((found or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get("helm.sh/resource-policy")


def can_i(kubectl: Kubectl, verb: str, resource: str, namespace: str | None,
          as_user: str = SERVICE_ACCOUNT) -> bool:
    """What the apiserver's authorizer answers for ``as_user`` (None: all namespaces).

    ``kubectl auth can-i`` exits 1 for "no" as well as on errors, so its answer is read from
    standard output rather than from the exit code.
    """
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    endpoints = kubectl.endpoints
    done = subprocess.run(
        [str(endpoints.kubectl), "--kubeconfig", str(endpoints.kubeconfig), "--context", "admin",
         "auth", "can-i", verb, resource, *scope, f"--as={as_user}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    answer = done.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl auth can-i failed: {done.stderr}"
    return answer == "yes"


# Every object the release must create, as (kind, name, namespace or None if cluster-scoped).
RELEASE_OBJECTS = [
    ("serviceaccount", FULLNAME, NAMESPACE),
    ("clusterrole", FULLNAME, None),
    ("clusterrolebinding", FULLNAME, None),
    ("role", FULLNAME, NAMESPACE),
    ("rolebinding", FULLNAME, NAMESPACE),
    ("deployment", FULLNAME, NAMESPACE),
    ("service", WEBHOOK_SERVICE, NAMESPACE),
    ("secret", TLS_SECRET, NAMESPACE),
    ("secret", SALT_SECRET, NAMESPACE),
    ("validatingwebhookconfiguration", FULLNAME, None),
]
# What `helm uninstall` leaves on purpose (helm.sh/resource-policy: keep).
KEPT_ON_UNINSTALL = {("secret", SALT_SECRET, NAMESPACE)}


# -- the installed release ----------------------------------------------------------------


def test_install_is_deployed(helm: Helm, release: str) -> None:
    status = helm.status(RELEASE, NAMESPACE)
    assert status is not None
    assert (status["info"]["status"], status["version"]) == ("deployed", 1)
    # The notes tell the admin what uninstall leaves behind; this release has no CRD.
    assert "keeps the redaction salt Secret" in release
    assert "kubectl delete crd" not in release


@pytest.mark.parametrize(("kind", "name", "namespace"), RELEASE_OBJECTS,
                         ids=[f"{kind}/{name}" for kind, name, _ in RELEASE_OBJECTS])
def test_release_object_exists_and_is_owned_by_helm(
    kubectl: Kubectl, release: str, kind: str, name: str, namespace: str | None,
) -> None:
    found = get(kubectl, kind, name, namespace)
    assert found is not None, f"{kind} {name} was not created"
    metadata = found["metadata"]
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert metadata["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert metadata["annotations"]["meta.helm.sh/release-namespace"] == NAMESPACE


def test_bindings_grant_the_roles_to_the_operator_service_account(
    kubectl: Kubectl, release: str,
) -> None:
    subject = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    for kind, namespace, role_kind in (("clusterrolebinding", None, "ClusterRole"),
                                       ("rolebinding", NAMESPACE, "Role")):
        binding = get(kubectl, kind, FULLNAME, namespace)
        assert binding is not None
        assert binding["subjects"] == [subject]
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) == (role_kind, FULLNAME)


def test_operator_pod_is_locked_down(kubectl: Kubectl, release: str) -> None:
    deployment = get(kubectl, "deployment", FULLNAME, NAMESPACE)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    # The apiserver admits the pod the controller-manager makes of it, the scheduler puts
    # it on the node, and the node refuses to pull an image from outside this machine.
    selector = f"app.kubernetes.io/instance={RELEASE}"
    # The chart's default: two replicas, one writer and a standby.
    pods = eventually(lambda: len(listed := kubectl.json(
        "get", "pods", "-n", NAMESPACE, "-l", selector)["items"]) == 2 and listed,
                      what="the two operator pods to be created")
    assert {pod["spec"]["serviceAccountName"] for pod in pods} == {FULLNAME}
    assert {pod["status"]["phase"] for pod in pods} == {"Pending"}

    def pull_refused() -> bool:
        pods = kubectl.json("get", "pods", "-n", NAMESPACE, "-l", selector)["items"]
        return all({"ErrImagePull", "ImagePullBackOff"} & {
            s.get("state", {}).get("waiting", {}).get("reason")
            for s in pod["status"].get("containerStatuses", [])} for pod in pods)
    eventually(pull_refused, timeout=60, what="the node to refuse pulling ghcr.io's image")


def test_webhook_never_blocks_and_trusts_the_generated_certificate(
    kubectl: Kubectl, release: str, tmp_path: Path,
) -> None:
    webhook = only_webhook(kubectl)
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    client = webhook["clientConfig"]
    assert client["service"]["name"] == WEBHOOK_SERVICE
    assert client["service"]["namespace"] == NAMESPACE
    assert client["caBundle"]
    tls = get(kubectl, "secret", TLS_SECRET, NAMESPACE)
    assert tls is not None
    assert tls["type"] == "kubernetes.io/tls"
    assert tls["data"]["ca.crt"] == client["caBundle"]
    # The certificate the pod would serve is valid, for the Service's DNS name, under the
    # caBundle the apiserver verifies it with.
    for key in ("ca.crt", "tls.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(tls["data"][key]))
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"),
         "-verify_hostname", f"{WEBHOOK_SERVICE}.{NAMESPACE}.svc", str(tmp_path / "tls.crt")],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_redaction_salt_is_generated(kubectl: Kubectl, release: str) -> None:
    salt = base64.b64decode(secret_data(kubectl, SALT_SECRET)["salt"])
    assert len(salt) == 32


# (verb, resource, namespace or None for all namespaces) the operator needs, then must not have.
READ_RESOURCES = [
    "deployments.apps",
    "roles.rbac.authorization.k8s.io", "clusterroles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
]
GRANTED = [
    *((verb, resource, None) for resource in READ_RESOURCES for verb in ("list", "watch")),
    ("create", crd.CRD_NAME, None),
    ("delete", crd.CRD_NAME, None),
    ("update", "configmaps", NAMESPACE),
]
DENIED = [
    ("get", "secrets", None),
    ("get", "secrets", NAMESPACE),
    ("list", "replicasets.apps", None),
    ("update", "deployments.apps", None),
    ("patch", "deployments.apps", None),
    ("delete", "deployments.apps", None),
    ("update", crd.CRD_NAME, None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("update", "configmaps", "demo"),
]


def privilege_id(case: tuple[str, str, str | None]) -> str:
    verb, resource, namespace = case
    return f"{verb}-{resource}-in-{namespace or 'all-namespaces'}"


@pytest.mark.parametrize("case", GRANTED, ids=privilege_id)
def test_operator_may(kubectl: Kubectl, release: str, case: tuple[str, str, str | None]) -> None:
    assert can_i(kubectl, *case), f"the operator's ServiceAccount may not {privilege_id(case)}"


@pytest.mark.parametrize("case", DENIED, ids=privilege_id)
def test_operator_may_not(kubectl: Kubectl, release: str,
                          case: tuple[str, str, str | None]) -> None:
    assert not can_i(kubectl, *case), f"the operator's ServiceAccount may {privilege_id(case)}"


def test_upgrade_reuses_salt_and_webhook_certificate(
    helm: Helm, kubectl: Kubectl, release: str,
) -> None:
    before = {name: secret_data(kubectl, name) for name in (SALT_SECRET, TLS_SECRET)}
    ca_bundle = only_webhook(kubectl)["clientConfig"]["caBundle"]
    helm.ok("upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--wait=false", *VALUES)
    status = helm.status(RELEASE, NAMESPACE)
    assert status is not None
    assert (status["info"]["status"], status["version"]) == ("deployed", 2)
    assert {name: secret_data(kubectl, name) for name in before} == before
    assert only_webhook(kubectl)["clientConfig"]["caBundle"] == ca_bundle


def test_uninstall_removes_everything_but_the_kept_salt(
    helm: Helm, kubectl: Kubectl, release: str,
) -> None:
    salt = secret_data(kubectl, SALT_SECRET)
    kept = {obj for obj in RELEASE_OBJECTS if resource_policy(get(kubectl, *obj)) == "keep"}
    assert kept == KEPT_ON_UNINSTALL
    helm.ok("uninstall", RELEASE, "--namespace", NAMESPACE)
    assert helm.status(RELEASE, NAMESPACE) is None
    left = {obj for obj in RELEASE_OBJECTS if get(kubectl, *obj) is not None}
    assert left == KEPT_ON_UNINSTALL
    assert secret_data(kubectl, SALT_SECRET) == salt
    # The grants went with the bindings.
    assert not can_i(kubectl, "list", "deployments.apps", None)
    # The module's fixture deletes the kept Secret and then the namespace.


# -- the CRD and values, each with a release of its own ------------------------------------


def test_chart_crd_is_kept_on_uninstall(helm: Helm) -> None:
    """With crds.install=true the chart renders the CRD with the keep policy."""
    rendered = helm.ok("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                       "--set", "crds.install=true")
    (definition,) = [doc for doc in yaml.safe_load_all(rendered)
                     if doc and doc["kind"] == "CustomResourceDefinition"]
    assert definition["metadata"]["name"] == crd.CRD_NAME
    assert definition["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_release_cannot_take_over_the_operators_crd(
    helm: Helm, kubectl: Kubectl, operator_crd: Json,
) -> None:
    name, namespace = "ledger-crd", "kubeledger-chart-crd"
    try:
        done = helm.install(name, namespace, "--set", "crds.install=true")
        assert done.returncode != 0, "helm installed a release that owns the operator's CRD"
        # Helm checks ownership only after the rendered CRD passed validation against the
        # apiserver's OpenAPI schema: the CRD, CEL rules included, is valid.
        assert f'CustomResourceDefinition "{crd.CRD_NAME}"' in done.stderr
        assert "exists and cannot be imported into the current release" in done.stderr
        assert "invalid ownership metadata" in done.stderr
        assert helm.status(name, namespace) is None
        assert get(kubectl, "clusterrole", f"{name}-kubeledger") is None
        after = kubectl.json("get", "crd", crd.CRD_NAME)["metadata"]
        assert after["resourceVersion"] == operator_crd["metadata"]["resourceVersion"]
        assert after.get("annotations", {}).get("meta.helm.sh/release-name") != name
    finally:
        remove_release(helm, kubectl, name, namespace)


def test_values_typo_fails_the_install_and_installs_nothing(
    helm: Helm, kubectl: Kubectl,
) -> None:
    name, namespace = "typo", "kubeledger-chart-typo"
    try:
        done = helm.install(name, namespace, *VALUES, "--set", "rbca.create=false")
        assert done.returncode != 0, "helm installed a release with a misspelt value"
        assert "values don't meet the specifications of the schema" in done.stderr
        assert "rbca" in done.stderr
        assert helm.status(name, namespace) is None
        assert get(kubectl, "namespace", namespace) is None
        assert get(kubectl, "clusterrole", f"{name}-kubeledger") is None
    finally:
        remove_release(helm, kubectl, name, namespace)
