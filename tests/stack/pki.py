"""Certificates and tokens for the local stack, made with plain ``openssl``.

One CA signs every certificate: the apiserver's serving certificate (127.0.0.1, the
host's address on the node network, and the names and first address of the in-cluster
``kubernetes`` Service), the kubelet's serving certificate (the node's address), the
operator's webhook serving certificate, Elasticsearch's HTTPS certificate (127.0.0.1 and
the host's address on the node network, where pods reach it), a serving certificate for
the controller-manager's and scheduler's health ports, and client certificates for the
admin, each control-plane component, the kubelet (``system:node:<name>`` in
``system:nodes``, as the Node authorizer requires), kube-proxy, the apiserver's own
calls to kubelets, and the apiserver's audit webhook. A separate RSA key pair signs
service-account tokens, and a static token file gives named users (alice, bob) whom
tests act as.

Each certificate is remade when its subject or names change (``<name>.spec`` records
them), so a stack directory from an older layout gains what it lacks on its next start.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from stack.shell import run

LOOPBACK_SANS = ("IP:127.0.0.1", "DNS:localhost")
KUBERNETES_SERVICE_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                            "kubernetes.default.svc.cluster.local")
# The apiserver's identity towards kubelets (logs, exec, port-forward); bound to the
# built-in system:kubelet-api-admin role by the stack's bootstrap.
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
ELASTICSEARCH_CERTIFICATE = "elasticsearch"

# Users that authenticate with a token; groups decide what RBAC grants them.
TOKEN_USERS: dict[str, tuple[str, ...]] = {
    "alice": ("developers",),
    "bob": ("developers",),
}


@dataclass(frozen=True)
class Pki:
    """Paths of everything the stack's processes and clients need."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def ca_cert(self) -> Path:
        return self.path("ca.crt")

    @property
    def tokens_file(self) -> Path:
        return self.path("tokens.csv")

    def token(self, user: str) -> str:
        for line in self.tokens_file.read_text().splitlines():
            token, name, *_ = line.split(",")
            if name == user:
                return token
        raise KeyError(f"no token for user {user!r}")


@dataclass(frozen=True)
class Certificate:
    """One certificate to make: its file name, subject, and names for a serving certificate."""

    name: str
    subject: str
    sans: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.subject}\n{','.join(self.sans)}\n"


def certificates(
    *, host_address: str, kubernetes_service_ip: str, node_name: str, node_address: str,
) -> list[Certificate]:
    """What the stack needs, given its address plan."""
    apiserver_sans = (*LOOPBACK_SANS, f"IP:{host_address}", f"IP:{kubernetes_service_ip}",
                      *(f"DNS:{name}" for name in KUBERNETES_SERVICE_NAMES))
    return [
        Certificate("apiserver", "/CN=kube-apiserver", apiserver_sans),
        Certificate("kubelet-serving", f"/CN={node_name}",
                    (f"IP:{node_address}", f"DNS:{node_name}")),
        Certificate("webhook", "/CN=kubeledger-webhook", LOOPBACK_SANS),
        # Elasticsearch serves HTTPS only: the host's clients and the pods verify it.
        Certificate(ELASTICSEARCH_CERTIFICATE, "/CN=kubeledger-elasticsearch",
                    (*LOOPBACK_SANS, f"IP:{host_address}")),
        # kube-controller-manager's and kube-scheduler's health ports on 127.0.0.1.
        Certificate("control-plane-serving", "/CN=kubeledger-control-plane", LOOPBACK_SANS),
        Certificate("admin", "/O=system:masters/CN=admin"),
        Certificate("controller-manager", "/CN=system:kube-controller-manager"),
        Certificate("scheduler", "/CN=system:kube-scheduler"),
        Certificate("kubelet", f"/O=system:nodes/CN=system:node:{node_name}"),
        Certificate("kube-proxy", "/CN=system:kube-proxy"),
        Certificate(APISERVER_KUBELET_CLIENT, f"/CN={APISERVER_KUBELET_CLIENT}"),
        # The apiserver presents this to the operator's audit receiver, which must not
        # take identities from anyone else.
        Certificate("audit-client", "/CN=kube-apiserver-audit"),
    ]


def ensure_pki(directory: Path, wanted: list[Certificate]) -> Pki:
    """Makes what is missing or outdated; the CA, keys and tokens are made once and kept."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not pki.ca_cert.is_file():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                 "-keyout", pki.path("ca.key"), "-out", pki.ca_cert,
                 "-subj", "/CN=kubeledger-test-ca")
    for certificate in wanted:
        spec = pki.path(f"{certificate.name}.spec")
        if not spec.is_file() or spec.read_text() != certificate.spec:
            _signed(pki, certificate)
            spec.write_text(certificate.spec)
    if not pki.path("sa.key").is_file():
        _openssl("genrsa", "-out", pki.path("sa.key"), "2048")
        _openssl("rsa", "-in", pki.path("sa.key"), "-pubout", "-out", pki.path("sa.pub"))
    if not pki.tokens_file.is_file():
        rows = [
            f'{secrets.token_hex(16)},{user},{user}-uid,"{",".join(groups)}"'
            for user, groups in TOKEN_USERS.items()
        ]
        pki.tokens_file.write_text("\n".join(rows) + "\n")
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return pki


def stray_ca(pki: Pki) -> Path:
    """A CA that signed nothing of the stack's (made once): the wrong CA bundle to hand a
    client, to see it refuse the stack's servers."""
    certificate = pki.path("stray-ca.crt")
    if not certificate.is_file():
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                 "-keyout", pki.path("stray-ca.key"), "-out", certificate,
                 "-subj", "/CN=kubeledger-stray-ca")
    return certificate


def _signed(pki: Pki, certificate: Certificate) -> None:
    name = certificate.name
    key, csr, cert = pki.path(f"{name}.key"), pki.path(f"{name}.csr"), pki.path(f"{name}.crt")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", certificate.subject)
    extensions = pki.path(f"{name}.ext")
    usage = "serverAuth" if certificate.sans else "clientAuth"
    lines = [f"extendedKeyUsage={usage}", "keyUsage=digitalSignature,keyEncipherment"]
    if certificate.sans:
        lines.append(f"subjectAltName={','.join(certificate.sans)}")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", pki.path("ca.key"),
             "-CAcreateserial", "-days", "3650", "-out", cert, "-extfile", extensions)
    csr.unlink()
    extensions.unlink()


def _openssl(*args: str | Path) -> None:
    run(["openssl", *(str(arg) for arg in args)])
