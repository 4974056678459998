"""``kubeledger verify``: walks the hash chain of the trail, in the cluster, in
Elasticsearch, or both.

Reports every problem by sequence number (missing, altered, reordered, a sequence used
twice) and exits ``PROBLEMS``. In the cluster, gaps up to the retention watermark
(records removed after delivery) and sequence numbers a later record declares lost are
accepted and counted. Elasticsearch keeps the whole history: each document is checked
against the record it carries, and the chain from sequence 1. ``both`` also checks
that the two copies agree, which finds what neither shows alone: a cluster chain
rebuilt from scratch, or its newest records removed.

Wherever Elasticsearch is configured, each chain read is also held against the
checkpoints the operator wrote there: a chain rebuilt from scratch or cut short
disagrees with them, even when Elasticsearch's own copy is not compared. With
``--checkpoint-key``, only checkpoints signed with that key vouch for anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeledger import config
from kubeledger.cli import connection, search
from kubeledger.cli.exits import NO_ACCESS, OK, PROBLEMS, USAGE, CommandError
from kubeledger.core import chain, checkpoints, kinds, record_index
from kubeledger.kube import api
from kubeledger.recording import retention

DEFAULT_NAMESPACE = "kubeledger"
SOURCES = ("cluster", "elasticsearch", "both")
Links = dict[int, tuple[str, str]]  # sequence -> (record name, hash)


@dataclass(frozen=True)
class Chain:
    """One copy of the chain as read: where, its links, and whose (None: not known)."""

    where: str
    links: Links
    pruned_through: int
    cluster: str | None


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
    parser.add_argument("--checkpoint-key", metavar="FILE", type=Path,
                        help="the key the operator signs checkpoints with: only checkpoints "
                             "it signed count (default: any checkpoint counts)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = checkpoint_key(args)
    intact = True
    chains: list[Chain] = []
    if args.source in ("cluster", "both"):
        ok, in_cluster = verify_cluster(args)
        intact &= ok
        chains.append(in_cluster)
    if args.source in ("elasticsearch", "both"):
        ok, copy = asyncio.run(verify_elasticsearch(args))
        intact &= ok
        chains.append(copy)
    if args.source == "both":
        intact &= compare(*chains)
    if search.configured(args):
        intact &= asyncio.run(verify_checkpoints(args, chains, key))
    else:
        print("checkpoints not checked: no Elasticsearch configured (ELASTICSEARCH_URL or "
              "--elasticsearch-url)")
    return OK if intact else PROBLEMS


def checkpoint_key(args: argparse.Namespace) -> bytes | None:
    if args.checkpoint_key is None:
        return None
    if not search.configured(args):
        raise CommandError("--checkpoint-key checks the checkpoints in Elasticsearch: set "
                           "ELASTICSEARCH_URL or pass --elasticsearch-url", USAGE)
    try:
        return config.read_checkpoint_key(args.checkpoint_key)
    except ValueError as error:
        raise CommandError(str(error), USAGE) from None


def compare(in_cluster: Chain, copy: Chain) -> bool:
    compared = chain.compare(in_cluster.links, copy.links,
                             pruned_through=in_cluster.pruned_through)
    report(compared.findings)
    waiting = (f"; {compared.undelivered} newest records not delivered yet"
               if compared.undelivered else "")
    print(f"compared the cluster with Elasticsearch{waiting}: "
          f"{'they agree' if not compared.findings else 'they disagree'}")
    return not compared.findings


async def verify_checkpoints(args: argparse.Namespace, chains: list[Chain],
                             key: bytes | None) -> bool:
    """Holds each chain read against the checkpoints of its cluster."""
    known = next((each.cluster for each in chains if each.cluster), None)
    cluster, found = await search.checkpoints(args, known)
    points = [each for each in found if isinstance(each, checkpoints.Checkpoint)]
    unreadable = [chain.Finding(0, each, "is no checkpoint (altered in Elasticsearch)")
                  for each in found if isinstance(each, str)]
    report(unreadable)
    if not points:
        print(f"no checkpoints in Elasticsearch for cluster {cluster} yet: nothing to hold "
              "the chain against")
        return not unreadable
    intact = not unreadable
    signed = f", {len(points)} signatures checked" if key is not None else ""
    for each in chains:
        held = checkpoints.check(each.links, points, pruned_through=each.pruned_through,
                                 key=key)
        report(held.findings)
        before = (f"; {held.before_retention} of records removed by retention"
                  if held.before_retention else "")
        verdict = "they agree" if not held.findings else f"{len(held.findings)} problems"
        print(f"checked {each.where} against {len(points)} checkpoints of cluster {cluster} "
              f"({held.matched} matched{before}{signed}): {verdict}")
        intact &= not held.findings
    return intact


def verify_cluster(args: argparse.Namespace) -> tuple[bool, Chain]:
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
    # A starting writer reads the index in place of the spec: it must stand for it.
    misindexed = [chain.Finding((r["spec"].get("chain") or {}).get("sequence", 0),
                                r["metadata"]["name"], problem)
                  for r in records
                  if (problem := record_index.mismatch(r["metadata"], r["spec"]))]
    findings = sorted([*verdict.findings, *misindexed], key=lambda finding: finding.sequence)
    report(findings)
    pruned = (f"; {verdict.pruned} earlier records removed after delivery (retention), "
              "see Elasticsearch" if verdict.pruned else "")
    print(summary(verdict, "records", "", pruned, problems=len(findings)))
    whose = next((str(spec["cluster"]) for _, spec in pairs if spec.get("cluster")), None)
    return not findings, Chain("the cluster's chain", links(pairs), pruned_through, whose)


async def verify_elasticsearch(args: argparse.Namespace) -> tuple[bool, Chain]:
    name, found = await search.documents(args)
    unreadable = [chain.Finding(each.sequence or 0, each.name, each.problem)
                  for each in found if each.problem]
    pairs = [(each.name, each.spec) for each in found if each.spec is not None]
    verdict = chain.verify(pairs)
    findings = sorted([*unreadable, *verdict.findings], key=lambda finding: finding.sequence)
    report(findings)
    print(summary(verdict, "documents", f" in Elasticsearch (cluster {name})", "",
                  problems=len(findings)))
    return not findings, Chain("Elasticsearch's chain", links(pairs), 0, name)


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
