"""The operator's container image, built from the project's own Dockerfile without Docker.

No Docker engine runs here and no registry of base images is reachable, so the image is
built with buildah (chroot isolation, host network) on a base image of our own: Debian
bookworm made with debootstrap from the mirror apt uses, packed by ``images``. buildah's
storage, registries and signature policy are ours too (under ``cache.root()/buildah``
unless a directory is given): nothing is ever pulled from outside (``--pull=never``, no
search registries, a policy that accepts local transports only).

``build_operator_image`` returns ``localhost/kubeledger/operator:<hash>``, the hash being
that of every file that goes into the image (the build context as ``.dockerignore`` leaves
it, the Dockerfile, and our recipe), with an OCI archive of it that
``ctr -n k8s.io images import`` stores under exactly that reference. The archive is cached
by the hash, so an unchanged checkout builds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from stack import cache, images
from stack.shell import run, say

OPERATOR_REPOSITORY = "localhost/kubeledger/operator"
# Bumped whenever the build command changes, so machines rebuild older archives.
RECIPE = "1"

BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_RECIPE = "1"
BASE_IMAGE = f"localhost/kubeledger/base:{BASE_SUITE}-r{BASE_RECIPE}"
# Docker's python images set these; the Dockerfile's ENV extends PATH.
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
# A container's /dev, /proc and /sys come from its runtime, not from the image.
BASE_EXCLUDES = ("./dev/*", "./proc/*", "./sys/*", "./var/cache/apt/archives/*.deb",
                 "./var/lib/apt/lists/*", "./etc/hostname", "./etc/resolv.conf")

# pip inside the build trusts the machine's CA bundle, which carries the CA of the proxy in
# front of PyPI; the Debian rootfs and pip's own bundle lack it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_CA_BUNDLE = "/run/build-ca.crt"
# Files the image depends on besides its build context.
BUILD_FILES = ("Dockerfile", ".dockerignore")
SHORT_HASH = 12

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")

# Only local transports: a reference that would reach a registry is refused.
SIGNATURE_POLICY = {
    "default": [{"type": "reject"}],
    "transports": {
        transport: {"": [{"type": "insecureAcceptAnything"}]}
        for transport in ("containers-storage", "oci", "oci-archive", "docker-archive", "dir")
    },
}
REGISTRIES_CONF = 'unqualified-search-registries = []\nshort-name-mode = "enforcing"\n'
# crun fails on this machine ("cgroups in hybrid mode not supported"); runc works.
CONTAINERS_CONF = '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n'


@dataclass(frozen=True)
class Buildah:
    """buildah with a storage and configuration of our own under ``root``."""

    root: Path

    @property
    def policy(self) -> Path:
        return self.root / "policy.json"

    def env(self) -> dict[str, str]:
        return {
            "CONTAINERS_STORAGE_CONF": str(self.root / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.root / "registries.conf"),
            "CONTAINERS_CONF": str(self.root / "containers.conf"),
        }

    def configure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "run"}"\n')
        (self.root / "registries.conf").write_text(REGISTRIES_CONF)
        (self.root / "containers.conf").write_text(CONTAINERS_CONF)
        self.policy.write_text(json.dumps(SIGNATURE_POLICY, indent=2))

    def __call__(self, *args: str, log: Path | None = None) -> None:
        run(["buildah", *args], env=self.env(), log=log)


def build_operator_image(checkout: Path, *, store: Path | None = None) -> tuple[str, Path]:
    """Builds the operator image unless cached; returns its reference and OCI archive.

    ``store`` is buildah's directory (storage and configuration), ``cache.root()/buildah``
    by default.
    """
    ref = f"{OPERATOR_REPOSITORY}:{image_hash(checkout)[:SHORT_HASH]}"
    archive = images.images_dir() / f"operator-{ref.rpartition(':')[2]}.tar"
    if archive.is_file():
        return ref, archive
    base = ensure_base_image()
    buildah = Buildah(store or cache.root() / "buildah")
    buildah.configure()
    say(f"building {ref} from {checkout / 'Dockerfile'} with buildah (pip installs from PyPI; "
        "a minute or two)")
    started = time.monotonic()
    _build(buildah, checkout, ref, base)
    try:
        _export(buildah, ref, archive)
    finally:
        # The archive is the cache; the store keeps only the base image between builds.
        buildah("rmi", ref)
    say(f"{ref} built in {time.monotonic() - started:.0f}s")
    return ref, archive


def _build(buildah: Buildah, checkout: Path, ref: str, base: str) -> None:
    buildah("bud", "--isolation", "chroot", "--network", "host", "--pull=never",
            "--signature-policy", str(buildah.policy),
            "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"VERSION={_project_version(checkout)}",
            "--build-arg", f"PIP_CERT={BUILD_CA_BUNDLE}",
            "--volume", f"{HOST_CA_BUNDLE}:{BUILD_CA_BUNDLE}:ro",
            "--tag", ref, "--file", str(checkout / "Dockerfile"), str(checkout),
            log=cache.root() / "logs" / "operator-image-build.log")


def _export(buildah: Buildah, ref: str, archive: Path) -> None:
    """Writes the built image as an OCI archive that containerd imports under ``ref``."""
    work = images.scratch_dir(archive)
    layout = work / "layout"
    try:
        buildah("push", "--signature-policy", str(buildah.policy), ref, f"oci:{layout}:{ref}")
        images.write_named_archive(layout, ref, archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_image() -> str:
    """The base image's archive, built unless cached, as a reference buildah can pull from.

    A ``FROM oci-archive:...`` needs no registry and is allowed with ``--pull=never``.
    """
    archive = images.images_dir() / f"base-{BASE_SUITE}-r{BASE_RECIPE}.tar"
    if not archive.is_file():
        _build_base_image(archive)
    return f"oci-archive:{archive}"


def _build_base_image(archive: Path) -> None:
    mirror = debian_mirror(BASE_SUITE)
    say(f"building {BASE_IMAGE}: debootstrap {BASE_SUITE} from {mirror} (first run on this "
        "machine only; a few minutes)")
    started = time.monotonic()
    work = images.scratch_dir(archive)
    rootfs = work / "rootfs"
    logs = cache.root() / "logs"
    run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
         BASE_SUITE, str(rootfs), mirror], log=logs / "base-image-debootstrap.log")
    layer = work / "layer.tar"
    run(["tar", "--create", "--file", str(layer), "--numeric-owner", "--xattrs",
         *(f"--exclude={pattern}" for pattern in BASE_EXCLUDES), "--directory", str(rootfs),
         "."])
    shutil.rmtree(rootfs)
    config = images.ImageConfig(entrypoint=(), user="0:0", env=BASE_ENV)
    images.pack_archive(BASE_IMAGE, [layer], config, archive, work=work)
    say(f"{BASE_IMAGE} built in {time.monotonic() - started:.0f}s")


def debian_mirror(suite: str) -> str:
    """The mirror apt uses for ``suite``: the first ``deb`` source that lists it."""
    for uri, suites in _apt_sources():
        if suite in suites:
            return uri
    raise RuntimeError(f"no apt source for {suite} in {APT_SOURCES} or {APT_SOURCES_DIR}")


def _apt_sources() -> Iterator[tuple[str, Sequence[str]]]:
    """(URI, suites) of every ``deb`` source, one-line and deb822 formats alike."""
    one_line = [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*.list"))]
    for path in one_line:
        if path.is_file():
            for line in path.read_text().splitlines():
                # deb [options] URI suite [component...]
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], words[2:3]
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = _deb822_fields(stanza)
            if "deb" in fields.get("types", "").split() and fields.get("enabled") != "no":
                for uri in fields.get("uris", "").split():
                    yield uri, fields.get("suites", "").split()


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        key, colon, value = line.partition(":")
        # Continuation lines start with blanks (only Signed-By uses them in practice).
        if colon and not line.startswith(("#", " ", "\t")):
            fields[key.strip().lower()] = value.strip()
    return fields


def image_hash(checkout: Path) -> str:
    """The SHA-256 of everything that goes into the image: context files, Dockerfile, recipe."""
    digest = hashlib.sha256(f"recipe {RECIPE} base {BASE_IMAGE}\n".encode())
    for relative in sorted({*context_files(checkout), *BUILD_FILES}):
        path = checkout / relative
        executable = bool(path.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{relative}\0{executable}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def context_files(checkout: Path) -> list[str]:
    """The build context's files (relative POSIX paths) that ``.dockerignore`` keeps."""
    ignore = checkout / ".dockerignore"
    rules = _ignore_rules(ignore.read_text()) if ignore.is_file() else []
    kept = []
    for directory, subdirs, files in os.walk(checkout):
        relative_dir = Path(directory).relative_to(checkout).as_posix()
        prefix = "" if relative_dir == "." else relative_dir + "/"
        subdirs[:] = [d for d in subdirs if _may_keep_below(prefix + d, rules)]
        kept += [prefix + f for f in files if not _ignored(prefix + f, rules)]
    return kept


