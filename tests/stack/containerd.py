"""The node's container runtime: containerd 2 with runc and the CNI bridge plugin.

containerd, its runc shim, ``ctr`` and ``crictl`` are built from the Go module proxy
(see ``gobuild``); runc and the CNI plugins are Debian's. Every path containerd owns
(root, state, socket, shim sockets, CNI config) lives in the stack's ``containerd/``
directory (the shims' sockets through a bind mount, see ``SHIM_SOCKET_DIR``), so two
stacks on one machine never share state. It runs inside the node's
private mount namespace together with the kubelet (see ``node``), which starts it with
``Runtime.argv()``.

Registries: every registry name resolves, through ``certs.d``, to the stack's own
``docker-registry`` on 127.0.0.1 (see ``Registry``), so a pull of ``nginx:1.25`` asks only
that registry and fails with a 404: no image pull ever leaves the machine. The images the
tests run, and the pod sandbox image, are imported from OCI archives
(``node.Node.import_image``).

containerd 2.4 always adds ``/etc/containerd/conf.d/*.toml`` to its imports (an empty
``imports`` means the default); nothing is there on our machines.
"""

from __future__ import annotations

import json
from pathlib import Path

from stack import gobuild, images
from stack.network import AddressPlan

CONTAINERD_VERSION = "v2.4.2"
CRICTL_VERSION = "v1.34.0"
CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
RUNC = Path("/usr/sbin/runc")
CNI_BIN_DIR = Path("/usr/lib/cni")
DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
# Every name an image reference may resolve to; each is pointed at the local registry.
REGISTRY_NAMES = ("_default", "docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "gcr.io",
                  "localhost")
CRI_NAMESPACE = "k8s.io"
# The registry listens on the node namespace's loopback, which only the node's processes see.
REGISTRY_ADDRESS = "127.0.0.1:5000"
# Shim sockets are <dir>/s/<64 hex digits>, and a socket path has at most 107 bytes: a
# stack directory under /tmp is already too long. In the node's mount namespace this
# short path is a bind mount of the stack's own directory (see ``node``).
SHIM_SOCKET_DIR = "/run/containerd"


def containerd_build() -> gobuild.GoBuild:
    return gobuild.GoBuild(
        name="containerd",
        version=CONTAINERD_VERSION,
        requires={CONTAINERD_MODULE: CONTAINERD_VERSION},
        # hcsshim (Windows only, never compiled here) requires cosesign1go v1.6.0, whose
        # go.mod the checksum database does not know (404), so `go get` refuses it; the
        # next release is known and only settles the module graph.
        replaces={"github.com/Microsoft/cosesign1go": "github.com/Microsoft/cosesign1go v1.7.0"},
        commands={name: f"{CONTAINERD_MODULE}/cmd/{name}"
                  for name in ("containerd", "containerd-shim-runc-v2", "ctr")},
        # Storage drivers that need cgo or kernel pieces we do not use (we run overlayfs).
        tags=("no_btrfs", "no_devmapper", "no_zfs"),
        ldflags=("-s", "-w",
                 f"-X {CONTAINERD_MODULE}/version.Version={CONTAINERD_VERSION.removeprefix('v')}"),
    )


