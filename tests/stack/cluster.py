"""The local stack: etcd, kube-apiserver, kube-controller-manager and Elasticsearch on 127.0.0.1.

``Stack(directory).up()`` starts whatever is not running yet (idempotent), and
``down()`` stops everything it started. A stack directory holds all of its state:

    state.json      ports and the Elasticsearch password, fixed at first start
    pki/            CA, serving and client certificates, token file
    kubeconfig      contexts admin (client certificate), alice and bob (tokens)
    env             KEY=value lines for shells and for the operator
    run/*.pid       one PID file per process
    logs/*.log      one log per process
    etcd/, elasticsearch/   data, kept across restarts

Ports are free ephemeral ports chosen at first start, so a test run and ``make dev-up``
never collide. The apiserver sends audit events (batch mode) to the operator's audit
port over mutual TLS, and the stack creates namespace ``demo`` where the token users
alice and bob hold the built-in ``edit`` role.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack import cache, elasticsearch, install
from stack.pki import TOKEN_USERS, Pki, ensure_pki
from stack.processes import ProcessTable
from stack.readiness import http_ok, wait_until
from stack.shell import run, say

# In start order; stopped in reverse.
PROCESSES = ("elasticsearch", "etcd", "kube-apiserver", "kube-controller-manager", "operator")
PORT_NAMES = (
    "etcd", "etcd_peer", "apiserver", "controller_manager",
    "elasticsearch", "elasticsearch_transport", "webhook", "audit",
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: RequestResponse
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: apps
        resources: ["deployments", "deployments/scale", "statefulsets", "daemonsets"]
      - group: rbac.authorization.k8s.io
        resources: ["roles", "clusterroles", "rolebindings", "clusterrolebindings"]
      - group: argoproj.io
        resources: ["rollouts"]
  - level: None
"""

# demo: where alice and bob may edit; kubeledger: the operator's own namespace.
NAMESPACES_MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Namespace
metadata:
  name: kubeledger
"""


def _webhook_manifest(port: int, ca_bundle: str) -> str:
    """The operator's validating webhook, as the Helm chart registers it in a cluster."""
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "kubeledger"},
        "webhooks": [{
            "name": "identity.kubeledger.io",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate", "caBundle": ca_bundle},
            "rules": [
                {"apiGroups": ["apps"], "apiVersions": ["v1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"],
                 "resources": ["deployments", "deployments/scale"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["v1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"],
                 "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"]},
                {"apiGroups": ["argoproj.io"], "apiVersions": ["v1alpha1"],
                 "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["rollouts"]},
            ],
            # Never block a write: identity is best effort, the record is not.
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": 2,
            "admissionReviewVersions": ["v1"],
        }],
    })