@dataclass(frozen=True)
class _IgnoreRule:
    """One line of ``.dockerignore``: a pattern that excludes, or with ``!`` re-includes."""

    regex: re.Pattern[str]
    # The pattern's leading path without wildcards: a `!` rule re-includes nothing elsewhere.
    literal_prefix: str
    include: bool


def _ignore_rules(text: str) -> list[_IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        # Docker cleans each pattern like a path: "operator/" means "operator".
        pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
        literal_prefix = literal if literal == pattern else literal.rpartition("/")[0]
        rules.append(_IgnoreRule(re.compile(_pattern_regex(pattern)), literal_prefix, include))
    return rules


def _pattern_regex(pattern: str) -> str:
    """Docker's pattern syntax: ``**`` spans directories, ``*`` and ``?`` stay within one."""
    parts = []
    position = 0
    while position < len(pattern):
        if pattern.startswith("**/", position):
            parts.append("(?:.*/)?")
            position += 3
        elif pattern.startswith("**", position):
            parts.append(".*")
            position += 2
        else:
            char = pattern[position]
            parts.append({"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char)))
            position += 1
    return "".join(parts)


def _ignored(relative: str, rules: Sequence[_IgnoreRule]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    candidates = [relative]
    while "/" in candidates[-1]:
        candidates.append(candidates[-1].rpartition("/")[0])
    ignored = False
    for rule in rules:
        if any(rule.regex.fullmatch(candidate) for candidate in candidates):
            ignored = not rule.include
    return ignored


def _may_keep_below(directory: str, rules: Sequence[_IgnoreRule]) -> bool:
    """Whether the walk must enter ``directory`` (skipping .git and .venv saves seconds)."""
    if not _ignored(directory, rules):
        return True
    return any(rule.include and (rule.literal_prefix == ""
                                 or rule.literal_prefix.startswith(directory + "/"))
               for rule in rules)


def _project_version(checkout: Path) -> str:
    with (checkout / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version