def crictl_build() -> gobuild.GoBuild:
    """crictl removes pod sandboxes through the CRI, which also undoes their CNI setup."""
    return gobuild.GoBuild(
        name="crictl",
        version=CRICTL_VERSION,
        requires={"sigs.k8s.io/cri-tools": CRICTL_VERSION},
        commands={"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
        ldflags=("-s", "-w",
                 f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}"),
    )


def ensure_containerd() -> Path:
    crictl_build().ensure(took="about a minute")
    return containerd_build().ensure(took="about 5 minutes on 2 cores")


def containerd_bin() -> Path:
    return containerd_build().bin_dir


def crictl() -> Path:
    return crictl_build().binary("crictl")


class Runtime:
    """The files of one node's containerd, under ``directory``; the node runs the process."""

    def __init__(self, directory: Path, plan: AddressPlan) -> None:
        self.directory = directory
        self.plan = plan

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def argv(self) -> list[str]:
        """Writes the configuration; returns the command that runs containerd with it."""
        config = self.directory / "config.toml"
        self.directory.mkdir(parents=True, exist_ok=True)
        config.write_text(self._config())
        self._write_cni_config()
        self._write_registry_hosts()
        return [str(containerd_bin() / "containerd"), "--config", str(config)]

    def ctr(self, *args: str) -> list[str]:
        """The ``ctr`` command line for this containerd's CRI namespace."""
        return [str(containerd_bin() / "ctr"), "--address", str(self.socket),
                "--namespace", CRI_NAMESPACE, *args]

    def crictl(self, *args: str) -> list[str]:
        return [str(crictl()), "--runtime-endpoint", self.endpoint,
                "--image-endpoint", self.endpoint, "--timeout", "30s", *args]

    @property
    def cni_conf_dir(self) -> Path:
        return self.directory / "cni" / "net.d"

    @property
    def certs_dir(self) -> Path:
        return self.directory / "certs.d"

    def _config(self) -> str:
        d = self.directory
        registry = json.dumps(str(self.certs_dir))
        return f"""\
# Written by kubeledger's local stack (tests/stack/containerd.py) at every start.
version = 4
root = {json.dumps(str(d / "root"))}
state = {json.dumps(str(d / "state"))}

[plugins."io.containerd.server.v1.grpc"]
  address = {json.dumps(str(self.socket))}

[plugins."io.containerd.server.v1.ttrpc"]
  address = {json.dumps(str(self.socket) + ".ttrpc")}

[plugins."io.containerd.internal.v1.opt"]
  path = {json.dumps(str(d / "opt"))}

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "{SHIM_SOCKET_DIR}"

[plugins."io.containerd.transfer.v1.local"]
  config_path = {registry}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

[plugins."io.containerd.cri.v1.images".pinned_images]
  # Imported (never pulled) before the kubelet starts; pinned, so never collected.
  sandbox = "{images.PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.images".registry]
  config_path = {registry}

[plugins."io.containerd.cri.v1.runtime"]
  # Required here: root lacks CAP_SYS_RESOURCE, and without it runc fails with
  # "can't get final child's PID from pipe: EOF" when a pod asks for a lower score.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  cdi_spec_dirs = [{json.dumps(str(d / "cdi"))}]

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  Root = {json.dumps(str(d / "runc"))}
  SystemdCgroup = false

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN_DIR}"]
  conf_dir = {json.dumps(str(self.cni_conf_dir))}

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
"""

    def _write_cni_config(self) -> None:
        """One bridge network whose addresses are the node's pod CIDR."""
        plan = self.plan
        conflist = {
            "cniVersion": "1.0.0",
            "name": "kubeledger",
            "plugins": [{
                "type": "bridge",
                "bridge": plan.bridge,
                "isGateway": True,
                "ipMasq": False,
                # A pod reaching its own Service may be sent back to itself.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": plan.pod_cidr, "gateway": plan.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.directory / "cni" / "ipam"),
                },
            }],
        }
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (self.cni_conf_dir / "10-kubeledger.conflist").write_text(
            json.dumps(conflist, indent=2) + "\n")

    def _write_registry_hosts(self) -> None:
        for name in REGISTRY_NAMES:
            host_dir = self.certs_dir / name
            host_dir.mkdir(parents=True, exist_ok=True)
            (host_dir / "hosts.toml").write_text(
                f'server = "http://{REGISTRY_ADDRESS}"\n\n'
                f'[host."http://{REGISTRY_ADDRESS}"]\n'
                '  capabilities = ["pull", "resolve"]\n')


class Registry:
    """The node's image registry: Debian's docker-registry with storage under ``directory``.

    It holds no images; it exists so that every pull has a local answer (404) and none
    goes out to the registry an image name points at.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def argv(self) -> list[str]:
        config = self.directory / "config.yml"
        (self.directory / "storage").mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(self.directory / "storage")}},
            "http": {"addr": REGISTRY_ADDRESS},
        }, indent=2) + "\n")
        return [str(DOCKER_REGISTRY), "serve", str(config)]
