"""``kubeledger verify``: walks the hash chain of the AuditRecords in the cluster.

Reports every problem by sequence number (missing, altered, reordered, a sequence used
twice) and exits ``PROBLEMS``; gaps up to the retention watermark (records removed after
delivery) and sequence numbers a later record declares lost are accepted and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from kubeledger.cli import connection
from kubeledger.cli.exits import NO_ACCESS, OK, PROBLEMS, CommandError
from kubeledger.core import chain, kinds
from kubeledger.kube import api
from kubeledger.recording import retention

DEFAULT_NAMESPACE = "kubeledger"


def add(commands: Any) -> None:
    parser = commands.add_parser("verify", help="check the hash chain of the AuditRecords "
                                                "in the cluster", description=__doc__)
    connection.add_flags(parser, namespace_help="the operator's namespace, where its "
                                                "retention watermark is (default: "
                                                "KUBELEDGER_NAMESPACE, else kubeledger)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cluster = connection.connect(args)
    namespace = args.namespace or os.environ.get("KUBELEDGER_NAMESPACE", DEFAULT_NAMESPACE)

    async def read() -> tuple[list[dict[str, Any]] | None, int]:
        return (await api.list_all(cluster.api, kinds.RECORDS),
                await retention.pruned_through(cluster.api, namespace))

    records, pruned_through = asyncio.run(connection.reading("the records", read))
    if records is None:
        raise CommandError("the AuditRecord CRD is not installed", NO_ACCESS)
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
    return OK if verdict.intact else PROBLEMS
