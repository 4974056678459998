"""Installs what the local stack runs: Debian packages, Go-built binaries, Elasticsearch.

Nothing here downloads a prebuilt binary from a vendor: no registry we can reach ships
kube-apiserver, etcd or containerd, so they are built from the Go module proxy
(``kubernetes``, ``containerd``, see ``gobuild``), and Elasticsearch comes from its Maven
Central distribution through Maven; the images are made here (``images``, ``operator_image``).
Every result is cached by version (see ``cache``), so only a machine's first run pays for it.

Go builds keep both cores busy while the image work mostly waits on the network (debootstrap,
pip) and the disk, so on a cold machine the two run side by side.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stack import cache, containerd, helm_tool, images, kubernetes, operator_image
from stack.shell import run, say

CHECKOUT = Path(__file__).resolve().parents[2]


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
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        log=cache.root() / "logs" / "apt-install.log",
    )


def _debian_installed(package: str) -> bool:
    query = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True, text=True, check=False,
    )
    return query.returncode == 0 and query.stdout.endswith(" installed")


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
