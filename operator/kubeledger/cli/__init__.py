"""The ``kubeledger`` command, also ``kubectl ledger`` (installed as ``kubectl-ledger``).

``run`` the operator; ``verify`` the hash chain; read one object's ``history`` or
``show`` one record; ``report`` how delivery went; print the ``version``. The reading
commands take kubectl's ``--kubeconfig``, ``--context`` and ``-n``. A mistake a user
can fix ends with one line on stderr and an exit status of ``exits``, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from kubeledger.cli import exits, history, operate, report, show, verify

PLUGIN_NAME = "kubectl-ledger"
EPILOG = """exit status: 0 done; 1 the chain has problems (verify) or the operator cannot
start (run); 2 a mistake in the command line or the configuration; 3 the operator lost
the leadership (run); 4 nothing found (no such record, no records of that object);
5 the cluster cannot be read (no kubeconfig, unreachable, refused, no AuditRecord CRD)"""


def main(argv: list[str] | None = None) -> int:
    prog = "kubectl ledger" if Path(sys.argv[0]).name == PLUGIN_NAME else "kubeledger"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (operate, verify, history, show, report):
        command.add(commands)
    commands.add_parser("version", help="print the version").set_defaults(func=_version)
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except exits.CommandError as failure:
        print(f"{prog}: {failure}", file=sys.stderr)
        return failure.status
    return status


def _version(_: argparse.Namespace) -> int:
    print(metadata.version("kubeledger"))
    return exits.OK


if __name__ == "__main__":
    sys.exit(main())
