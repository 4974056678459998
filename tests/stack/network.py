"""The node's network: a private network namespace per stack, joined to the host by a veth pair.

The node's processes (containerd, the kubelet, kube-proxy, the local registry) run in a
network namespace of their own (held by ``node``'s namespace process). That is what lets
two stacks share a machine: kube-proxy rewrites whole iptables chains (``KUBE-SERVICES``
...) and ``kube-proxy --cleanup`` removes every ``KUBE-*`` chain, the kubelet adds its own
chains and listens on fixed ports, so on the host's tables two nodes would undo each
other. In its own namespace each node has its own tables and ports, and all of them
disappear with the namespace.

Each stack takes a *slot* N, claimed in ``cache.root()/slots`` and kept in its
``state.json``; the address plan follows from it (see ``AddressPlan``):

    host  klbN 10.(200+N).1.1/30  <-veth->  eth0 10.(200+N).1.2/30  node namespace
                                              pods0 10.(100+N).0.1/24  (the pods' bridge)

The host's side of the veth (``host_address``) is where the apiserver and Elasticsearch
listen for pods; the host reaches pod IPs and ClusterIPs by routes through the veth, and
kube-proxy's rules inside the namespace translate ClusterIPs. Nothing is forwarded on the
host: a ``mangle FORWARD`` DROP in both directions on ``klbN`` and the node namespace's lack
of a default route keep every packet of a pod on the machine; blackhole routes with a worse
metric catch pod and service addresses whenever the veth route is gone.

The kubelet changes a few global sysctls (``vm.overcommit_memory``, ``kernel.panic``,
``kernel.panic_on_oops``, ...: ``GLOBAL_SYSCTLS``); their values from before the first node
on the machine came up are saved in ``/run/kubeledger`` and restored when the last node
goes down. The host's ``net.ipv4.ip_forward`` is never needed (the node namespace has its
own) and is saved only to be sure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stack import cache
from stack.shell import CommandError, run

SLOTS = range(40)
HOST_LINK_PREFIX = "klb"
NODE_LINK = "eth0"
POD_BRIDGE = "pods0"
# What the kubelet sets (pkg/kubelet/cm: setupKernelTunables), and forwarding for safety.
GLOBAL_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic",
                  "kernel.panic_on_oops", "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
                  "net.ipv4.ip_forward")
SYSCTL_SAVE = Path("/run/kubeledger/sysctls-before-nodes.json")
# iptables-nft creates these on first use; empty ones are removed when the last node goes.
IPTABLES_NFT_TABLES = ("filter", "nat", "mangle", "raw", "security")


@dataclass(frozen=True)
class AddressPlan:
    """Names and addresses of one stack's node network, all derived from its slot."""

    slot: int

    @property
    def host_link(self) -> str:
        """The host's end of the veth pair; the node's end is ``eth0`` in its namespace."""
        return f"{HOST_LINK_PREFIX}{self.slot}"

    bridge = POD_BRIDGE

    @property
    def host_address(self) -> str:
        """The host's address pods reach: apiserver, Elasticsearch, host-run servers."""
        return f"10.{200 + self.slot}.1.1"

    @property
    def node_address(self) -> str:
        """The node's InternalIP: the kubelet's ``--node-ip`` and serving address."""
        return f"10.{200 + self.slot}.1.2"

    @property
    def link_cidr(self) -> str:
        return f"10.{200 + self.slot}.1.0/30"

    @property
    def gateway(self) -> str:
        """The pods' default gateway: the bridge's address in the node namespace."""
        return f"10.{100 + self.slot}.0.1"

    @property
    def cluster_cidr(self) -> str:
        return f"10.{100 + self.slot}.0.0/16"

    @property
    def pod_cidr(self) -> str:
        """The first /24 of the cluster CIDR: what kcm allocates to the first (only) node."""
        return f"10.{100 + self.slot}.0.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.{200 + self.slot}.0.0/24"

    def service_ip(self, n: int) -> str:
        """The ``n``-th address of the service CIDR (1 is the ``kubernetes`` Service)."""
        network = ipaddress.ip_network(self.service_cidr)
        if not 0 < n < network.num_addresses - 1:
            raise ValueError(f"{n} is outside {self.service_cidr}")
        return str(network[n])

    @property
    def reserved(self) -> tuple[str, ...]:
        """Every range this plan uses; none may already be in use on the machine."""
        return (f"10.{100 + self.slot}.0.0/16", f"10.{200 + self.slot}.0.0/16")


