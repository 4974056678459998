"""Installs what the local stack runs: Debian packages, Go-built binaries, Elasticsearch.

Nothing here downloads a prebuilt binary from a vendor: no registry we can reach ships
kube-apiserver, etcd, containerd or a Prometheus with Kubernetes discovery, so they are
built from the Go module proxy (``kubernetes``, ``containerd``, ``prometheus_build``, see
``gobuild``), and Elasticsearch comes from its Maven Central distribution through Maven;
the images are made here (``images``, ``operator_image``).
Every result is cached by version (see ``cache``), so only a machine's first run pays for it.

Go builds keep both cores busy while the image work mostly waits on the network (debootstrap,
pip) and the disk, so on a cold machine the two run side by side.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stack import cache, containerd, gobuild, helm_tool, images, kubernetes, operator_image
from stack.shell import run, say

CHECKOUT = Path(__file__).resolve().parents[2]
# Packages that ship a system service the stack never wants: it runs the daemon itself, as
# a child process (docker-registry.service would listen on 0.0.0.0:5000, Alertmanager on
# 0.0.0.0:9093). Their services are neither started by the install nor enabled for the
# next boot.
SERVICE_PACKAGES = ("docker-registry", "prometheus-alertmanager")
# Asked by invoke-rc.d and deb-systemd-invoke before a package script starts a service.
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


def ensure_all() -> None:
    """Installs whatever is missing; a no-op (well under a second) on a prepared machine."""
    ensure_debian_packages()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="install") as pool:
        builds = pool.submit(_ensure_go_builds)
        downloads = pool.submit(_ensure_downloads_and_images)
        builds.result()
        downloads.result()


def _ensure_go_builds() -> None:
    kubernetes.ensure_kubernetes()
    kubernetes.ensure_etcd()
    containerd.ensure_containerd()
    helm_tool.ensure_helm()  # the chart's tests and the stack's release
    prometheus_build().ensure(took="about 5 minutes on 2 cores")  # the metrics tests


def _ensure_downloads_and_images() -> None:
    ensure_elasticsearch()
    images.ensure_pause_image()
    images.ensure_test_images()
    operator_image.build_operator_image(CHECKOUT)


def ensure_debian_packages() -> None:
    missing = [name for name in cache.DEBIAN_PACKAGES if not _debian_installed(name)]
    if not missing:
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    run(["apt-get", "update", "-q"], log=cache.root() / "logs" / "apt-update.log")
    with _no_service_starts():
        run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env={"DEBIAN_FRONTEND": "noninteractive"},
            log=cache.root() / "logs" / "apt-install.log",
        )
    for package in SERVICE_PACKAGES:
        if package in missing:
            _keep_service_off(package)


@contextlib.contextmanager
def _no_service_starts() -> Iterator[None]:
    """Forbids package scripts to start services (policy-rc.d exit 101) while apt runs.

    A policy-rc.d the machine has already (container images ship one that forbids
    everything) is the administrator's and stays as it is.
    """
    if POLICY_RC_D.exists():
        yield
        return
    POLICY_RC_D.write_text("#!/bin/sh\n# kubeledger's stack install: no service starts while "
                           "apt-get installs\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC_D.unlink(missing_ok=True)


def _keep_service_off(package: str) -> None:
    """Disables the service the package's postinst enabled for boot, and stops it should a
    machine's own policy-rc.d have let it start.

    ``update-rc.d disable`` turns the init script's links off and, where systemctl exists,
    disables the systemd unit too; package upgrades keep both disabled. Only a running
    service is stopped: the init script's ``stop`` fails when there is nothing to stop.
    """
    run(["update-rc.d", package, "disable"])
    if _service_running(package):
        run(["invoke-rc.d", "--force", "--quiet", package, "stop"])


def _service_running(package: str) -> bool:
    # LSB: ``status`` exits 0 only for a running service (3 stopped, 4 unknown).
    status = subprocess.run(["invoke-rc.d", "--quiet", package, "status"],
                            capture_output=True, check=False)
    return status.returncode == 0


def _debian_installed(package: str) -> bool:
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True, text=True, check=False,
    )
    return query.returncode == 0 and query.stdout.endswith(" installed")


def prometheus_build() -> gobuild.GoBuild:
    """Prometheus and promtool, with Kubernetes service discovery and no other.

    Debian's prometheus package lacks Kubernetes discovery (Debian removed it for
    client-go's dependencies), which the metrics tests use as users' Prometheus does; the
    plugins' build tags leave out the cloud discoveries nobody here uses. The web UI's
    assets are not part of the Go module: its pages answer 500, its HTTP API is whole.
    """
    version = cache.PROMETHEUS_VERSION
    module = "github.com/prometheus/prometheus"
    major_minor, patch = version.removeprefix("v0.").split(".")
    release = f"{int(major_minor) // 100}.{int(major_minor) % 100}.{patch}"
    return gobuild.GoBuild(
        name="prometheus",
        version=version,
        requires={module: version},
        commands={command: f"{module}/cmd/{command}" for command in ("prometheus", "promtool")},
        tags=("remove_all_sd", "enable_kubernetes_sd"),
        ldflags=("-s", "-w", f"-X github.com/prometheus/common/version.Version={release}"),
    )


def ensure_elasticsearch() -> None:
    """Fetches Elasticsearch's minimal server distribution from Maven Central, once."""
    home = cache.elasticsearch_home()
    if (home / "bin" / "elasticsearch").is_file():
        return
    say(f"fetching Elasticsearch {cache.ELASTICSEARCH_VERSION} through Maven")
    download = cache.root() / "downloads"
    run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={cache.ELASTICSEARCH_ARTIFACT}",
         f"-DoutputDirectory={download}"],
        log=cache.root() / "logs" / "maven.log",
    )
    archive = download / f"elasticsearch-{cache.ELASTICSEARCH_VERSION}.zip"
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(staging)  # Elastic's own archive, checked by Maven
    (top,) = list(staging.iterdir())
    for script in (top / "bin").iterdir():
        script.chmod(0o755)
    top.rename(home)
    shutil.rmtree(staging)
    archive.unlink()
    say(f"Elasticsearch cached in {home}")