def _binding_manifest(user: str) -> str:
    return f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {user}-edit
  namespace: demo
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: edit
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {user}
"""


@dataclass(frozen=True)
class Endpoints:
    """Where the running stack answers; what tests and the operator connect to."""

    directory: Path
    ports: Mapping[str, int]
    elasticsearch_password: str
    redaction_salt: str

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def elasticsearch_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['elasticsearch']}"

    elasticsearch_username = "elastic"

    @property
    def pki(self) -> Pki:
        return Pki(self.directory / "pki")

    @property
    def kubectl(self) -> Path:
        return cache.kubernetes_bin() / "kubectl"

    def operator_env(self) -> dict[str, str]:
        """Environment for an operator run against this stack (also written to ``env``)."""
        pki = self.pki
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "ELASTICSEARCH_URL": self.elasticsearch_url,
            "ELASTICSEARCH_USERNAME": self.elasticsearch_username,
            "ELASTICSEARCH_PASSWORD": self.elasticsearch_password,
            "KUBELEDGER_CLUSTER_NAME": "local",
            "KUBELEDGER_REDACTION_SALT": self.redaction_salt,
            "KUBELEDGER_NAMESPACE": "kubeledger",
            "KUBELEDGER_WEBHOOK_HOST": "127.0.0.1",
            "KUBELEDGER_WEBHOOK_PORT": str(self.ports["webhook"]),
            "KUBELEDGER_WEBHOOK_CERT_DIR": str(pki.directory / "webhook"),
            "KUBELEDGER_AUDIT_HOST": "127.0.0.1",
            "KUBELEDGER_AUDIT_PORT": str(self.ports["audit"]),
            "KUBELEDGER_AUDIT_CLIENT_CA": str(pki.ca_cert),
        }


class Stack:
    """One local stack living in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.processes = ProcessTable(self.directory / "run", self.directory / "logs")

    def up(self) -> Endpoints:
        """Installs what is missing and starts what is not running; returns the endpoints."""
        install.ensure_all()
        endpoints = self._endpoints()
        pki = ensure_pki(endpoints.pki.directory)
        _link_webhook_certificates(pki)
        # Elasticsearch takes longest to start: launch it first, wait for it last.
        es = elasticsearch.Server(self.directory / "elasticsearch", self.processes,
                                  endpoints.ports, endpoints.elasticsearch_password)
        es.start()
        self._start_etcd(endpoints)
        self._start_apiserver(endpoints)
        self._write_kubeconfigs(endpoints)
        self._bootstrap(endpoints)
        self._start_controller_manager(endpoints)
        es.wait_ready()
        self._write_env(endpoints)
        return endpoints

    def start_operator(self, endpoints: Endpoints) -> int:
        """Runs ``kubeledger run`` against this stack (unless it runs); returns its PID."""
        running = self.processes.running("operator")
        if running:
            return running
        say("starting the operator (kubeledger run)")
        executable = Path(sys.executable).with_name("kubeledger")
        return self.processes.start("operator", [str(executable), "run"],
                                    env=endpoints.operator_env())

    def down(self) -> list[str]:
        """Stops every process of this stack, last started first; returns what it stopped."""
        return [name for name in reversed(PROCESSES) if self.processes.stop(name)]

    def status(self) -> dict[str, int | None]:
        return {name: self.processes.running(name) for name in PROCESSES}

    # -- state -----------------------------------------------------------------------------

    def _endpoints(self) -> Endpoints:
        state_file = self.directory / "state.json"
        if state_file.is_file():
            state = json.loads(state_file.read_text())
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            state = {
                "ports": dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True)),
                "elasticsearch_password": secrets.token_urlsafe(18),
                "redaction_salt": secrets.token_urlsafe(24),
            }
            state_file.write_text(json.dumps(state, indent=2) + "\n")
            state_file.chmod(0o600)
        return Endpoints(self.directory, state["ports"], state["elasticsearch_password"],
                         state["redaction_salt"])

    # -- Kubernetes ------------------------------------------------------------------------

    def _start_etcd(self, endpoints: Endpoints) -> None:
        if self.processes.running("etcd"):
            return
        client = f"http://127.0.0.1:{endpoints.ports['etcd']}"
        peer = f"http://127.0.0.1:{endpoints.ports['etcd_peer']}"
        say(f"starting etcd on {client}")
        self.processes.start("etcd", [
            "etcd", "--name", "kubeledger", "--data-dir", str(self.directory / "etcd"),
            "--unsafe-no-fsync",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"kubeledger={peer}",
        ])
        wait_until(lambda: http_ok(f"{client}/health"), "etcd", self.processes, "etcd")

    def _start_apiserver(self, endpoints: Endpoints) -> None:
        if self.processes.running("kube-apiserver"):
            return
        pki = endpoints.pki
        config = self.directory / "apiserver"
        config.mkdir(exist_ok=True)
        (config / "audit-policy.yaml").write_text(AUDIT_POLICY)
        (config / "audit-webhook.kubeconfig").write_text(_kubeconfig_text(
            server=f"https://127.0.0.1:{endpoints.ports['audit']}/audit",
            ca=pki.ca_cert,
            users={"apiserver": _cert_user(pki, "audit-client")},
        ))
        say(f"starting kube-apiserver on {endpoints.apiserver_url}")
        self.processes.start("kube-apiserver", [
            str(cache.kubernetes_bin() / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{endpoints.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={endpoints.ports['apiserver']}", "--insecure-port=0",
            f"--tls-cert-file={pki.path('apiserver.crt')}",
            f"--tls-private-key-file={pki.path('apiserver.key')}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={pki.tokens_file}",
            f"--service-account-key-file={pki.path('sa.pub')}",
            f"--service-account-signing-key-file={pki.path('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            f"--audit-policy-file={config / 'audit-policy.yaml'}",
            f"--audit-webhook-config-file={config / 'audit-webhook.kubeconfig'}",
            "--audit-webhook-mode=batch",
            # The default batch wait is 30 s; a second keeps identities prompt.
            "--audit-webhook-batch-max-wait=1s",
            f"--cert-dir={config / 'certs'}",
        ])
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.path("admin.crt")), str(pki.path("admin.key")))
        wait_until(lambda: http_ok(f"{endpoints.apiserver_url}/readyz", context),
                    "kube-apiserver", self.processes, "kube-apiserver")

    def _start_controller_manager(self, endpoints: Endpoints) -> None:
        if self.processes.running("kube-controller-manager"):
            return
        pki = endpoints.pki
        say("starting kube-controller-manager")
        self.processes.start("kube-controller-manager", [
            str(cache.kubernetes_bin() / "kube-controller-manager"),
            f"--kubeconfig={self.directory / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={endpoints.ports['controller_manager']}", "--port=0",
            f"--service-account-private-key-file={pki.path('sa.key')}",
            f"--root-ca-file={pki.ca_cert}",
            "--leader-elect=false",
            # Each controller acts as its own service account, as on real clusters (and
            # kube-controller-manager's own identity may do little else).
            "--use-service-account-credentials=true",
            f"--cert-dir={self.directory / 'controller-manager'}",
        ])

    def _write_kubeconfigs(self, endpoints: Endpoints) -> None:
        pki = endpoints.pki
        users = {"admin": _cert_user(pki, "admin")}
        users.update({user: {"token": pki.token(user)} for user in TOKEN_USERS})
        endpoints.kubeconfig.write_text(_kubeconfig_text(
            server=endpoints.apiserver_url, ca=pki.ca_cert, users=users, current="admin",
        ))
        (self.directory / "controller-manager.kubeconfig").write_text(_kubeconfig_text(
            server=endpoints.apiserver_url, ca=pki.ca_cert,
            users={"controller-manager": _cert_user(pki, "controller-manager")},
        ))
        for path in (endpoints.kubeconfig, self.directory / "controller-manager.kubeconfig"):
            path.chmod(0o600)

    def _bootstrap(self, endpoints: Endpoints) -> None:
        """Creates the namespaces and binds alice and bob to ``edit`` in demo (idempotent)."""
        ca_bundle = base64.b64encode(endpoints.pki.ca_cert.read_bytes()).decode()
        manifests = [NAMESPACES_MANIFEST, *(_binding_manifest(u) for u in TOKEN_USERS),
                     _webhook_manifest(endpoints.ports["webhook"], ca_bundle)]
        run([str(endpoints.kubectl), "--kubeconfig", str(endpoints.kubeconfig),
             "apply", "-f", "-"], stdin="---\n".join(manifests))

    def _write_env(self, endpoints: Endpoints) -> None:
        lines = [f"{key}={value}" for key, value in endpoints.operator_env().items()]
        env_file = self.directory / "env"
        env_file.write_text("\n".join(lines) + "\n")
        env_file.chmod(0o600)


def _link_webhook_certificates(pki: Pki) -> None:
    """Lays out the webhook certificate the way the operator reads it (tls.crt, tls.key, ca.crt)."""
    target = pki.directory / "webhook"
    target.mkdir(exist_ok=True)
    for name, source in (("tls.crt", "webhook.crt"), ("tls.key", "webhook.key"),
                         ("ca.crt", "ca.crt")):
        link = target / name
        if not link.exists():
            link.symlink_to(pki.path(source))


def _cert_user(pki: Pki, name: str) -> dict[str, str]:
    return {
        "client-certificate": str(pki.path(f"{name}.crt")),
        "client-key": str(pki.path(f"{name}.key")),
    }


def _kubeconfig_text(
    *, server: str, ca: Path, users: Mapping[str, Mapping[str, str]], current: str | None = None,
) -> str:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": name, "user": dict(user)} for name, user in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}
                     for name in users],
        "current-context": current or next(iter(users)),
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is valid YAML for every client


def _free_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out as free; held together so they are distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