def claim_slot(stack_directory: Path) -> int:
    """Claims a slot no other stack holds and whose ranges nothing on the machine uses."""
    claims = _claims_dir()
    in_use = _networks_in_use()
    for slot in SLOTS:
        plan = AddressPlan(slot)
        if _claimed_by_other(slot, stack_directory) or _link_exists(plan.host_link):
            continue
        if any(ipaddress.ip_network(r).overlaps(used) for r in plan.reserved for used in in_use):
            continue
        claim = claims / str(slot)
        claim.unlink(missing_ok=True)  # stale (see _claimed_by_other)
        try:
            with claim.open("x") as mine:  # exclusive: two stacks starting at once
                mine.write(f"{stack_directory}\n")
        except FileExistsError:
            continue
        return slot
    raise RuntimeError(f"no free network slot in {claims} (all of {SLOTS} taken)")


def check_slot(slot: int, stack_directory: Path) -> None:
    """Refuses to run on a slot another stack has claimed since (its state was lost)."""
    if _claimed_by_other(slot, stack_directory):
        raise RuntimeError(f"network slot {slot} belongs to another stack (see "
                           f"{_claims_dir() / str(slot)}); remove {stack_directory} to start over")
    (_claims_dir() / str(slot)).write_text(f"{stack_directory}\n")


def _claims_dir() -> Path:
    path = cache.root() / "slots"
    path.mkdir(exist_ok=True)
    return path


def _claimed_by_other(slot: int, stack_directory: Path) -> bool:
    """A claim counts while its stack's directory exists and records no other slot.

    A stack that is just starting has no slot in its state.json yet: it counts too.
    """
    claim = _claims_dir() / str(slot)
    try:
        owner = Path(claim.read_text().strip())
    except OSError:
        return False
    if owner == stack_directory or not owner.is_dir():
        return False
    try:
        recorded = json.loads((owner / "state.json").read_text()).get("slot", slot)
    except (OSError, ValueError):
        return True
    return bool(recorded == slot)


class Network:
    """Sets up and removes one stack's node network; ``namespace_pid`` holds the namespace."""

    def __init__(self, plan: AddressPlan) -> None:
        self.plan = plan

    def up(self, namespace_pid: int) -> None:
        """Wires the node namespace to the host (idempotent: a live veth means it is done)."""
        _save_sysctls()
        plan = self.plan
        if _link_exists(plan.host_link) and not _link_exists(NODE_LINK, namespace_pid):
            # Left from a namespace process that died while something kept its namespace.
            run(["ip", "link", "del", plan.host_link])
        if not _link_exists(plan.host_link):
            self._create_links(namespace_pid)
        self._add_routes()
        for rule in self._guards():
            if not _iptables_has(rule):
                run(["iptables", "-t", "mangle", "-I", *rule])

    def down(self) -> None:
        """Removes what ``up`` made on the host; the namespace's own state dies with it."""
        plan = self.plan
        for rule in self._guards():
            while _iptables_has(rule):
                run(["iptables", "-t", "mangle", "-D", *rule])
        for route in self._routes():
            with contextlib.suppress(CommandError):
                run(["ip", "route", "del", *route])
        if _link_exists(plan.host_link):
            run(["ip", "link", "del", plan.host_link])
        if not _other_nodes_up():
            _remove_empty_nft_tables()
            _restore_sysctls()

    def _create_links(self, pid: int) -> None:
        plan = self.plan
        prefix = plan.link_cidr.split("/")[1]
        run(["ip", "link", "add", plan.host_link, "type", "veth",
             "peer", "name", NODE_LINK, "netns", str(pid)])
        run(["ip", "addr", "add", f"{plan.host_address}/{prefix}", "dev", plan.host_link])
        run(["ip", "link", "set", plan.host_link, "up"])
        inside = ["nsenter", f"--target={pid}", "--net", "--"]
        for argv in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{plan.node_address}/{prefix}", "dev", NODE_LINK],
            ["ip", "link", "set", NODE_LINK, "up"],
            # Created here, not by the CNI plugin, so the gateway exists before any pod.
            ["ip", "link", "add", POD_BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{plan.gateway}/24", "dev", POD_BRIDGE],
            ["ip", "link", "set", POD_BRIDGE, "up"],
            # The namespace routes between the bridge and the veth (its own setting).
            ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
            # A Service kube-proxy has not programmed yet drops packets silently, so the
            # sender's SYN retry finds it, instead of failing at once ("unreachable").
            ["ip", "route", "add", "blackhole", plan.service_cidr],
        ):
            run([*inside, *argv])

    def _routes(self) -> list[list[str]]:
        plan = self.plan
        via = ["via", plan.node_address, "dev", plan.host_link]
        # The blackholes, with a worse metric, only matter while the veth (and with it
        # the routes through it) is gone: pod and service addresses must never follow
        # the default route out of the machine.
        return [
            [plan.cluster_cidr, *via, "metric", "10"],
            [plan.service_cidr, *via, "metric", "10"],
            ["blackhole", plan.cluster_cidr, "metric", "1000"],
            ["blackhole", plan.service_cidr, "metric", "1000"],
        ]

    def _add_routes(self) -> None:
        for route in self._routes():
            run(["ip", "route", "replace", *route])

    def _guards(self) -> list[list[str]]:
        link = self.plan.host_link
        return [["FORWARD", "-i", link, "-j", "DROP"], ["FORWARD", "-o", link, "-j", "DROP"]]


