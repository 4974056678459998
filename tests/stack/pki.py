"""Certificates and tokens for the local stack, made with plain ``openssl``.

One CA signs the apiserver's serving certificate, the operator's webhook serving
certificate (both for 127.0.0.1 and localhost) and client certificates for the admin
and the controller-manager. A separate RSA key pair signs service-account tokens, and a
static token file gives named users (alice, bob) whom tests act as.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from stack.shell import run

SERVING_SANS = "IP:127.0.0.1,DNS:localhost"

# Users that authenticate with a static token; groups decide what RBAC grants them.
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


def ensure_pki(directory: Path) -> Pki:
    """Creates the PKI once; later calls reuse it so kubeconfigs stay valid across restarts."""
    pki = Pki(directory)
    if pki.tokens_file.is_file():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", pki.path("ca.key"), "-out", pki.ca_cert, "-subj", "/CN=kubeledger-test-ca")
    _signed(pki, "apiserver", "/CN=kube-apiserver", SERVING_SANS)
    _signed(pki, "webhook", "/CN=kubeledger-webhook", SERVING_SANS)
    _signed(pki, "admin", "/O=system:masters/CN=admin", None)
    _signed(pki, "controller-manager", "/CN=system:kube-controller-manager", None)
    # The apiserver presents this to the operator's audit receiver, which must not
    # take identities from anyone else.
    _signed(pki, "audit-client", "/CN=kube-apiserver-audit", None)
    _openssl("genrsa", "-out", pki.path("sa.key"), "2048")
    _openssl("rsa", "-in", pki.path("sa.key"), "-pubout", "-out", pki.path("sa.pub"))
    rows = [
        f'{secrets.token_hex(16)},{user},{user}-uid,"{",".join(groups)}"'
        for user, groups in TOKEN_USERS.items()
    ]
    pki.tokens_file.write_text("\n".join(rows) + "\n")
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return pki


def _signed(pki: Pki, name: str, subject: str, sans: str | None) -> None:
    key, csr, cert = pki.path(f"{name}.key"), pki.path(f"{name}.csr"), pki.path(f"{name}.crt")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
    extensions = pki.path(f"{name}.ext")
    usage = "serverAuth" if sans else "clientAuth"
    lines = [f"extendedKeyUsage={usage}", "keyUsage=digitalSignature,keyEncipherment"]
    if sans:
        lines.append(f"subjectAltName={sans}")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", csr, "-CA", pki.ca_cert, "-CAkey", pki.path("ca.key"),
             "-CAcreateserial", "-days", "3650", "-out", cert, "-extfile", extensions)
    csr.unlink()
    extensions.unlink()


def _openssl(*args: str | Path) -> None:
    run(["openssl", *(str(arg) for arg in args)])
