"""Kubeconfig files for the stack's clients, written as JSON (valid YAML for every client)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stack.pki import Pki


def cert_user(pki: Pki, name: str) -> dict[str, str]:
    """A kubeconfig user that authenticates with the certificate ``pki/<name>.crt``."""
    return {
        "client-certificate": str(pki.path(f"{name}.crt")),
        "client-key": str(pki.path(f"{name}.key")),
    }


def kubeconfig_text(
    *, server: str, ca: Path, users: Mapping[str, Mapping[str, str]],
    current: str | None = None, tls_server_name: str | None = None,
) -> str:
    cluster: dict[str, str] = {"server": server, "certificate-authority": str(ca)}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": name, "user": dict(user)} for name, user in users.items()],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}
                     for name in users],
        "current-context": current or next(iter(users)),
    }
    return json.dumps(config, indent=2) + "\n"


def write(path: Path, text: str) -> bool:
    """Writes a kubeconfig (mode 0600) if its text changed; True when it did."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return True
