"""Anomalies on the real stack: each kind is flagged on a planted change and not on a normal
one, and the out-of-band change and the critical grant fire alerts in a real Alertmanager.

Everything is planted at once, against the session operator (configured for anomalies by
``operator.ANOMALY_ENV``), and the records are awaited together. ``unverified-initiator``
cannot be planted live here: the stack's webhook and audit backend authenticate every
write, so a protected namespace's normal change shows only that it is not flagged; the
unit tests plant it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.kubectl import Kubectl, eventually
from integration.manifests import MISSING_IMAGE, TEST_IMAGE_2, deployment, unique, user
from integration.operator import PROTECTED_NAMESPACE, Operator, records_of, uid_of
from stack import helm_tool, install
from stack.alertmanager import Alertmanager
from stack.cluster import Endpoints
from stack.prometheus import Prometheus

OPEN_NAMESPACE = "anomalies-open"
CHART = Path(__file__).resolve().parents[2] / "helm" / "kubeledger"
BURST = 16  # objects the burster changes: one more than the session operator allows


def _in(namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["metadata"]["namespace"] = namespace
    return manifest


def _annotated(manifest: dict[str, Any], **annotations: str) -> dict[str, Any]:
    manifest["metadata"]["annotations"] = annotations
    return manifest


def _anomalies(record: dict[str, Any]) -> set[str]:
    return {anomaly["kind"] for anomaly in record["spec"].get("anomalies", [])}


def _record(admin: Kubectl, uid: str, action: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        matching = [r for r in records_of(admin, uid) if r["spec"]["action"] == action]
        return matching[-1] if matching else None
    return eventually(found, timeout=90, what=f"a {action!r} record of {uid}")


def _service_account(admin: Kubectl, name: str, rules: list[dict[str, Any]]) -> Kubectl:
    """kubectl as a fresh service account of OPEN_NAMESPACE allowed ``rules`` there."""
    admin.apply({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": name, "namespace": OPEN_NAMESPACE}})
    admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                 "metadata": {"name": name, "namespace": OPEN_NAMESPACE}, "rules": rules})
    admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": name, "namespace": OPEN_NAMESPACE},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": name},
                 "subjects": [{"kind": "ServiceAccount", "name": name,
                               "namespace": OPEN_NAMESPACE}]})
    token = admin("-n", OPEN_NAMESPACE, "create", "token", name, "--duration=1h").strip()
    return admin.with_token(token, name)


@pytest.fixture(scope="module")
def planted(kubectl: Kubectl, operator: Operator) -> dict[str, Any]:
    """Plants every anomaly and a normal change beside it; the uids by what they are."""
    admin = kubectl.as_user("admin")
    for namespace in (PROTECTED_NAMESPACE, OPEN_NAMESPACE):
        admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        admin.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "alice-edits", "namespace": namespace},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                 "kind": "ClusterRole", "name": "edit"},
                     "subjects": [user("alice")]})
    burster = _service_account(admin, unique("burster"), [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"],
         "verbs": ["create", "get", "list"]}])
    alice = kubectl.as_user("alice")
    made: dict[str, tuple[Kubectl, dict[str, Any]]] = {
        # alice, by hand, on what Argo CD manages; and on what it does not.
        "out-of-band": (alice, _annotated(
            _in(OPEN_NAMESPACE, deployment(unique("drifted"), replicas=0)),
            **{"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:x/drifted"})),
        "normal-open": (alice, _in(OPEN_NAMESPACE, deployment(unique("plain"), replicas=0))),
        # alice in the protected namespace, outside its windows, declaring bob.
        "protected": (alice, _annotated(
            _in(PROTECTED_NAMESPACE, deployment(unique("declared"), replicas=0)),
            **{"kubeledger.io/initiator": "bob"})),
        # the admin is exempt from the windows, verified, declares nobody.
        "normal-protected": (admin, _in(PROTECTED_NAMESPACE,
                                        deployment(unique("admins"), replicas=0))),
        "foreign-image": (admin, _in(OPEN_NAMESPACE, deployment(
            unique("foreign"), image="quay.io/evil/app:1", replicas=0))),
        "failing-1": (admin, _in(OPEN_NAMESPACE, deployment(
            unique("failing"), image=MISSING_IMAGE, progress_deadline_seconds=2))),
        "failing-2": (admin, _in(OPEN_NAMESPACE, deployment(
            unique("failing"), image=MISSING_IMAGE, progress_deadline_seconds=2))),
        "rolled-1": (admin, _in(OPEN_NAMESPACE, deployment(unique("rolled")))),
        "rolled-2": (admin, _in(OPEN_NAMESPACE, deployment(unique("rolled")))),
        "critical-grant": (admin, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": unique("mallory-admin")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "cluster-admin"},
            "subjects": [user(unique("mallory"))]}),
        "normal-role": (admin, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": unique("pod-reader"), "namespace": OPEN_NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    }
    for who, manifest in made.values():
        who.apply(manifest)
    burst_roles = [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": unique("burst"), "namespace": OPEN_NAMESPACE}}
                   for _ in range(BURST)]
    burster.apply({"apiVersion": "v1", "kind": "List", "items": burst_roles})
    for name in ("rolled-1", "rolled-2"):
        metadata = made[name][1]["metadata"]
        admin("-n", OPEN_NAMESPACE, "set", "image", f"deployment/{metadata['name']}",
              f"app={TEST_IMAGE_2}")
    for name in ("rolled-1", "rolled-2"):
        metadata = made[name][1]["metadata"]
        eventually(lambda metadata=metadata: len(admin.json(  # type: ignore[misc]
            "-n", OPEN_NAMESPACE, "get", "replicasets", "-l", f"app={metadata['name']}"
        )["items"]) >= 2, timeout=60, what="the second ReplicaSet")
        admin("-n", OPEN_NAMESPACE, "rollout", "undo", f"deployment/{metadata['name']}")
    uids: dict[str, Any] = {name: uid_of(admin, manifest) for name, (_, manifest) in made.items()}
    uids["burst"] = [uid_of(admin, role) for role in burst_roles]
    return {"uids": uids, "admin": admin, "names": {
        name: manifest["metadata"]["name"] for name, (_, manifest) in made.items()}}


def test_each_kind_is_flagged_on_its_planted_change_and_not_on_a_normal_one(
        planted: dict[str, Any]) -> None:
    uids, admin = planted["uids"], planted["admin"]
    expected = {
        "out-of-band": {"out-of-band-change"},
        "normal-open": set(),
        "protected": {"declared-mismatch", "outside-change-window"},
        "normal-protected": set(),
        "foreign-image": {"unapproved-registry"},
        "critical-grant": {"critical-rbac"},
        "normal-role": set(),
    }
    found = {name: _anomalies(_record(admin, uids[name], "created")) for name in expected}
    assert found == expected
    # Of two rollbacks (two failed rollouts) in one namespace, the second is a spike.
    rollbacks = sorted(_anomalies(_record(admin, uids[name], "rolled-back"))
                       for name in ("rolled-1", "rolled-2"))
    failures = sorted(_anomalies(_record(admin, uids[name], "rollout-failed"))
                      for name in ("failing-1", "failing-2"))
    assert rollbacks == [set(), {"rollback-spike"}]
    assert failures == [set(), {"failure-spike"}]
    burst = [_anomalies(_record(admin, uid, "created")) for uid in uids["burst"]]
    assert burst.count({"burst"}) == 1 and burst.count(set()) == BURST - 1
    reason = _record(admin, uids["protected"], "created")["spec"]["anomalies"]
    assert any("declares bob but was changed by alice" in a["reason"] for a in reason)


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's PrometheusRule as ``helm template`` renders it, as a plain rules file."""
    rendered = subprocess.run(
        [str(helm_tool.ensure_helm()), "template", "kubeledger", str(CHART),
         "--show-only", "templates/prometheusrule.yaml",
         "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.prometheusRule.interval=1s"],
        capture_output=True, text=True, check=True).stdout
    path = tmp_path_factory.mktemp("rules") / "kubeledger.rules.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(rendered)["spec"]))
    return path


