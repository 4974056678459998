"""The stack's one worker node: containerd, the kubelet and kube-proxy in namespaces of their own.

A namespace process (``node-namespaces``, a ``sleep`` started by ``unshare``) holds a
private mount namespace and the node's network namespace (see ``network``). Everything
of the node runs inside both, started with ``nsenter`` and tracked by PID like every
other process of the stack:

- the mount namespace bind-mounts this stack's directories over the paths the kubelet
  and containerd hard-code (``/var/lib/kubelet``, ``/var/log/containers``,
  ``/var/lib/cni``, ``/run/containerd``; see ``PRIVATE_PATHS``), so two nodes on one
  machine never share a socket or a cache, and the host keeps only empty mount points; the
  kubelet's volume mounts and containerd's container mounts happen there too, visible
  to both and to runc, and none of them reaches the host's mount table;
- the network namespace gives the node its own iptables tables and ports.

Stopping (``stop``) runs in the reverse order: kube-proxy, the kubelet, then every pod
sandbox is removed through the CRI (which also undoes its network setup), containerd
stops, any process still inside the namespaces is ended by PID, and the namespace process
goes last, taking the namespaces and everything in them along. The kubelet's cgroups
live under a root of this node's own (``cgroup_root``) and are removed after.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stack import containerd, kubeconfigs, kubernetes
from stack.network import AddressPlan
from stack.pki import Pki
from stack.processes import ProcessTable, terminate
from stack.readiness import http_ok, wait_until
from stack.shell import CommandError, run, say

NODE_NAME = "kubeledger-node"
NAMESPACES = "node-namespaces"
# In start order.
PROCESSES = (NAMESPACES, "registry", "containerd", "kubelet", "kube-proxy")
# Fixed ports are fine: each node has a network namespace of its own.
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
PROXY_HEALTHZ_PORT = 10256
# Paths bind-mounted to the node's own directories in its mount namespace: those the
# kubelet and containerd use whatever they are configured with (containerd also makes
# /run/containerd/fifo and /run/containerd/runc), and the shims' short socket directory.
PRIVATE_PATHS = {
    "/var/lib/kubelet": "var-lib-kubelet",
    "/var/log/containers": "var-log-containers",
    "/var/lib/cni": "var-lib-cni",
    containerd.SHIM_SOCKET_DIR: "containerd-shims",
}
CGROUP_FS = Path("/sys/fs/cgroup")


class Node:
    """The node of one stack, living in ``directory``."""

    def __init__(
        self, directory: Path, processes: ProcessTable, plan: AddressPlan, pki: Pki,
        apiserver_url: str,
    ) -> None:
        self.directory = directory
        self.processes = processes
        self.plan = plan
        self.pki = pki
        self.apiserver_url = apiserver_url
        self.runtime = containerd.Runtime(directory / "containerd", plan)

    @property
    def cgroup_root(self) -> str:
        """The kubelet's cgroup root; per node, or each kubelet would reap the other's pods."""
        return f"/kubeledger-{self.plan.host_link}"

    # -- starting ---------------------------------------------------------------------------

    def start_namespaces(self) -> int:
        """Starts the namespace process unless it runs; returns its PID."""
        running = self.processes.running(NAMESPACES)
        if running:
            return running
        if any(self.processes.running(name) for name in PROCESSES):
            say("the node's namespace process is gone: stopping what ran inside it")
            self.stop()
        say("starting the node's mount and network namespaces")
        pid = self.processes.start(NAMESPACES, [
            "unshare", "--mount", "--propagation", "private", "--net", "--",
            "sleep", "infinity"])
        own = Path("/proc/self/ns/net").readlink()
        _poll(lambda: _namespace(pid, "net") not in (own, None), "the node's namespaces")
        try:
            for path, name in PRIVATE_PATHS.items():
                source = self.directory / name
                source.mkdir(parents=True, exist_ok=True)
                Path(path).mkdir(parents=True, exist_ok=True)  # the mount point, empty
                run([*self._inside(mount_only=True), "mount", "--bind", str(source), path])
        except CommandError:
            self.processes.stop(NAMESPACES)
            raise
        return pid

    def start_registry(self) -> None:
        if self.processes.running("registry"):
            return
        say(f"starting the node's registry on {containerd.REGISTRY_ADDRESS} (node namespace)")
        registry = containerd.Registry(self.directory / "registry")
        self.processes.start("registry", [*self._inside(), *registry.argv()])

    def start_containerd(self) -> None:
        if self.processes.running("containerd"):
            return
        say(f"starting containerd {containerd.CONTAINERD_VERSION} ({self.runtime.socket})")
        self.processes.start("containerd", [*self._inside(), *self.runtime.argv()])
        wait_until(self._containerd_answers, "containerd", self.processes, "containerd")

    def import_image(self, archive: Path) -> None:
        """Imports an OCI (or docker) archive into the CRI's image store; names come from it."""
        say(f"importing {archive.name} into containerd")
        run(self.runtime.ctr("images", "import", "--all-platforms", str(archive)))

    def tag_image(self, image: str, tag: str) -> None:
        run(self.runtime.ctr("images", "tag", "--force", image, tag))

    def start_kubelet(self) -> None:
        if self.processes.running("kubelet"):
            return
        self._make_cgroup_root()
        config = self._write_kubelet_config()
        kubeconfig = self.directory / "kubelet.kubeconfig"
        kubeconfigs.write(kubeconfig, kubeconfigs.kubeconfig_text(
            server=self.apiserver_url, ca=self.pki.ca_cert,
            users={"kubelet": kubeconfigs.cert_user(self.pki, "kubelet")}))
        say(f"starting the kubelet (node {NODE_NAME}, {self.plan.node_address})")
        self.processes.start("kubelet", [
            *self._inside(), str(kubernetes.kubernetes_bin() / "kubelet"),
            f"--config={config}", f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.directory / 'kubelet'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.plan.node_address}",
        ])
        healthz = f"http://{self.plan.node_address}:{KUBELET_HEALTHZ_PORT}/healthz"
        wait_until(lambda: http_ok(healthz), "kubelet", self.processes, "kubelet")

    def start_kube_proxy(self) -> None:
        if self.processes.running("kube-proxy"):
            return
        kubeconfig = self.directory / "kube-proxy.kubeconfig"
        kubeconfigs.write(kubeconfig, kubeconfigs.kubeconfig_text(
            server=self.apiserver_url, ca=self.pki.ca_cert,
            users={"kube-proxy": kubeconfigs.cert_user(self.pki, "kube-proxy")}))
        config = self.directory / "kube-proxy.yaml"
        config.write_text(json.dumps(self._kube_proxy_config(kubeconfig), indent=2) + "\n")
        say("starting kube-proxy (iptables mode, node namespace)")
        self.processes.start("kube-proxy", [
            *self._inside(), str(kubernetes.kubernetes_bin() / "kube-proxy"),
            f"--config={config}"])
        healthz = f"http://{self.plan.node_address}:{PROXY_HEALTHZ_PORT}/healthz"
        wait_until(lambda: http_ok(healthz), "kube-proxy", self.processes, "kube-proxy")

    def wait_ready(self, kubeconfig: Path) -> None:
        """Waits for the Node to be Ready; checks it got the pod CIDR the CNI config uses."""
        kubectl = [str(kubernetes.kubectl()), "--kubeconfig", str(kubeconfig)]
        seen: dict[str, Any] = {}

        def ready() -> bool:
            found = subprocess.run([*kubectl, "get", "node", NODE_NAME, "-o", "json"],
                                   capture_output=True, text=True, check=False)
            if found.returncode != 0:
                return False
            seen.update(json.loads(found.stdout))
            conditions = {c["type"]: c["status"] for c in seen["status"].get("conditions", [])}
            return conditions.get("Ready") == "True" and bool(seen["spec"].get("podCIDR"))

        wait_until(ready, f"node {NODE_NAME}", self.processes, "kubelet")
        cidr = seen["spec"]["podCIDR"]
        if cidr != self.plan.pod_cidr:
            raise RuntimeError(f"node {NODE_NAME} got pod CIDR {cidr}, the CNI config uses "
                               f"{self.plan.pod_cidr}: delete the Node object and start again")

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stops the node and removes its pods, mounts and cgroups; returns what it stopped."""
        # Whichever of the node's processes still lives tells which namespace to empty.
        members = [pid for name in PROCESSES if (pid := self.processes.running(name))]
        namespace = _namespace(members[0], "mnt") if members else None
        stopped = [name for name in ("kube-proxy", "kubelet") if self.processes.stop(name)]
        if self.processes.running("containerd"):
            self._remove_pods()
        if self.processes.running(NAMESPACES):
            self._clean_up_kube_proxy_rules()
        stopped += [name for name in ("containerd", "registry") if self.processes.stop(name)]
        if namespace is not None:
            _end_processes_in(namespace, spare=self.processes.running(NAMESPACES))
        if self.processes.stop(NAMESPACES):
            stopped.append(NAMESPACES)
        self._remove_cgroups()
        return stopped

    def _remove_pods(self) -> None:
        """Removes every pod sandbox (and its network setup) while containerd still runs."""
        try:
            run(self.runtime.crictl("rmp", "--all", "--force"))
        except CommandError as error:
            say(f"removing the pods failed; ending their processes instead: {error}")

    def _clean_up_kube_proxy_rules(self) -> None:
        # The namespace's tables die with it; cleaning first keeps the order a real node has.
        try:
            run([*self._inside(), str(kubernetes.kubernetes_bin() / "kube-proxy"), "--cleanup"])
        except CommandError as error:
            say(f"kube-proxy --cleanup reported: {str(error).splitlines()[0]}")

    # -- helpers ----------------------------------------------------------------------------

    def _inside(self, *, mount_only: bool = False) -> list[str]:
        """The argv prefix that runs a command in the node's namespaces."""
        pid = self.processes.running(NAMESPACES)
        if pid is None:
            raise RuntimeError("the node's namespace process is not running")
        return ["nsenter", f"--target={pid}", "--mount", *([] if mount_only else ["--net"]),
                "--"]

    def _containerd_answers(self) -> bool:
        if not self.runtime.socket.exists():
            return False
        probe = subprocess.run(self.runtime.ctr("version"), capture_output=True, check=False)
        return probe.returncode == 0

    def _write_kubelet_config(self) -> Path:
        for sub in ("pod-logs", "volume-plugins", "kubelet"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        resolv = self.directory / "resolv.conf"
        # No cluster DNS and no way out: names fail at once instead of timing out.
        resolv.write_text("nameserver 127.0.0.1\noptions ndots:1 timeout:1 attempts:1\n")
        plan = self.plan
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": plan.node_address,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": plan.node_address,
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "tlsCertFile": str(self.pki.path("kubelet-serving.crt")),
            "tlsPrivateKeyFile": str(self.pki.path("kubelet-serving.key")),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": self.runtime.endpoint,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_root,
            # This machine runs cgroup v1; 1.35+ refuses it unless told otherwise.
            "failCgroupV1": False,
            "failSwapOn": False,
            # The default (1000000) needs CAP_SYS_RESOURCE, which root lacks here.
            "maxOpenFiles": 20000,
            "protectKernelDefaults": False,
            "resolvConf": str(resolv),
            "podLogsDir": str(self.directory / "pod-logs"),
            "volumePluginDir": str(self.directory / "volume-plugins"),
            "clusterDomain": "cluster.local",
            "serializeImagePulls": False,
            # Imported images cannot be pulled again: never collect them, and never evict
            # pods because a shared CI disk is fuller than a production node's would be.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "shutdownGracePeriod": "0s",
        }
        path = self.directory / "kubelet.yaml"
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def _kube_proxy_config(self, kubeconfig: Path) -> dict[str, object]:
        plan = self.plan
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": plan.cluster_cidr,
            "bindAddress": plan.node_address,
            "healthzBindAddress": f"{plan.node_address}:{PROXY_HEALTHZ_PORT}",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": ["primary"],
            "iptables": {"localhostNodePorts": False},
            # Zero means "leave the kernel's setting alone": kube-proxy changes no sysctl.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s",
                          "udpStreamTimeout": "0s"},
        }

    def _cgroup_dirs(self) -> list[Path]:
        """This node's cgroup root in every mounted hierarchy (v1 controllers and unified)."""
        roots = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            _, mount_point, fs_type, *_ = line.split()
            if fs_type in ("cgroup", "cgroup2") and mount_point.startswith(str(CGROUP_FS)):
                roots.append(Path(mount_point) / self.cgroup_root.lstrip("/"))
        return roots

    def _make_cgroup_root(self) -> None:
        for path in self._cgroup_dirs():
            path.mkdir(exist_ok=True)

    def _remove_cgroups(self) -> None:
        roots = [root for root in self._cgroup_dirs() if root.is_dir()]
        # A pod sandbox whose shim went down with containerd lives on in the node's
        # cgroups (in a mount namespace of its own); a cgroup with a task cannot go.
        for pid in sorted({pid for root in roots for pid in _tasks_under(root)}):
            terminate(pid, grace=2)
        for root in roots:
            # Deepest first: a cgroup goes only once its children have.
            for path in sorted((p for p in root.rglob("*") if p.is_dir()),
                               key=lambda p: len(p.parts), reverse=True):
                _rmdir_cgroup(path)
            _rmdir_cgroup(root)


def _tasks_under(root: Path) -> set[int]:
    """The PIDs of every process in the cgroup ``root`` or below it."""
    tasks: set[int] = set()
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            tasks.update(int(line) for line in procs.read_text().split())
    return tasks


def _rmdir_cgroup(path: Path) -> None:
    # A cgroup's last task may take a moment to leave after it was killed.
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    say(f"could not remove cgroup {path}")


def _namespace(pid: int, kind: str) -> Path | None:
    try:
        return Path(f"/proc/{pid}/ns/{kind}").readlink()
    except OSError:
        return None


def _end_processes_in(namespace: Path, spare: int | None) -> None:
    """Ends, by PID, every process left in the node's mount namespace (shims, containers)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == spare:
            continue
        if _namespace(int(entry.name), "mnt") == namespace:
            with contextlib.suppress(OSError):
                terminate(int(entry.name), grace=5)


def _poll(ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)
