"""Provides the ``helm`` binary the chart tests and ``make`` targets run: Helm 3, built once.

No registry ships an official Helm binary, but Helm is a Go module, so ``go install``
builds it from the Go module proxy with the machine's Go. The result is cached by version
under ``cache.root()/helm/<version>/helm`` beside the Kubernetes build (see ``cache``),
so only a machine's first run pays the few minutes the build takes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stack import cache, gobuild
from stack.shell import run, say

HELM_VERSION = "v3.22.0"
# The Kubernetes minor of the client-go that HELM_VERSION's go.mod requires (v0.37.x).
HELM_KUBERNETES_MINOR = "37"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
# Helm's release build (its Makefile) stamps these through the linker; `go install` alone
# would report a placeholder version and default `.Capabilities.KubeVersion` and lint's
# deprecation checks to Kubernetes 1.20 instead of what a released binary uses.
HELM_LDFLAGS = " ".join([
    "-s -w",
    f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
    *(
        f"-X helm.sh/helm/v3/pkg/{package}.k8sVersion{part}={value}"
        for package in ("chartutil", "lint/rules")
        for part, value in (("Major", "1"), ("Minor", HELM_KUBERNETES_MINOR))
    ),
])



def helm_path() -> Path:
    """Where the cached binary lives (it may not exist yet)."""
    return cache.root() / "helm" / HELM_VERSION / "helm"


def ensure_helm() -> Path:
    """Returns the cached Helm binary, building it first when it is missing."""
    binary = helm_path()
    if binary.is_file():
        return binary
    say(f"building helm {HELM_VERSION} with `go install` "
        "(first run on this machine only; a few minutes)")
    # Build into a side directory and rename, so an interrupted build never leaves a
    # half-written binary where the next run would take it as done.
    staging = binary.parent.with_name(binary.parent.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # The stack's shared Go caches: helm builds on the same client-go as Kubernetes.
    run(
        [str(gobuild.go()), "install", "-trimpath", f"-ldflags={HELM_LDFLAGS}",
         f"{HELM_PACKAGE}@{HELM_VERSION}"],
        cwd=staging,
        env={**gobuild.go_env(), "GOBIN": str(staging)},
        log=cache.root() / "logs" / "helm-build.log",
    )
    shutil.rmtree(binary.parent, ignore_errors=True)
    staging.rename(binary.parent)
    say(f"helm cached in {binary}")
    return binary