def test_promtool_accepts_the_rendered_rule(rules_file: Path) -> None:
    checked = subprocess.run(
        [str(install.prometheus_build().binary("promtool")), "check", "rules", str(rules_file)],
        capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout


@pytest.fixture(scope="module")
def alertmanager(stack: Endpoints) -> Iterator[Alertmanager]:
    with Alertmanager(stack) as running:
        yield running


def test_out_of_band_change_and_critical_grant_reach_alertmanager(
        planted: dict[str, Any], stack: Endpoints, operator: Operator, rules_file: Path,
        alertmanager: Alertmanager) -> None:
    names = planted["names"]
    _record(planted["admin"], planted["uids"]["critical-grant"], "created")
    wanted = {
        ("KubeledgerOutOfBandChange", f"Deployment/{names['out-of-band']}", "alice"),
        ("KubeledgerCriticalRbac", f"ClusterRoleBinding/{names['critical-grant']}", "admin"),
    }
    with Prometheus(stack, "", name="prometheus-anomalies",
                    static_target=operator.metrics_url.split("/")[2], rule_files=[rules_file],
                    alertmanager_url=alertmanager.url):

        def arrived() -> list[dict[str, Any]] | None:
            alerts = [alert for alert in alertmanager.alerts()
                      if (alert["labels"]["alertname"], alert["labels"].get("subject"),
                          alert["labels"].get("initiator")) in wanted]
            return alerts if len(alerts) == len(wanted) else None

        alerts = eventually(arrived, timeout=60, what="both alerts in Alertmanager")
    summaries = sorted(alert["annotations"]["summary"] for alert in alerts)
    assert summaries == sorted([
        f"Out-of-band change: Deployment/{names['out-of-band']} in namespace "
        f"'{OPEN_NAMESPACE}' by alice",
        f"Critical RBAC change: ClusterRoleBinding/{names['critical-grant']} in namespace "
        "'' by admin",
    ])
    assert all(alert["status"]["state"] == "active" for alert in alerts)
