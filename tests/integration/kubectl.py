"""Driving the stack the way a user does: the stack's own kubectl, as admin, alice or bob."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stack.cluster import Endpoints

T = TypeVar("T")


class KubectlError(RuntimeError):
    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(argv)} exited {result.returncode}: {result.stderr}")
        self.stderr = result.stderr


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one stack and one kubeconfig context (user)."""

    endpoints: Endpoints
    context: str = "admin"
    kubeconfig: Path | None = None  # another kubeconfig than the stack's (see with_token)

    def as_user(self, context: str) -> Kubectl:
        return Kubectl(self.endpoints, context)

    def with_token(self, token: str, name: str) -> Kubectl:
        """kubectl authenticating with a bearer token only (a service account's, say).

        kubectl prefers client certificates over ``--token``, so the token gets a
        kubeconfig of its own.
        """
        config = json.loads(self.endpoints.kubeconfig.read_text())
        config["users"] = [{"name": name, "user": {"token": token}}]
        config["contexts"] = [{"name": name, "context": {"cluster": "local", "user": name}}]
        config["current-context"] = name
        path = self.endpoints.directory / f"kubeconfig-{name}"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return Kubectl(self.endpoints, name, path)

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        kubeconfig = self.kubeconfig or self.endpoints.kubeconfig
        argv = [str(self.endpoints.kubectl), "--kubeconfig", str(kubeconfig),
                "--context", self.context, *args]
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                timeout=60, check=False)
        if result.returncode != 0:
            raise KubectlError(list(args), result)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))

    def apply(self, manifest: dict[str, Any], *extra: str) -> str:
        return self("apply", "-f", "-", *extra, stdin=json.dumps(manifest))

    def install_crd(self, manifest: dict[str, Any]) -> None:
        """Applies a CRD and waits until the apiserver serves it."""
        self.apply(manifest)
        established = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
        eventually(lambda: self("get", "crd", manifest["metadata"]["name"], "-o",
                                established) == "True",
                   what=f"the CRD {manifest['metadata']['name']}")


def eventually(probe: Callable[[], T | None], *, timeout: float = 30.0,
               what: str = "condition") -> T:
    """Polls ``probe`` until it returns something truthy; fails with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
