"""Where the stack keeps what it installs, and which versions it installs.

Builds and downloads live outside the checkout (``~/.cache/kubeledger`` unless
``KUBELEDGER_CACHE`` says otherwise), keyed by version, so every clone on a machine and
every later test run reuse the first run's work.
"""

from __future__ import annotations

import os
from pathlib import Path

KUBERNETES_VERSION = "v1.20.2"
# Bumped whenever the build recipe changes, so every machine rebuilds its cached binaries.
KUBERNETES_BUILD = "2"
# Debian bookworm's package carries the full upstream v1.20.2 tree, vendor/ included.
KUBERNETES_DEBIAN_SOURCE = "kubernetes=1.20.5+really1.20.2-1.1+deb12u1"
KUBERNETES_ORIG_TARBALL = "kubernetes_1.20.5+really1.20.2.orig.tar.gz"
KUBERNETES_GIT_COMMIT = "faecb196815e248d3ecfb03c680a4507229c2a56"
KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")

ELASTICSEARCH_VERSION = "8.19.21"
ELASTICSEARCH_ARTIFACT = (
    f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
)

# Debian packages the stack needs; installed with apt-get when a command is missing.
DEBIAN_PACKAGES = (
    "etcd-server", "etcd-client", "golang-go", "rsync", "make",
    "golang-github-modern-go-reflect2-dev", "golang-github-json-iterator-go-dev",
    "openssl", "ca-certificates", "unzip", "maven",
)


def root() -> Path:
    """The cache directory, created on first use."""
    path = Path(os.environ.get("KUBELEDGER_CACHE", Path.home() / ".cache" / "kubeledger"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubernetes_bin() -> Path:
    """Directory holding the built kube-apiserver, kube-controller-manager and kubectl."""
    return root() / "kubernetes" / f"{KUBERNETES_VERSION}-build{KUBERNETES_BUILD}" / "bin"


def elasticsearch_home() -> Path:
    """The unpacked Elasticsearch distribution.

    As root the server runs as an unprivileged user, who cannot enter root's home
    (mode 700): the distribution then lives in /opt/kubeledger, readable by everyone.
    """
    base = Path("/opt/kubeledger") if os.geteuid() == 0 else root()
    return base / "elasticsearch" / ELASTICSEARCH_VERSION
