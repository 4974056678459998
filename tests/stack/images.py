"""The container images the local stack's node runs, built here as OCI archives.

No image registry is reachable, so every image the node needs is made on this machine:
the pod sandbox (``PAUSE_IMAGE``, a static Go program in ``tests/stack/pause/``) and two
tiny workloads (``TEST_IMAGES``, Debian's static busybox serving a page that names its
version). The operator's own image is ``operator_image``'s; it packs its base image with
the helpers here.

Each image is an OCI layout made with ``umoci`` and written as a tar (an "OCI archive")
under ``cache.root()/images/``, keyed by a recipe version, so later runs reuse it. The
archive's index names the image twice, as containerd's importer reads it: the full
reference in both ``io.containerd.image.name`` and ``org.opencontainers.image.ref.name``,
so that a plain ``ctr -n k8s.io images import ARCHIVE`` (no ``--base-name``, no
``--index-name``) stores it under exactly that reference.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from stack import cache, gobuild
from stack.shell import run, say

PAUSE_IMAGE = "localhost/kubeledger/pause:1"
TEST_IMAGES = ("localhost/kubeledger/testapp:1", "localhost/kubeledger/testapp:2")

# Bumped whenever what goes into an image changes, so machines rebuild older archives.
RECIPE = "1"

PAUSE_SOURCE = Path(__file__).with_name("pause")
BUSYBOX = Path("/bin/busybox")
# The sandbox runs as the user upstream's pause image uses; it needs no privilege.
PAUSE_USER = "65535:65535"
# Numeric and non-root, so the workload passes the "restricted" pod security standard.
TESTAPP_USER = "10001:10001"
TESTAPP_PORT = 8080

CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
OCI_REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

# A layer's entry: a directory or link alone, or a regular file with its content.
LayerEntry: TypeAlias = tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]


@dataclass(frozen=True)
class ImageConfig:
    """The runtime settings of an image, as ``umoci config`` sets them."""

    entrypoint: Sequence[str]
    user: str
    env: Sequence[str] = ()
    exposed_ports: Sequence[str] = ()
    labels: dict[str, str] = field(default_factory=dict)


def images_dir() -> Path:
    """Where the image archives and their build scratch space live."""
    path = cache.root() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_pause_image() -> Path:
    """The pod sandbox image's archive, built unless cached; its name is ``PAUSE_IMAGE``."""
    archive = images_dir() / f"pause-{_pause_source_hash()}-r{RECIPE}.tar"
    if archive.is_file():
        return archive
    say(f"building {PAUSE_IMAGE} (a static Go binary)")
    work = scratch_dir(archive)
    binary = work / "pause"
    run([str(gobuild.go()), "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
        cwd=PAUSE_SOURCE, env=gobuild.go_env())
    layer = work / "layer.tar"
    _write_layer(layer, [_file("pause", binary.read_bytes(), 0o755)])
    config = ImageConfig(entrypoint=["/pause"], user=PAUSE_USER)
    pack_archive(PAUSE_IMAGE, [layer], config, archive, work=work)
    return archive


def ensure_test_images() -> dict[str, Path]:
    """The workload images' archives (reference -> archive), built unless cached."""
    return {ref: _ensure_test_image(ref) for ref in TEST_IMAGES}


def _ensure_test_image(ref: str) -> Path:
    version = ref.rpartition(":")[2]
    archive = images_dir() / f"testapp-{version}-r{RECIPE}.tar"
    if archive.is_file():
        return archive
    say(f"building {ref} (busybox httpd on port {TESTAPP_PORT})")
    work = scratch_dir(archive)
    layer = work / "layer.tar"
    _write_layer(layer, _testapp_entries(version))
    config = ImageConfig(
        # httpd as PID 1 would ignore SIGTERM, so every pod deletion would wait out its grace
        # period; the shell above it exits on SIGTERM, and the container's end stops httpd.
        entrypoint=["/bin/sh", "-c", f"trap 'exit 0' TERM INT; httpd -f -p {TESTAPP_PORT} "
                    "-h /www & wait"],
        user=TESTAPP_USER,
        # For `kubectl exec`, which finds commands on the image's PATH.
        env=["PATH=/bin"],
        exposed_ports=[f"{TESTAPP_PORT}/tcp"],
        labels={"org.opencontainers.image.version": version},
    )
    pack_archive(ref, [layer], config, archive, work=work)
    return archive


def _testapp_entries(version: str) -> list[LayerEntry]:
    """A root filesystem of busybox and its applets, a page naming the version, and /tmp."""
    if not BUSYBOX.is_file():
        raise RuntimeError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    # Every applet as a link, so `kubectl exec POD -- nc ...` and `sh -c` work in the pod.
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    user, group = TESTAPP_USER.split(":")
    entries: list[LayerEntry] = [
        _dir("bin"), _dir("etc"), _dir("www"), _dir("tmp", 0o1777),
        _file("bin/busybox", BUSYBOX.read_bytes(), 0o755),
        _file("etc/passwd", f"root:x:0:0:root:/:/bin/sh\ntestapp:x:{user}:{group}::/www:/bin/sh\n"
              .encode()),
        _file("etc/group", f"root:x:0:\ntestapp:x:{group}:\n".encode()),
        _file("www/index.html", f"testapp {version}\n".encode()),
    ]
    entries += [_symlink(f"bin/{name}", "busybox") for name in sorted(set(applets) - {"busybox"})]
    return entries


def scratch_dir(archive: Path) -> Path:
    """A fresh scratch directory beside the archive it will produce."""
    work = archive.with_name(archive.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def pack_archive(
    ref: str, layers: Sequence[Path], config: ImageConfig, archive: Path, *, work: Path,
) -> None:
    """Makes an OCI image of uncompressed layer tars and writes it as ``archive``, named ``ref``.

    ``work`` is scratch space (removed afterwards); the archive appears only when complete.
    """
    layout = work / "layout"
    image = f"{layout}:build"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", image])
    for layer in layers:
        run(["umoci", "raw", "add-layer", "--image", image, str(layer)])
    argv = ["umoci", "config", "--image", image, "--config.user", config.user,
            "--config.workingdir", "/"]
    argv += [f"--config.entrypoint={arg}" for arg in config.entrypoint]
    argv += [f"--config.env={variable}" for variable in config.env]
    argv += [f"--config.exposedports={port}" for port in config.exposed_ports]
    argv += [f"--config.label={key}={value}" for key, value in config.labels.items()]
    run(argv)
    # `umoci config` writes a new manifest and config; drop the superseded blobs.
    run(["umoci", "gc", "--layout", str(layout)])
    write_named_archive(layout, ref, archive)
    shutil.rmtree(work, ignore_errors=True)


def write_named_archive(layout: Path, ref: str, archive: Path) -> None:
    """Writes the OCI layout's single image as an archive whose index names it ``ref``."""
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    if len(index["manifests"]) != 1:
        raise RuntimeError(f"{layout}: expected one image, found {len(index['manifests'])}")
    index["manifests"][0]["annotations"] = {
        CONTAINERD_NAME_ANNOTATION: ref, OCI_REF_NAME_ANNOTATION: ref,
    }
    index_path.write_text(json.dumps(index))
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=path.relative_to(layout).as_posix(), recursive=False,
                    filter=_normalized)
    # Renamed into place only when complete: an interrupted build is never taken as done.
    partial.replace(archive)
    say(f"{ref} written to {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")


def _pause_source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(PAUSE_SOURCE.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _write_layer(path: Path, entries: Iterable[LayerEntry]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tuple):
                info, data = entry
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(entry)


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owner, mode and time fixed, so the same content makes the same archive."""
    info.mode = 0o755 if info.isdir() else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def _dir(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info

