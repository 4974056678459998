"""The ``kubeledger`` command: ``run`` the operator, ``verify`` the trail, print the ``version``.

Errors a user can fix (bad configuration, a missing CRD, a broken chain) end with one
line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from importlib import metadata

from kubeledger import config, logs
from kubeledger.core import chain, kinds
from kubeledger.kube import api, errors
from kubeledger.kube.client import KubeClient, load_client
from kubeledger.recording import retention

EXIT_BROKEN_CHAIN = 1
EXIT_CANNOT_START = 1
EXIT_USAGE = 2
EXIT_LEADERSHIP_LOST = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubeledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (watches the cluster of KUBECONFIG "
                                          "or the pod's service account)")
    run.add_argument("--liveness", metavar="URL",
                     help="serve liveness, e.g. http://0.0.0.0:8080/healthz: 503 when the "
                          "event loop stalls or a background task keeps failing")
    run.add_argument("--readiness", metavar="URL",
                     help="serve readiness, e.g. http://0.0.0.0:8081/readyz: 200 once the "
                          "receivers serve and the CRD is in place (the writer: also once "
                          "every watch has listed its kind, so changes are recorded live)")
    run.add_argument("--metrics", metavar="URL",
                     help="serve Prometheus metrics, e.g. http://0.0.0.0:8082/metrics")
    run.add_argument("--log-format", choices=logs.LOG_FORMATS, default="auto",
                     help="json (one object per line), text, or auto: text on a terminal, "
                          "else json (default)")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    verify = commands.add_parser(
        "verify", help="check the hash chain of the AuditRecords in the cluster")
    verify.add_argument("--namespace", default=os.environ.get("KUBELEDGER_NAMESPACE",
                                                               "kubeledger"),
                        help="the operator's namespace (where its retention watermark is)")
    commands.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(metadata.version("kubeledger"))
        return 0
    if args.command == "verify":
        try:
            return asyncio.run(_verify(args.namespace))
        except errors.KubeError as error:
            print(f"kubeledger: cannot read the records: {error}", file=sys.stderr)
            return EXIT_USAGE
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    # kopf comes with the handlers: `verify` and `version` must not pay for importing it,
    # nor for the servers every replica runs.
    from kubeledger import watching  # noqa: PLC0415
    from kubeledger.replica import Endpoints  # noqa: PLC0415

    try:
        settings = config.load()
    except config.ConfigError as error:
        print(f"kubeledger: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ended = watching.run(settings, Endpoints(args.liveness, args.readiness, args.metrics),
                             log_format=args.log_format, verbose=args.verbose)
    except Exception as error:  # kopf's start-up failure wraps the cause we raised
        cause = error.__cause__ or error
        print(f"kubeledger: cannot start: {cause}", file=sys.stderr)
        return EXIT_CANNOT_START
    if ended == watching.LEADERSHIP_LOST:
        print("kubeledger: lost the leadership and stopped writing; exiting, to start "
              "again as a standby", file=sys.stderr)
        return EXIT_LEADERSHIP_LOST
    return 0


async def _verify(namespace: str) -> int:
    client = KubeClient(load_client(), timeout_seconds=config.DEFAULT_API_TIMEOUT_SECONDS)
    records = await api.list_all(client, kinds.RECORDS)
    if records is None:
        print("kubeledger: the AuditRecord CRD is not installed", file=sys.stderr)
        return EXIT_USAGE
    pruned_through = await retention.pruned_through(client, namespace)
    verdict = chain.verify(((r["metadata"]["name"], r["spec"]) for r in records),
                           pruned_through=pruned_through)
    span = (f"sequence {verdict.first_sequence}..{verdict.last_sequence}"
            if verdict.checked else "no records")
    for finding in verdict.findings:
        print(f"BROKEN  #{finding.sequence} {finding.name}: {finding.problem}")
    pruned = (f"; {verdict.pruned} earlier records removed after delivery (retention), "
              "see Elasticsearch" if verdict.pruned else "")
    lost = (f"; sequence {', '.join(map(str, verdict.lost))} sealed but never written, "
            "as a later record declares" if verdict.lost else "")
    print(f"checked {verdict.checked} records ({span}{pruned}{lost}): "
          f"{'intact' if verdict.intact else f'{len(verdict.findings)} problems'}")
    return 0 if verdict.intact else EXIT_BROKEN_CHAIN


if __name__ == "__main__":
    sys.exit(main())
