"""Where the stack keeps what it installs, and which versions it installs.

Builds and downloads live outside the checkout (``~/.cache/kubeledger`` unless
``KUBELEDGER_CACHE`` says otherwise), keyed by version, so every clone on a machine and
every later test run reuse the first run's work. ``KUBELEDGER_KUBERNETES_VERSION`` picks
another Kubernetes release the Go module proxy serves (v1.34.4 and later are tested);
the default is the newest this project runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_KUBERNETES_VERSION = "v1.37.2"
KUBERNETES_VERSION_ENV = "KUBELEDGER_KUBERNETES_VERSION"
ETCD_VERSION = "v3.6.16"
# Prometheus 3.16.0: since 3.0 its Go module is tagged v0.<major*100+minor>.<patch>.
PROMETHEUS_VERSION = "v0.316.0"

ELASTICSEARCH_VERSION = "8.19.21"
ELASTICSEARCH_ARTIFACT = (
    f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ELASTICSEARCH_VERSION}:zip"
)

# Debian packages the stack needs; installed with apt-get when one is missing.
DEBIAN_PACKAGES = (
    "openssl", "ca-certificates", "unzip", "maven",
    # the node: container runtime pieces, networking, images
    "runc", "containernetworking-plugins", "iptables", "nftables", "iproute2", "conntrack",
    "docker-registry", "busybox-static", "umoci", "buildah", "debootstrap",
    # the anomaly alerts' tests: a real Alertmanager (stack.alertmanager)
    "prometheus-alertmanager",
)


def root() -> Path:
    """The cache directory, created on first use."""
    path = Path(os.environ.get("KUBELEDGER_CACHE", Path.home() / ".cache" / "kubeledger"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubernetes_version() -> str:
    """The Kubernetes release the stack builds and runs (``v1.MINOR.PATCH``)."""
    version = os.environ.get(KUBERNETES_VERSION_ENV, DEFAULT_KUBERNETES_VERSION)
    parts = version.removeprefix("v").split(".")
    if not version.startswith("v1.") or len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise RuntimeError(f"{KUBERNETES_VERSION_ENV}={version!r}: expected a release such as "
                           f"{DEFAULT_KUBERNETES_VERSION}")
    return version


def elasticsearch_home() -> Path:
    """The unpacked Elasticsearch distribution.

    As root the server runs as an unprivileged user, who cannot enter root's home
    (mode 700): the distribution then lives in /opt/kubeledger, readable by everyone.
    """
    base = Path("/opt/kubeledger") if os.geteuid() == 0 else root()
    return base / "elasticsearch" / ELASTICSEARCH_VERSION