def _link_exists(name: str, namespace_pid: int | None = None) -> bool:
    inside = ["nsenter", f"--target={namespace_pid}", "--net", "--"] if namespace_pid else []
    return subprocess.run([*inside, "ip", "link", "show", "dev", name], capture_output=True,
                          check=False).returncode == 0


def _other_nodes_up() -> bool:
    links = json.loads(_output(["ip", "-j", "link", "show"]))
    return any(str(link["ifname"]).startswith(HOST_LINK_PREFIX) for link in links)


def _networks_in_use() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in json.loads(_output(["ip", "-j", "-4", "addr", "show"])):
        for info in entry.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                             strict=False))
    for route in json.loads(_output(["ip", "-j", "-4", "route", "show", "table", "all"])):
        dst = route.get("dst", "")
        if dst and dst != "default" and dst[0].isdigit():
            used.append(ipaddress.ip_network(dst, strict=False))
    return used


def _iptables_has(rule: Sequence[str]) -> bool:
    return subprocess.run(["iptables", "-t", "mangle", "-C", *rule], capture_output=True,
                          check=False).returncode == 0


def _remove_empty_nft_tables() -> None:
    """Drops the tables iptables-nft made for the guards once they hold no rule."""
    ruleset = json.loads(_output(["nft", "-j", "list", "ruleset"]))["nftables"]
    with_rules = {(item["rule"]["family"], item["rule"]["table"])
                  for item in ruleset if "rule" in item}
    for item in ruleset:
        table = item.get("table")
        if table is None or table["name"] not in IPTABLES_NFT_TABLES:
            continue
        key = (table["family"], table["name"])
        if table["family"] in ("ip", "ip6") and key not in with_rules:
            run(["nft", "delete", "table", *key])


def _save_sysctls() -> None:
    if SYSCTL_SAVE.is_file():
        return  # another node (or an earlier run of this one) saved the originals
    values = {name: _output(["sysctl", "-n", name]).strip() for name in GLOBAL_SYSCTLS}
    SYSCTL_SAVE.parent.mkdir(parents=True, exist_ok=True)
    SYSCTL_SAVE.write_text(json.dumps(values, indent=2) + "\n")


def _restore_sysctls() -> None:
    if not SYSCTL_SAVE.is_file():
        return
    for name, value in json.loads(SYSCTL_SAVE.read_text()).items():
        run(["sysctl", "-q", "-w", f"{name}={value}"])
    SYSCTL_SAVE.unlink()
    with contextlib.suppress(OSError):
        SYSCTL_SAVE.parent.rmdir()


def _output(argv: Sequence[str]) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout
