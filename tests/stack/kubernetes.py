"""Kubernetes and etcd binaries, built from the Go module proxy (see ``gobuild``).

``k8s.io/kubernetes``'s go.mod points every staging repository (``k8s.io/api``,
``k8s.io/client-go``, ...) at ``./staging/...`` as version v0.0.0. Each is also published
as its own module, tagged v0.MINOR.PATCH for release v1.MINOR.PATCH, so the scratch module
replaces each v0.0.0 requirement with that tag and copies the ``go`` and ``godebug`` lines
of kubernetes' own go.mod, which its code is written for.
"""

from __future__ import annotations

import re
from pathlib import Path

from stack import cache, gobuild

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                       "kubelet", "kube-proxy", "kubectl")


def kubernetes_build() -> gobuild.GoBuild:
    version = cache.kubernetes_version()
    major, minor, patch = version.removeprefix("v").split(".")
    staging_version = f"v0.{minor}.{patch}"
    mod = gobuild.download_mod_file("k8s.io/kubernetes", version).read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.\-/]+) v0\.0\.0\s*$", mod, re.M)))
    go_line = re.search(r"^go (\S+)", mod, re.M)
    godebug = re.search(r"^godebug (.+)$", mod, re.M)
    stamp = {"gitVersion": version, "gitMajor": major, "gitMinor": minor,
             "gitTreeState": "clean"}
    return gobuild.GoBuild(
        name="kubernetes",
        version=version,
        requires={"k8s.io/kubernetes": version},
        replaces={module: f"{module} {staging_version}" for module in staging},
        commands={name: f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS},
        go_directive=go_line.group(1) if go_line else None,
        godebug=godebug.group(1).strip() if godebug else None,
        tags=("selinux", "notest", "grpcnotrace"),
        ldflags=("-s", "-w", *(f"-X k8s.io/{package}.{key}={value}"
                               for package in ("component-base/version", "client-go/pkg/version")
                               for key, value in stamp.items())),
    )


def etcd_build() -> gobuild.GoBuild:
    return gobuild.GoBuild(
        name="etcd",
        version=cache.ETCD_VERSION,
        requires={"go.etcd.io/etcd/server/v3": cache.ETCD_VERSION,
                  "go.etcd.io/etcd/etcdctl/v3": cache.ETCD_VERSION},
        commands={"etcd": "go.etcd.io/etcd/server/v3", "etcdctl": "go.etcd.io/etcd/etcdctl/v3"},
    )


def ensure_kubernetes() -> Path:
    return kubernetes_build().ensure(took="10-20 minutes on 2 cores")


def ensure_etcd() -> Path:
    return etcd_build().ensure(took="about 2 minutes")


def kubernetes_bin() -> Path:
    """Directory of the built Kubernetes binaries (kubectl among them)."""
    return kubernetes_build().bin_dir


def kubectl() -> Path:
    return kubernetes_bin() / "kubectl"
