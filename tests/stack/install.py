"""Installs what the local stack runs: Debian packages, Kubernetes built from source, Elasticsearch.

Nothing here downloads a prebuilt binary from a vendor: no registry ships kube-apiserver,
so it is built from Debian's ``kubernetes`` source package (the full upstream tree), and
Elasticsearch comes from its Maven Central distribution through Maven. Every result is
cached by version (see ``cache``), so only a machine's first run pays for it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

from stack import cache, helm_tool
from stack.shell import run, say

DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEBIAN_SOURCES_LIST = Path("/etc/apt/sources.list")
GOCODE = Path("/usr/share/gocode/src/github.com")
# Vendored Go modules replaced by Debian's newer releases (see _replace_vendored).
VENDOR_REPLACEMENTS = ("modern-go/reflect2", "json-iterator/go")
GO_1_19 = Path("/usr/lib/go-1.19/bin")


def ensure_all() -> None:
    """Installs whatever is missing; a no-op (well under a second) on a prepared machine."""
    ensure_debian_packages()
    ensure_kubernetes()
    ensure_elasticsearch()
    helm_tool.ensure_helm()  # for the chart's tests


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


def ensure_kubernetes() -> None:
    """Builds kube-apiserver, kube-controller-manager and kubectl once per machine."""
    target = cache.kubernetes_bin()
    if all((target / name).is_file() for name in cache.KUBERNETES_COMMANDS):
        return
    say(f"building Kubernetes {cache.KUBERNETES_VERSION} from Debian's source package "
        "(first run on this machine only; about 5-8 minutes on 2 cores)")
    work = cache.root() / "kubernetes" / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tree = _fetch_kubernetes_source(work)
    for module in VENDOR_REPLACEMENTS:
        _replace_vendored(tree, module)
    go_env = {
        "PATH": f"{GO_1_19}:{os.environ.get('PATH', '')}",
        "CGO_ENABLED": "0",
        "GOFLAGS": "",
        "KUBE_GIT_VERSION": cache.KUBERNETES_VERSION,
        "KUBE_GIT_MAJOR": "1",
        "KUBE_GIT_MINOR": "20",
        "KUBE_GIT_TREE_STATE": "clean",
        "KUBE_GIT_COMMIT": cache.KUBERNETES_GIT_COMMIT,
    }
    what = " ".join(f"cmd/{name}" for name in cache.KUBERNETES_COMMANDS)
    run(
        ["make", f"WHAT={what}", "KUBE_BUILD_PLATFORMS=linux/amd64", "GOLDFLAGS=-s -w"],
        cwd=tree, env=go_env, log=cache.root() / "logs" / "kubernetes-build.log",
    )
    built = tree / "_output" / "local" / "bin" / "linux" / "amd64"
    staging = target.with_name("bin.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in cache.KUBERNETES_COMMANDS:
        shutil.copy2(built / name, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    shutil.rmtree(work, ignore_errors=True)
    say(f"Kubernetes binaries cached in {target}")


def _fetch_kubernetes_source(work: Path) -> Path:
    """Downloads and unpacks the upstream tree through a private apt configuration.

    The machine's own Debian mirror configuration is reused with ``deb-src`` added, in a
    directory of our own, so /etc/apt is never touched.
    """
    apt_dir = work / "apt"
    parts = apt_dir / "sources.list.d"
    parts.mkdir(parents=True)
    (apt_dir / "lists" / "partial").mkdir(parents=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True)
    if DEBIAN_SOURCES.is_file():
        text = re.sub(r"^Types:.*$", "Types: deb-src", DEBIAN_SOURCES.read_text(), flags=re.M)
        (parts / "debian-src.sources").write_text(text)
    else:
        lines = [
            line.replace("deb ", "deb-src ", 1)
            for line in DEBIAN_SOURCES_LIST.read_text().splitlines()
            if line.startswith("deb ")
        ]
        (parts / "debian-src.list").write_text("\n".join(lines) + "\n")
    apt_options = [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={parts}",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
    ]
    say("downloading the kubernetes source package")
    logs = cache.root() / "logs"
    run(["apt-get", *apt_options, "update", "-q"], log=logs / "apt-src-update.log")
    source = work / "source"
    source.mkdir()
    run(
        ["apt-get", *apt_options, "source", "--download-only", cache.KUBERNETES_DEBIAN_SOURCE],
        cwd=source, log=logs / "apt-source.log",
    )
    say("unpacking the kubernetes source tree")
    with tarfile.open(source / cache.KUBERNETES_ORIG_TARBALL) as archive:
        archive.extractall(work / "tree", filter="tar")
    (top,) = [path for path in (work / "tree").iterdir() if (path / "vendor").is_dir()]
    shutil.rmtree(source)
    return top


def _replace_vendored(tree: Path, module: str) -> None:
    """Swaps a vendored Go module's sources for Debian's newer release of it.

    reflect2 1.0.1 is broken on Go >= 1.18: the apiserver dies with ``unexpected fault
    address`` on its first custom-resource write. json-iterator 1.1.12 is the release
    made for reflect2 1.0.2 (the vendored 1.1.10 predates it).
    """
    vendored = tree / "vendor" / "github.com" / module
    for path in vendored.iterdir():
        if path.suffix in (".go", ".s"):
            path.unlink()
    for path in (GOCODE / module).iterdir():
        if path.suffix in (".go", ".s") and not path.name.endswith("_test.go"):
            shutil.copy2(path, vendored / path.name)


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
        bundle.extractall(staging)  # noqa: S202 (Elastic's own archive, checked by Maven)
    (top,) = list(staging.iterdir())
    for script in (top / "bin").iterdir():
        script.chmod(0o755)
    top.rename(home)
    shutil.rmtree(staging)
    archive.unlink()
    say(f"Elasticsearch cached in {home}")
