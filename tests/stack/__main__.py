"""Command line of the local stack: ``python -m stack {install,up,down,status} [DIR]``.

The Makefile's ``dev-up``/``dev-down`` call this with DIR ``.dev``. ``up --operator
cluster`` installs the operator the way users do (its image, through its chart) and
returns once it records changes live; ``--operator host`` runs ``kubeledger run`` as a
process on this machine instead (the fast loop while developing). Only one of the two
ever runs: the hash chain has one writer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stack import cache, images, install, kubernetes, release
from stack.cluster import Endpoints, Stack
from stack.shell import CommandError, say

USAGE_AFTER_UP = """\
The local stack is up ({directory}): Kubernetes {version} with one node, Elasticsearch{operator}.
  set -a; . {directory}/env; set +a  # KUBECONFIG, ELASTICSEARCH_*, TEST_IMAGE, ...
  export PATH={kubectl_dir}:$PATH  # kubectl {version}, matching the apiserver
  kubectl --context alice -n demo create deployment web --image=$TEST_IMAGE
  kubectl get auditrecords
  curl --cacert "$ELASTICSEARCH_CA_CERTS" -u "$ELASTICSEARCH_USERNAME:$ELASTICSEARCH_PASSWORD" \\
    "$ELASTICSEARCH_URL/_nodes/_local?filter_path=nodes.*.version"
Logs: {directory}/logs/   PIDs: {directory}/run/   Stop everything: make dev-down
"""
OPERATOR_MODES = ("cluster", "host", "none")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install and build what the stack needs, nothing else")
    for name, text in (("up", "start what is not running"), ("down", "stop everything"),
                       ("purge", "stop everything and remove the stack's data"),
                       ("status", "list running processes")):
        command = commands.add_parser(name, help=text)
        command.add_argument("directory", type=Path, nargs="?", default=Path(".dev"))
        if name == "up":
            command.add_argument(
                "--operator", choices=OPERATOR_MODES, default="none",
                help="cluster: install the chart with the image built from the Dockerfile; "
                     "host: run `kubeledger run` on this machine; none: no operator")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (CommandError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "install":
        install.ensure_all()
        return 0
    stack = Stack(args.directory)
    if args.command == "up":
        _up(stack, args.operator)
    elif args.command in ("down", "purge"):
        stopped = stack.down() if args.command == "down" else stack.purge()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        for name, pid in stack.status().items():
            print(f"{name:<24} {pid or 'stopped'}")
    return 0


def _up(stack: Stack, mode: str) -> None:
    endpoints = stack.up()
    extra = {"TEST_IMAGE": images.TEST_IMAGES[0], "TEST_IMAGE_2": images.TEST_IMAGES[1]}
    in_cluster = release.Release(stack, endpoints)
    if mode == "cluster":
        stack.processes.stop("operator")
        in_cluster.install()
        extra["KUBELEDGER_DEPLOYMENT"] = release.DEPLOYMENT
        described = f", the operator from its chart ({in_cluster.image})"
    elif mode == "host":
        if in_cluster.installed():
            say("uninstalling the chart's operator first: the chain has one writer")
            in_cluster.uninstall()
        endpoints = stack.up(audit_target=stack.host_audit_target())
        stack.start_operator(endpoints)
        described = ", the operator as a host process"
    else:
        described = ""
    _add_to_env(endpoints, extra)
    print(USAGE_AFTER_UP.format(directory=stack.directory, operator=described,
                                kubectl_dir=kubernetes.kubernetes_bin(),
                                version=cache.kubernetes_version()))


def _add_to_env(endpoints: Endpoints, extra: dict[str, str]) -> None:
    env_file = endpoints.directory / "env"
    kept = [line for line in env_file.read_text().splitlines()
            if line.split("=", 1)[0] not in extra]
    env_file.write_text("\n".join([*kept, *(f"{k}={v}" for k, v in extra.items())]) + "\n")


if __name__ == "__main__":
    sys.exit(main())
