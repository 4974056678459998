"""The operator installed into the stack's cluster the way users install it: ``helm install``.

The image is built from the project's Dockerfile (``operator_image``) and imported into
the node's containerd; the chart runs it with everything wired as on a real cluster:

- the admission webhook behind its Service, with a serving certificate from the stack's
  CA (``webhook.tls.existingSecret``): the apiserver must trust the audit receiver's
  certificate before the chart is installed, because it reads its audit backend's
  kubeconfig only when it starts;
- the audit receiver on port 8443 of that Service, at a fixed ClusterIP (the apiserver
  has no cluster DNS), over mutual TLS with the apiserver's audit client certificate;
- Elasticsearch reached from the pod at the node's bridge address over HTTPS, verified
  with the stack's CA (``elasticsearch.caSecret``), with credentials from a Secret.

``install()`` and ``upgrade()`` return once the writer records live: the Lease names
one of the release's running pods, and that pod has logged that every watch has listed
its kind, so a change made the next second is recorded live. Readiness alone would not
say so: a standby is Ready too (it serves the webhook), also while it waits for a Lease
that an earlier pod left behind.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeledger.first_listing import RECORDING_LIVE
from stack import helm_tool, operator_image, pki
from stack.cluster import AuditTarget, Endpoints, Stack
from stack.shell import say

CHECKOUT = Path(__file__).resolve().parents[2]
CHART = CHECKOUT / "helm" / "kubeledger"
RELEASE = "kubeledger"
NAMESPACE = "kubeledger"
FULLNAME = "kubeledger"  # the chart's fullname for a release named like the chart
DEPLOYMENT = FULLNAME
SERVICE = f"{FULLNAME}-webhook"
SERVICE_DNS_NAME = f"{SERVICE}.{NAMESPACE}.svc"
AUDIT_PORT = 8443
TLS_SECRET = f"{FULLNAME}-serving-tls"
AUDIT_CA_SECRET = f"{FULLNAME}-audit-client-ca"
ELASTICSEARCH_SECRET = f"{FULLNAME}-elasticsearch"
ELASTICSEARCH_CA_SECRET = f"{FULLNAME}-elasticsearch-ca"
CHECKPOINT_KEY_SECRET = f"{FULLNAME}-checkpoint-key"
READY_TIMEOUT = "180s"
# A standby waits out a Lease its killed predecessor held (15 s), then loads the records.
WRITER_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Helm:
    """The cached helm binary acting as the stack's admin, with a private helm home."""

    kubeconfig: Path
    home: Path

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs ``helm ARGS`` against the stack; the caller reads the outcome."""
        env = {**os.environ, **{f"HELM_{part}_HOME": str(self.home / part.lower())
                                for part in ("CONFIG", "CACHE", "DATA")}}
        return subprocess.run(
            [str(helm_tool.ensure_helm()), *args, "--kubeconfig", str(self.kubeconfig),
             "--kube-context", "admin"],
            env=env, capture_output=True, text=True, timeout=timeout, check=False)

    def __call__(self, *args: str, timeout: float = 300) -> str:
        """Runs ``helm ARGS``; its output, or an error carrying what helm said."""
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout


def values(*, image: str, service_ip: str, elasticsearch_url: str,
           cluster_name: str = "local") -> dict[str, Any]:
    """The chart values of the stack's release."""
    repository, tag = image.rsplit(":", 1)
    return {
        "clusterName": cluster_name,
        # Imported into containerd by the stack; never pulled.
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "webhook": {"tls": {"existingSecret": TLS_SECRET},
                    "service": {"clusterIP": service_ip}},
        "audit": {"enabled": True, "clientCASecret": AUDIT_CA_SECRET},
        "elasticsearch": {"url": elasticsearch_url, "existingSecret": ELASTICSEARCH_SECRET,
                          "caSecret": ELASTICSEARCH_CA_SECRET,
                          # The host-run operator's key and pace (``operator_env``).
                          "checkpoints": {"intervalSeconds": 2,
                                          "keySecret": CHECKPOINT_KEY_SECRET}},
    }


def build_image() -> tuple[str, Path]:
    """The operator image built from this checkout's Dockerfile: (reference, OCI archive)."""
    say("building the operator image from the Dockerfile (only when its sources changed)")
    return operator_image.build_operator_image(CHECKOUT)


def secret_manifests(*, serving_cert: Path, serving_key: Path, ca_cert: Path,
                     elasticsearch_username: str, elasticsearch_password: str,
                     elasticsearch_ca: Path, checkpoint_key: Path) -> str:
    """The Secrets the release refers to, as one JSON List for ``kubectl apply``."""
    def secret(name: str, data: dict[str, str], kind: str = "Opaque") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": kind,
                "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": data}

    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        secret(TLS_SECRET, {"tls.crt": serving_cert.read_text(), "tls.key": serving_key.read_text(),
                            "ca.crt": ca_cert.read_text()}, "kubernetes.io/tls"),
        secret(AUDIT_CA_SECRET, {"ca.crt": ca_cert.read_text()}),
        secret(ELASTICSEARCH_SECRET, {"username": elasticsearch_username,
                                      "password": elasticsearch_password}),
        secret(ELASTICSEARCH_CA_SECRET, {"ca.crt": elasticsearch_ca.read_text()}),
        secret(CHECKPOINT_KEY_SECRET, {"key": checkpoint_key.read_text()}),
    ]})


SALT_SECRET = f"{FULLNAME}-redaction-salt"
SERVING_CERTIFICATE = pki.Certificate("in-cluster-serving", f"/CN={SERVICE_DNS_NAME}",
                                      (f"DNS:{SERVICE_DNS_NAME}",))
# The Service's fixed address, in the static band of the service range: the apiserver
# gives Services without a fixed address ones from above that band (for the stack's /24,
# above the 16th), so the chart's metrics Service can never have taken it first.
AUDIT_SERVICE_IP_INDEX = 10


class Release:
    """The chart's release in one stack: install, upgrade and uninstall it as an admin would."""

    def __init__(self, stack: Stack, endpoints: Endpoints) -> None:
        self.stack = stack
        self.endpoints = endpoints
        self.helm = Helm(endpoints.kubeconfig, stack.directory / "helm")
        self.service_ip = endpoints.plan.service_ip(AUDIT_SERVICE_IP_INDEX)
        self.image = ""

    @property
    def audit_target(self) -> AuditTarget:
        """The apiserver's audit backend pointed at the pod, through the Service's address."""
        return AuditTarget(url=f"https://{self.service_ip}:{AUDIT_PORT}/audit",
                           tls_server_name=SERVICE_DNS_NAME)

    def install(self) -> None:
        """Builds and imports the image, installs the chart; returns once the pod is Ready."""
        self.image, archive = build_image()
        self.stack.import_image(archive)
        # The apiserver reads its audit backend's address only when it starts: the stack
        # restarts it when the target changes.
        self.endpoints = self.stack.up(audit_target=self.audit_target)
        self._apply_secrets()
        say(f"installing the chart (release {RELEASE} in namespace {NAMESPACE}, "
            f"image {self.image})")
        self._helm_upgrade(self.values())
        say("the operator records live: its writer's watches have listed every audited kind")

    def values(self, **overrides: Any) -> dict[str, Any]:
        chosen = values(image=self.image, service_ip=self.service_ip,
                        elasticsearch_url=self.endpoints.elasticsearch_cluster_url)
        return {**chosen, **overrides}

    def upgrade(self, **overrides: Any) -> None:
        """``helm upgrade`` with the same values plus ``overrides``; waits for the new pod."""
        self._helm_upgrade(self.values(**overrides))

    def uninstall(self) -> None:
        """``helm uninstall``; waits until the pod is gone (the CRD and records stay)."""
        self.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--ignore-not-found",
                  "--wait", "--timeout", READY_TIMEOUT)

    def installed(self) -> bool:
        listed = json.loads(self.helm("list", "--namespace", NAMESPACE, "--output", "json"))
        return any(entry["name"] == RELEASE for entry in listed)

    def salt(self) -> str:
        """The redaction salt the release's pods hash secret values with."""
        secret = self._kubectl_json("get", "secret", "-n", NAMESPACE, SALT_SECRET)
        return base64.b64decode(secret["data"]["salt"]).decode()

    def writer(self) -> str | None:
        """The pod that writes the records now, once it records live; None before."""
        found = self._kubectl("get", "lease", "-n", NAMESPACE, FULLNAME,
                              "--ignore-not-found", "-o", "json").strip()
        holder = (json.loads(found).get("spec") or {}).get("holderIdentity") if found else None
        pod = (holder or "").rsplit("_", 1)[0]
        pods = self._kubectl_json("get", "pods", "-n", NAMESPACE, "-l",
                                  f"app.kubernetes.io/instance={RELEASE}")["items"]
        if not pod or pod not in {p["metadata"]["name"] for p in pods
                                  if not p["metadata"].get("deletionTimestamp")}:
            return None
        logs = self._kubectl("logs", "-n", NAMESPACE, pod)
        return pod if RECORDING_LIVE in logs else None

    def _helm_upgrade(self, chosen: dict[str, Any]) -> None:
        values_file = self.stack.directory / "helm" / "values.json"
        values_file.parent.mkdir(parents=True, exist_ok=True)
        values_file.write_text(json.dumps(chosen, indent=2))
        self.helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE,
                  "--values", str(values_file), "--wait", "--timeout", READY_TIMEOUT)
        deadline = time.monotonic() + WRITER_TIMEOUT_SECONDS
        while self.writer() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no pod of the release records live after "
                                   f"{WRITER_TIMEOUT_SECONDS:.0f} s")
            time.sleep(0.5)

    def _apply_secrets(self) -> None:
        """The Secrets the values name, and the salt the host-run operator uses too.

        The salt Secret carries Helm's ownership metadata, so the chart adopts it instead
        of generating another salt: records made by the host-run operator and by the pod
        then hash the same secret value the same way.
        """
        stack_pki = pki.ensure_pki(self.endpoints.pki.directory, [SERVING_CERTIFICATE])
        manifests = json.loads(secret_manifests(
            serving_cert=stack_pki.path(f"{SERVING_CERTIFICATE.name}.crt"),
            serving_key=stack_pki.path(f"{SERVING_CERTIFICATE.name}.key"),
            ca_cert=stack_pki.ca_cert,
            elasticsearch_username=self.endpoints.elasticsearch_writer_username,
            elasticsearch_password=self.endpoints.elasticsearch_writer_password,
            elasticsearch_ca=self.endpoints.elasticsearch_ca,
            checkpoint_key=self.endpoints.checkpoint_key_file))
        manifests["items"].append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {
                "name": SALT_SECRET, "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": RELEASE,
                                "meta.helm.sh/release-namespace": NAMESPACE,
                                "helm.sh/resource-policy": "keep"}},
            "stringData": {"salt": self.endpoints.redaction_salt}})
        self._kubectl("apply", "-f", "-", stdin=json.dumps(manifests))

    def _kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(self.endpoints.kubectl), "--kubeconfig", str(self.endpoints.kubeconfig),
             "--context", "admin", *args],
            input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def _kubectl_json(self, *args: str) -> Any:
        return json.loads(self._kubectl(*args, "-o", "json"))
