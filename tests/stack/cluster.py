"""The local stack: a real single-node Kubernetes cluster and Elasticsearch, run as child processes.

``Stack(directory).up()`` starts whatever is not running yet (idempotent), and
``down()`` stops everything it started and removes what it set up on the machine. The
cluster: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on the host;
one node (containerd, runc, the CNI bridge, the kubelet, kube-proxy, an empty local
registry) in namespaces of its own (see ``node`` and ``network``). A stack directory
holds all of its state:

    state.json      ports, network slot, Kubernetes version, secrets (fixed at first start),
                    the audit target
    checkpoint.key  the key that signs the operator's checkpoints (made at first start)
    pki/            CA, serving and client certificates, token file
    kubeconfig      contexts admin (client certificate), alice and bob (tokens)
    env             KEY=value lines for shells and for the operator
    run/*.pid       one PID file per process
    logs/*.log      one log per process; logs/timings.json: seconds to each step of the last up
    etcd/, elasticsearch/, node/   data, kept across restarts

Ports are free ephemeral ports and the network slot a free one, chosen at first start, so
a test run and ``make dev-up`` never collide. The apiserver listens on the host's address
on the node network (``Endpoints.plan.host_address``), which pods reach too; the
webhook and audit receivers of a host-run operator stay on 127.0.0.1.

Audit events go (batch mode, over mutual TLS with the ``audit-client`` certificate) to the
stack's *audit target*. By default that is the host-run operator,
``https://127.0.0.1:<ports.audit>/audit``. To send them to an operator running in the
cluster, pass its Service instead, e.g.::

    plan = stack.plan()                      # known before the first up
    stack.up(audit_target=AuditTarget(
        url=f"https://{plan.service_ip(50)}:8443/audit",   # a Service pinned to that ClusterIP
        tls_server_name="kubeledger-audit.kubeledger.svc",  # a DNS name its certificate has
    ))

The target is kept in state.json (later ``up()`` calls without one keep it); a changed
target restarts the apiserver. ``up(audit_target=stack.host_audit_target())`` points it
back at the host. ``AuditTarget.ca`` names the CA that signed the receiver's
certificate (default: the stack's CA).

The stack creates namespace ``demo`` where the token users alice and bob hold the
built-in ``edit`` role, and namespace ``kubeledger``; its node has the pause image and the
test images (``images.TEST_IMAGES``) imported. Other images: ``Stack.import_image``.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stack import (
    cache,
    elasticsearch,
    images,
    install,
    kubeconfigs,
    kubernetes,
    network,
    node,
    pki,
)
from stack.network import AddressPlan
from stack.processes import ProcessTable, terminate
from stack.readiness import http_ok, wait_until
from stack.shell import run, say

CONTROLLER_API_QPS = 200
CHECKPOINT_KEY_FILE = "checkpoint.key"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# The apiserver's graceful shutdown waits on the audit webhook's retries (10 s backoff
# and more) when nothing receives: state lives in etcd, so it gets a short grace only.
APISERVER_STOP_GRACE_SECONDS = 3.0
# The apiserver sends audit events in batches, at the latest this long after the first
# (its default is 30 s): a second keeps identities prompt. A live record waits for them.
AUDIT_BATCH_MAX_WAIT_SECONDS = 1
PORT_NAMES = (
    "etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler",
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
        resources: ["deployments", "deployments/scale", "statefulsets", "statefulsets/scale",
                    "daemonsets"]
      - group: rbac.authorization.k8s.io
        resources: ["roles", "clusterroles", "rolebindings", "clusterrolebindings"]
      - group: argoproj.io
        resources: ["rollouts", "rollouts/scale"]
      - group: admissionregistration.k8s.io
        resources: ["validatingadmissionpolicies", "validatingadmissionpolicybindings"]
      - group: apiextensions.k8s.io
        resources: ["customresourcedefinitions"]
  # Records are never changed and only retention deletes them: a deletion by anyone else
  # (break-glass) is recorded, with its initiator from here.
  - level: RequestResponse
    verbs: ["delete", "deletecollection"]
    resources:
      - group: kubeledger.io
        resources: ["auditrecords"]
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

# The apiserver's calls to the kubelet (logs, exec, port-forward) are authorized by RBAC.
KUBELET_API_BINDING = f"""\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-apiserver-kubelet-client
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: {pki.APISERVER_KUBELET_CLIENT}
"""


# The host-run operator's webhook; the chart's release registers its own ("kubeledger").
HOST_WEBHOOK = "kubeledger-host-operator"


def _webhook_manifest(port: int, ca_bundle: str) -> str:
    """The host-run operator's validating webhook, as the Helm chart registers the pod's."""
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": HOST_WEBHOOK},
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
class AuditTarget:
    """Where the apiserver's audit webhook sends events (see the module docstring)."""

    url: str
    tls_server_name: str | None = None
    ca: Path | None = None

    def to_json(self) -> dict[str, str]:
        fields = {"url": self.url, "tls_server_name": self.tls_server_name,
                  "ca": str(self.ca) if self.ca else None}
        return {key: value for key, value in fields.items() if value}

    @classmethod
    def from_json(cls, data: Mapping[str, str]) -> AuditTarget:
        ca = data.get("ca")
        return cls(data["url"], data.get("tls_server_name"), Path(ca) if ca else None)


