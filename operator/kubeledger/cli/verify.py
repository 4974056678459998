"""``kubeledger verify``: walks the hash chain of the trail, in the cluster, in
Elasticsearch, or both.

Reports every problem by sequence number (missing, altered, reordered, a sequence used
twice) and exits ``PROBLEMS``. In the cluster, gaps up to the retention watermark
(records removed after delivery) and sequence numbers a later record declares lost are
accepted and counted. Elasticsearch keeps the whole history: each document is checked
against the record it carries, and the chain from sequence 1. ``both`` also checks
that the two copies agree, which finds what neither shows alone: a cluster chain
rebuilt from scratch, or its newest records removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterable
from typing import Any

from kubeledger.cli import connection, search
from kubeledger.cli.exits import NO_ACCESS, OK, PROBLEMS, CommandError
from kubeledger.core import chain, kinds
from kubeledger.kube import api
from kubeledger.recording import retention

DEFAULT_NAMESPACE = "kubeledger"
SOURCES = ("cluster", "elasticsearch", "both")
Links = dict[int, tuple[str, str]]  # sequence -> (record name, hash)


def add(commands: Any) -> None:
    parser = commands.add_parser("verify", help="check the hash chain of the trail, in the "
                                                "cluster and/or Elasticsearch",
                                 description=__doc__)
    parser.add_argument("--source", choices=SOURCES, default="cluster",
                        help="where to read the trail (default: cluster)")
    connection.add_flags(parser, namespace_help="the operator's namespace, where its "
                                                "retention watermark is (default: "
                                                "KUBELEDGER_NAMESPACE, else kubeledger)")
    search.add_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    intact = True
    pruned_through = 0
    in_cluster: Links = {}
    if args.source in ("cluster", "both"):
        ok, in_cluster, pruned_through = verify_cluster(args)
        intact &= ok
    if args.source in ("elasticsearch", "both"):
        ok, copy = asyncio.run(verify_elasticsearch(args))
        intact &= ok
        if args.source == "both":
            compared = chain.compare(in_cluster, copy, pruned_through=pruned_through)
            report(compared.findings)
            waiting = (f"; {compared.undelivered} newest records not delivered yet"
                       if compared.undelivered else "")
            print(f"compared the cluster with Elasticsearch{waiting}: "
                  f"{'they agree' if not compared.findings else 'they disagree'}")
            intact &= not compared.findings
    return OK if intact else PROBLEMS


def verify_cluster(args: argparse.Namespace) -> tuple[bool, Links, int]:
    cluster = connection.connect(args)
    namespace = args.namespace or os.environ.get("KUBELEDGER_NAMESPACE", DEFAULT_NAMESPACE)

    async def read() -> tuple[list[dict[str, Any]] | None, int]:
        return (await api.list_all(cluster.api, kinds.RECORDS),
                await retention.pruned_through(cluster.api, namespace))

    records, pruned_through = asyncio.run(connection.reading("the records", read))
    if records is None:
        raise CommandError("the AuditRecord CRD is not installed", NO_ACCESS)
    pairs = [(r["metadata"]["name"], r["spec"]) for r in records]
    verdict = chain.verify(pairs, pruned_through=pruned_through)
    report(verdict.findings)
    pruned = (f"; {verdict.pruned} earlier records removed after delivery (retention), "
              "see Elasticsearch" if verdict.pruned else "")
    print(summary(verdict, "records", "", pruned))
    return verdict.intact, links(pairs), pruned_through


async def verify_elasticsearch(args: argparse.Namespace) -> tuple[bool, Links]:
    name, found = await search.documents(args)
    unreadable = [chain.Finding(each.sequence or 0, each.name, each.problem)
                  for each in found if each.problem]
    pairs = [(each.name, each.spec) for each in found if each.spec is not None]
    verdict = chain.verify(pairs)
    findings = sorted([*unreadable, *verdict.findings], key=lambda finding: finding.sequence)
    report(findings)
    print(summary(verdict, "documents", f" in Elasticsearch (cluster {name})", "",
                  problems=len(findings)))
    return not findings, links(pairs)


def links(pairs: Iterable[tuple[str, dict[str, Any]]]) -> Links:
    return {spec["chain"]["sequence"]: (name, spec["chain"].get("hash", ""))
            for name, spec in pairs if "chain" in spec}


def report(findings: Iterable[chain.Finding]) -> None:
    for finding in findings:
        print(f"BROKEN  #{finding.sequence} {finding.name}: {finding.problem}")


def summary(verdict: chain.Verdict, what: str, where: str, pruned: str, *,
            problems: int | None = None) -> str:
    count = len(verdict.findings) if problems is None else problems
    span = (f"sequence {verdict.first_sequence}..{verdict.last_sequence}"
            if verdict.checked else f"no {what}")
    lost = (f"; sequence {', '.join(map(str, verdict.lost))} sealed but never written, "
            "as a later record declares" if verdict.lost else "")
    return (f"checked {verdict.checked} {what}{where} ({span}{pruned}{lost}): "
            f"{'intact' if not count else f'{count} problems'}")
