"""Command line of the local stack: ``python -m stack {install,up,down,status} [DIR]``.

The Makefile's ``dev-up``/``dev-down`` call this with DIR ``.dev``; ``up --operator``
also starts ``kubeledger run`` against the stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stack import cache, install
from stack.cluster import Stack
from stack.shell import CommandError

USAGE_AFTER_UP = """\
The local stack is up ({directory}).
  set -a; . {directory}/env; set +a  # KUBECONFIG, ELASTICSEARCH_URL/USERNAME/PASSWORD, ...
  export PATH={kubectl_dir}:$PATH  # kubectl {version}, matching the apiserver
  kubectl --context alice -n demo create deployment web --image=nginx:1.25
  kubectl get auditrecords
  curl -u "$ELASTICSEARCH_USERNAME:$ELASTICSEARCH_PASSWORD" \\
    "$ELASTICSEARCH_URL/_nodes/_local?filter_path=nodes.*.version"
Logs: {directory}/logs/   PIDs: {directory}/run/   Stop everything: make dev-down
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install and build what the stack needs, nothing else")
    for name, text in (("up", "start what is not running"), ("down", "stop every process"),
                       ("status", "list running processes")):
        command = commands.add_parser(name, help=text)
        command.add_argument("directory", type=Path, nargs="?", default=Path(".dev"))
        if name == "up":
            command.add_argument("--operator", action="store_true",
                                 help="also run the operator (kubeledger run) against the stack")
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
        endpoints = stack.up()
        if args.operator:
            stack.start_operator(endpoints)
        print(USAGE_AFTER_UP.format(directory=args.directory, kubectl_dir=cache.kubernetes_bin(),
                                    version=cache.KUBERNETES_VERSION))
    elif args.command == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        for name, pid in stack.status().items():
            print(f"{name:<24} {pid or 'stopped'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