@dataclass(frozen=True)
class Endpoints:
    """Where the running stack answers; what tests and the operator connect to."""

    directory: Path
    ports: Mapping[str, int]
    elasticsearch_password: str
    redaction_salt: str
    plan: AddressPlan
    audit_target: AuditTarget
    # The operator's user (``elasticsearch.WRITER_USER``): it may create documents only.
    elasticsearch_writer_password: str

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.plan.host_address}:{self.ports['apiserver']}"

    @property
    def elasticsearch_url(self) -> str:
        """Elasticsearch for clients on the host (tests, a host-run operator)."""
        return f"https://127.0.0.1:{self.ports['elasticsearch']}"

    @property
    def elasticsearch_cluster_url(self) -> str:
        """Elasticsearch for pods: the same server, on the host's node-network address."""
        return f"https://{self.plan.host_address}:{self.ports['elasticsearch']}"

    @property
    def elasticsearch_ca(self) -> Path:
        """The CA bundle that verifies Elasticsearch's HTTPS certificate: the stack's CA."""
        return self.pki.ca_cert

    # The superuser: what tests read (and tamper) with; the operator writes as the writer.
    elasticsearch_username = "elastic"
    elasticsearch_writer_username = elasticsearch.WRITER_USER

    @property
    def pki(self) -> pki.Pki:
        return pki.Pki(self.directory / "pki")

    @property
    def checkpoint_key_file(self) -> Path:
        return self.directory / CHECKPOINT_KEY_FILE

    @property
    def kubectl(self) -> Path:
        return kubernetes.kubectl()

    def operator_env(self) -> dict[str, str]:
        """Environment for an operator run against this stack (also written to ``env``)."""
        stack_pki = self.pki
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "ELASTICSEARCH_URL": self.elasticsearch_url,
            "ELASTICSEARCH_USERNAME": self.elasticsearch_writer_username,
            "ELASTICSEARCH_PASSWORD": self.elasticsearch_writer_password,
            "ELASTICSEARCH_CA_CERTS": str(self.elasticsearch_ca),
            # Signed checkpoints, often enough that a test need not wait for one.
            "ELASTICSEARCH_CHECKPOINT_KEY_FILE": str(self.checkpoint_key_file),
            "ELASTICSEARCH_CHECKPOINT_INTERVAL_SECONDS": "2",
            "KUBELEDGER_CLUSTER_NAME": "local",
            "KUBELEDGER_REDACTION_SALT": self.redaction_salt,
            "KUBELEDGER_NAMESPACE": "kubeledger",
            "KUBELEDGER_WEBHOOK_HOST": "127.0.0.1",
            "KUBELEDGER_WEBHOOK_PORT": str(self.ports["webhook"]),
            "KUBELEDGER_WEBHOOK_CERT_DIR": str(stack_pki.directory / "webhook"),
            "KUBELEDGER_AUDIT_HOST": "127.0.0.1",
            "KUBELEDGER_AUDIT_PORT": str(self.ports["audit"]),
            "KUBELEDGER_AUDIT_CLIENT_CA": str(stack_pki.ca_cert),
            # The same Lease as the chart's release (named like it, in its namespace), so
            # a host-run operator and the pod never write at once; short, because tests
            # kill and restart the operator, and a killed holder's lease must run out.
            "KUBELEDGER_LEASE_NAME": "kubeledger",
            "KUBELEDGER_LEASE_DURATION_SECONDS": "4",
            "KUBELEDGER_LEASE_RENEW_DEADLINE_SECONDS": "3",
            "KUBELEDGER_LEASE_RETRY_PERIOD_SECONDS": "0.5",
        }


class Stack:
    """One local stack living in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.processes = ProcessTable(self.directory / "run", self.directory / "logs")

    def plan(self) -> AddressPlan:
        """The stack's address plan (its slot is claimed on the first call)."""
        return AddressPlan(self._state()["slot"])

    def host_audit_target(self) -> AuditTarget:
        """The default audit target: the receiver of an operator run on the host."""
        return AuditTarget(f"https://127.0.0.1:{self._state()['ports']['audit']}/audit")

    def up(self, audit_target: AuditTarget | None = None) -> Endpoints:
        """Installs what is missing and starts what is not running; returns the endpoints."""
        install.ensure_all()
        started = time.monotonic()
        timings: dict[str, float] = {}

        def mark(step: str) -> None:
            timings[step] = round(time.monotonic() - started, 1)

        endpoints = self._endpoints(audit_target)
        plan = endpoints.plan
        network.check_slot(plan.slot, self.directory)
        stack_pki = pki.ensure_pki(endpoints.pki.directory, pki.certificates(
            host_address=plan.host_address, kubernetes_service_ip=plan.service_ip(1),
            node_name=node.NODE_NAME, node_address=plan.node_address))
        _link_webhook_certificates(stack_pki)
        worker = self.node_for(endpoints)
        network.Network(plan).up(worker.start_namespaces())
        mark("network")
        # Elasticsearch takes longest to start: launch it first, wait for it last.
        es = self._elasticsearch(endpoints)
        es.start()
        self._start_etcd(endpoints)
        mark("etcd")
        self._start_apiserver(endpoints)
        mark("kube-apiserver")
        self._write_kubeconfigs(endpoints)
        self._bootstrap(endpoints)
        self._start_controller_manager(endpoints)
        mark("kube-controller-manager")
        self._start_scheduler(endpoints)
        mark("kube-scheduler")
        self._start_node(worker, endpoints, mark)
        es.wait_ready()
        mark("elasticsearch")
        self._write_env(endpoints)
        self._record(timings)
        return endpoints

    def restart_apiserver(self, *, while_down: Callable[[], object] | None = None) -> Endpoints:
        """Stops the apiserver and starts it again, as a control-plane upgrade does;
        ``while_down`` runs in between. Its controllers restart with it (see
        ``_start_apiserver``: their informers can otherwise take minutes to resume)."""
        for name in ("kube-scheduler", "kube-controller-manager"):
            self.processes.stop(name)
        self._stop_apiserver()
        if while_down is not None:
            while_down()
        return self.up()

    def compact_etcd(self) -> int:
        """Compacts etcd's history up to its current revision, which it returns: a watch
        resumed from any earlier resourceVersion is then answered 410 Gone."""
        client = f"http://127.0.0.1:{self._endpoints(None).ports['etcd']}/v3/kv"
        # Any read tells the current revision (in its header); keys are base64.
        revision = int(_etcd_call(f"{client}/range", {"key": "AA=="})["header"]["revision"])
        _etcd_call(f"{client}/compaction", {"revision": revision, "physical": True})
        return revision

    def node_for(self, endpoints: Endpoints) -> node.Node:
        return node.Node(self.directory / "node", self.processes, endpoints.plan, endpoints.pki,
                         endpoints.apiserver_url)

    def import_image(self, archive: Path) -> None:
        """Imports an image archive into the node's containerd (the stack must be up)."""
        self.node_for(self._endpoints(None)).import_image(archive)

    def tag_image(self, image: str, tag: str) -> None:
        """Gives an imported image another name (a new tag of the same image)."""
        self.node_for(self._endpoints(None)).tag_image(image, tag)

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
        """Stops every process of this stack, last started first, and removes its node's
        network, mounts and cgroups; returns what it stopped."""
        stopped = [name for name in ("operator",) if self.processes.stop(name)]
        if "slot" in self._saved_state():
            endpoints = self._endpoints(None)
            stopped += self.node_for(endpoints).stop()
            network.Network(endpoints.plan).down()
        for name in (*reversed(CONTROL_PLANE), "elasticsearch"):
            stop = self._stop_apiserver if name == "kube-apiserver" else self.processes.stop
            if stop(name):
                stopped.append(name)
        return stopped

    def purge(self) -> list[str]:
        """Stops everything, then removes the stack's data too: its directory and the
        Elasticsearch data kept outside it; returns what it stopped."""
        stopped = self.down()
        elasticsearch.remove_directory_of(self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)
        return stopped

    def status(self) -> dict[str, int | None]:
        names = ("elasticsearch", *CONTROL_PLANE, *node.PROCESSES, "operator")
        return {name: self.processes.running(name) for name in names}

    # -- state -----------------------------------------------------------------------------

    def _saved_state(self) -> dict[str, Any]:
        state_file = self.directory / "state.json"
        return dict(json.loads(state_file.read_text())) if state_file.is_file() else {}

    def _state(self) -> dict[str, Any]:
        """state.json, made at the first start (ports, slot, secrets) and kept after."""
        state = self._saved_state()
        if state and "slot" not in state:
            raise RuntimeError(f"{self.directory} holds a stack of the Kubernetes 1.20 era, "
                               "whose etcd data etcd 3.6 cannot read: stop it (`down`) and "
                               "remove the directory")
        version = cache.kubernetes_version()
        if state.get("kubernetes_version", version) != version:
            raise RuntimeError(f"{self.directory} runs Kubernetes {state['kubernetes_version']}"
                               f", not {version}: remove the directory to change versions")
        if not state:
            self.directory.mkdir(parents=True, exist_ok=True)
            state = {
                "ports": dict(zip(PORT_NAMES, _free_ports(len(PORT_NAMES)), strict=True)),
                "elasticsearch_password": secrets.token_urlsafe(18),
                "redaction_salt": secrets.token_urlsafe(24),
                "kubernetes_version": version,
                "slot": network.claim_slot(self.directory),
            }
            self._save_state(state)
        if "elasticsearch_writer_password" not in state:  # a stack made before it existed
            state["elasticsearch_writer_password"] = secrets.token_urlsafe(18)
            self._save_state(state)
        key = self.directory / CHECKPOINT_KEY_FILE
        if not key.exists():
            key.touch(mode=0o600)
            key.write_text(secrets.token_hex(32) + "\n")
        return state

    def _save_state(self, state: Mapping[str, Any]) -> None:
        state_file = self.directory / "state.json"
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        state_file.chmod(0o600)

    def _endpoints(self, audit_target: AuditTarget | None) -> Endpoints:
        state = self._state()
        if audit_target is not None and audit_target.to_json() != state.get("audit_target"):
            state["audit_target"] = audit_target.to_json()
            self._save_state(state)
        target = (AuditTarget.from_json(state["audit_target"]) if "audit_target" in state
                  else self.host_audit_target())
        return Endpoints(self.directory, state["ports"], state["elasticsearch_password"],
                         state["redaction_salt"], AddressPlan(state["slot"]), target,
                         state["elasticsearch_writer_password"])

    def _record(self, timings: Mapping[str, float]) -> None:
        say("took (s since start): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        self.processes.log_dir.mkdir(parents=True, exist_ok=True)
        (self.processes.log_dir / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")

    # -- Kubernetes ------------------------------------------------------------------------

    def _elasticsearch(self, endpoints: Endpoints) -> elasticsearch.Server:
        return elasticsearch.Server(
            elasticsearch.directory_for(self.directory), self.processes, endpoints.ports,
            endpoints.elasticsearch_password,
            writer_password=endpoints.elasticsearch_writer_password, tls=endpoints.pki,
            also_on=endpoints.plan.host_address)

    def _start_etcd(self, endpoints: Endpoints) -> None:
        if self.processes.running("etcd"):
            return
        client = f"http://127.0.0.1:{endpoints.ports['etcd']}"
        peer = f"http://127.0.0.1:{endpoints.ports['etcd_peer']}"
        say(f"starting etcd on {client}")
        self.processes.start("etcd", [
            str(kubernetes.etcd_build().binary("etcd")), "--name", "kubeledger",
            "--data-dir", str(self.directory / "etcd"),
            "--unsafe-no-fsync",
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"kubeledger={peer}",
        ])
        wait_until(lambda: http_ok(f"{client}/health"), "etcd", self.processes, "etcd")

    def _write_audit_config(self, endpoints: Endpoints, config: Path) -> bool:
        """Writes the audit policy and webhook kubeconfig; True when the target changed."""
        stack_pki = endpoints.pki
        target = endpoints.audit_target
        config.mkdir(exist_ok=True)
        (config / "audit-policy.yaml").write_text(AUDIT_POLICY)
        return kubeconfigs.write(config / "audit-webhook.kubeconfig", kubeconfigs.kubeconfig_text(
            server=target.url, ca=target.ca or stack_pki.ca_cert,
            tls_server_name=target.tls_server_name,
            users={"apiserver": kubeconfigs.cert_user(stack_pki, "audit-client")},
        ))

    def _start_apiserver(self, endpoints: Endpoints) -> None:
        config = self.directory / "apiserver"
        changed = self._write_audit_config(endpoints, config)
        if self.processes.running("kube-apiserver"):
            if not changed:
                return
            say(f"audit target now {endpoints.audit_target.url}: restarting the control plane")
            # Restarted with it: after an apiserver restart the controllers' informers can
            # take a minute or more to resume, and a Deployment would get no new ReplicaSet.
            for name in ("kube-scheduler", "kube-controller-manager"):
                self.processes.stop(name)
            self._stop_apiserver()
        stack_pki = endpoints.pki
        plan = endpoints.plan
        say(f"starting kube-apiserver {cache.kubernetes_version()} on "
            f"{endpoints.apiserver_url}")
        self.processes.start("kube-apiserver", [
            str(kubernetes.kubernetes_bin() / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{endpoints.ports['etcd']}",
            # Pods reach it there; the endpoint reconciler refuses a loopback address.
            f"--bind-address={plan.host_address}", f"--advertise-address={plan.host_address}",
            f"--secure-port={endpoints.ports['apiserver']}",
            f"--tls-cert-file={stack_pki.path('apiserver.crt')}",
            f"--tls-private-key-file={stack_pki.path('apiserver.key')}",
            f"--client-ca-file={stack_pki.ca_cert}",
            f"--token-auth-file={stack_pki.tokens_file}",
            f"--service-account-key-file={stack_pki.path('sa.pub')}",
            f"--service-account-signing-key-file={stack_pki.path('sa.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={plan.service_cidr}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={stack_pki.path(pki.APISERVER_KUBELET_CLIENT + '.crt')}",
            f"--kubelet-client-key={stack_pki.path(pki.APISERVER_KUBELET_CLIENT + '.key')}",
            f"--kubelet-certificate-authority={stack_pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--audit-policy-file={config / 'audit-policy.yaml'}",
            f"--audit-webhook-config-file={config / 'audit-webhook.kubeconfig'}",
            "--audit-webhook-mode=batch",
            f"--audit-webhook-batch-max-wait={AUDIT_BATCH_MAX_WAIT_SECONDS}s",
            f"--cert-dir={config / 'certs'}",
        ])
        context = ssl.create_default_context(cafile=str(stack_pki.ca_cert))
        context.load_cert_chain(str(stack_pki.path("admin.crt")), str(stack_pki.path("admin.key")))
        wait_until(lambda: http_ok(f"{endpoints.apiserver_url}/readyz", context),
                   "kube-apiserver", self.processes, "kube-apiserver")

    def _stop_apiserver(self, name: str = "kube-apiserver") -> bool:
        pid = self.processes.running(name)
        if pid is None:
            return False
        terminate(pid, grace=APISERVER_STOP_GRACE_SECONDS)
        self.processes.pid_file(name).unlink(missing_ok=True)
        return True

    def _start_controller_manager(self, endpoints: Endpoints) -> None:
        if self.processes.running("kube-controller-manager"):
            return
        stack_pki = endpoints.pki
        plan = endpoints.plan
        kubeconfig = self.directory / "controller-manager.kubeconfig"
        say("starting kube-controller-manager")
        self.processes.start("kube-controller-manager", [
            str(kubernetes.kubernetes_bin() / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            *self._health_port_flags(endpoints, "controller_manager"),
            f"--service-account-private-key-file={stack_pki.path('sa.key')}",
            f"--root-ca-file={stack_pki.ca_cert}",
            f"--cluster-signing-cert-file={stack_pki.ca_cert}",
            f"--cluster-signing-key-file={stack_pki.path('ca.key')}",
            "--leader-elect=false",
            # Its client's default of 20 requests/s (burst 30) is shared by every
            # controller: a rollout takes several writes, so a few thousand Deployments
            # created at once (the bench) were rolled out at 2 a second, CPU idle.
            f"--kube-api-qps={CONTROLLER_API_QPS}", f"--kube-api-burst={2 * CONTROLLER_API_QPS}",
            # Each controller acts as its own service account, as on real clusters (and
            # kube-controller-manager's own identity may do little else).
            "--use-service-account-credentials=true",
            # The node's podCIDR comes from here; the CNI config expects the first /24.
            "--allocate-node-cidrs=true", f"--cluster-cidr={plan.cluster_cidr}",
            "--node-cidr-mask-size=24", f"--service-cluster-ip-range={plan.service_cidr}",
            f"--cert-dir={self.directory / 'controller-manager'}",
        ])
        self._wait_healthz(endpoints, "controller_manager", "kube-controller-manager")

    def _start_scheduler(self, endpoints: Endpoints) -> None:
        if self.processes.running("kube-scheduler"):
            return
        kubeconfig = self.directory / "scheduler.kubeconfig"
        say("starting kube-scheduler")
        self.processes.start("kube-scheduler", [
            str(kubernetes.kubernetes_bin() / "kube-scheduler"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            *self._health_port_flags(endpoints, "scheduler"),
            "--leader-elect=false",
        ])
        self._wait_healthz(endpoints, "scheduler", "kube-scheduler")

    def _health_port_flags(self, endpoints: Endpoints, port: str) -> list[str]:
        stack_pki = endpoints.pki
        return ["--bind-address=127.0.0.1", f"--secure-port={endpoints.ports[port]}",
                f"--tls-cert-file={stack_pki.path('control-plane-serving.crt')}",
                f"--tls-private-key-file={stack_pki.path('control-plane-serving.key')}"]

    def _wait_healthz(self, endpoints: Endpoints, port: str, name: str) -> None:
        context = ssl.create_default_context(cafile=str(endpoints.pki.ca_cert))
        url = f"https://127.0.0.1:{endpoints.ports[port]}/healthz"
        wait_until(lambda: http_ok(url, context), name, self.processes, name)

    def _start_node(
        self, worker: node.Node, endpoints: Endpoints, mark: Callable[[str], None],
    ) -> None:
        worker.start_registry()
        worker.start_containerd()
        mark("containerd")
        if not self.processes.running("kubelet"):
            # Sandboxes need the pause image before the first pod, and the workloads the
            # test images; nothing is ever pulled.
            for archive in (images.ensure_pause_image(), *images.ensure_test_images().values()):
                worker.import_image(archive)
            mark("images imported")
        worker.start_kubelet()
        mark("kubelet healthy")
        worker.start_kube_proxy()
        mark("kube-proxy healthy")
        worker.wait_ready(endpoints.kubeconfig)
        mark("node Ready")

    def _write_kubeconfigs(self, endpoints: Endpoints) -> None:
        stack_pki = endpoints.pki
        users = {"admin": kubeconfigs.cert_user(stack_pki, "admin")}
        users.update({user: {"token": stack_pki.token(user)} for user in pki.TOKEN_USERS})
        kubeconfigs.write(endpoints.kubeconfig, kubeconfigs.kubeconfig_text(
            server=endpoints.apiserver_url, ca=stack_pki.ca_cert, users=users, current="admin",
        ))
        for name in ("controller-manager", "scheduler"):
            kubeconfigs.write(self.directory / f"{name}.kubeconfig", kubeconfigs.kubeconfig_text(
                server=endpoints.apiserver_url, ca=stack_pki.ca_cert,
                users={name: kubeconfigs.cert_user(stack_pki, name)},
            ))

    def _bootstrap(self, endpoints: Endpoints) -> None:
        """Creates the namespaces and the RBAC bindings the stack relies on (idempotent).

        The host-run operator's webhook is registered only while the audit backend points
        at the host too: with the operator in the cluster, the chart registers the pod's.
        """
        kubectl = [str(endpoints.kubectl), "--kubeconfig", str(endpoints.kubeconfig)]
        manifests = [NAMESPACES_MANIFEST, KUBELET_API_BINDING,
                     *(_binding_manifest(u) for u in pki.TOKEN_USERS)]
        if endpoints.audit_target == self.host_audit_target():
            ca_bundle = base64.b64encode(endpoints.pki.ca_cert.read_bytes()).decode()
            manifests.append(_webhook_manifest(endpoints.ports["webhook"], ca_bundle))
        else:
            run([*kubectl, "delete", "validatingwebhookconfiguration", HOST_WEBHOOK,
                 "--ignore-not-found"])
        run([*kubectl, "apply", "-f", "-"], stdin="---\n".join(manifests))

    def _write_env(self, endpoints: Endpoints) -> None:
        lines = [f"{key}={value}" for key, value in endpoints.operator_env().items()]
        env_file = self.directory / "env"
        env_file.write_text("\n".join(lines) + "\n")
        env_file.chmod(0o600)


def _link_webhook_certificates(stack_pki: pki.Pki) -> None:
    """Lays out the webhook certificate the way the operator reads it (tls.crt, tls.key, ca.crt)."""
    target = stack_pki.directory / "webhook"
    target.mkdir(exist_ok=True)
    for name, source in (("tls.crt", "webhook.crt"), ("tls.key", "webhook.key"),
                         ("ca.crt", "ca.crt")):
        link = target / name
        if not link.exists():
            link.symlink_to(stack_pki.path(source))


def _etcd_call(url: str, body: Mapping[str, Any]) -> Any:
    """One call of etcd's JSON gateway (its gRPC API over HTTP), on the stack's loopback."""
    request = urllib.request.Request(  # noqa: S310 (our own http URL)
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (our own http URL)
        return json.loads(response.read())


def _free_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out as free; held together so they are distinct."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
