"""``kubeledger show RECORD``: one AuditRecord, readable: what changed, who, why, where.

The record's name is what ``kubectl get auditrecords`` and ``kubeledger history -o json``
print (``auditrecord/NAME`` and ``auditrecord.kubeledger.io/NAME`` work too). ``-o json``
or ``yaml`` prints the whole record as stored, snapshot included.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubeledger.cli import connection, render
from kubeledger.cli.exits import NOT_FOUND, OK, CommandError
from kubeledger.core import kinds, model
from kubeledger.kube import errors

PREFIXES = (f"{model.KIND.lower()}/", f"{model.KIND.lower()}.{model.GROUP}/")
LABEL_WIDTH = 12


def add(commands: Any) -> None:
    parser = commands.add_parser("show", help="one AuditRecord: its diff, initiator, commit, "
                                              "chain position", description=__doc__)
    parser.add_argument("record", metavar="RECORD", help="the AuditRecord's name")
    connection.add_flags(parser, namespace_help="ignored: AuditRecords are cluster-scoped "
                                                "(accepted, as kubectl accepts it)")
    parser.add_argument("-o", "--output", choices=render.OUTPUTS, default="table",
                        help="table: readable text (default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    name = args.record
    for prefix in PREFIXES:
        name = name.removeprefix(prefix)
    cluster = connection.connect(args)

    async def read() -> dict[str, Any]:
        try:
            return await cluster.api.get(kinds.RECORDS, name)
        except errors.NotFound:
            # Tell a missing record from a missing CRD, which the listing says.
            await cluster.api.list(kinds.RECORDS, lambda _: None, label_selector="none=none")
            raise CommandError(f"no AuditRecord named {name!r}", NOT_FOUND) from None

    record = asyncio.run(connection.reading(f"AuditRecord {name}", read))
    print(render.structured(record, args.output) if args.output != "table"
          else describe(record["metadata"]["name"], record["spec"]))
    return OK


def describe(name: str, spec: Mapping[str, Any]) -> str:
    """The record as labelled lines, its changes as ``-`` old and ``+`` new values."""
    who = spec.get("initiator") or {}
    commit = spec.get("commit") or {}
    link = spec.get("chain") or {}
    lines = [
        ("Record", name),
        ("Time", f"{render.time(datetime.fromisoformat(spec['observedAt']))} "
                 f"({spec.get('observation', 'live')})"),
        ("Action", f"{spec['action']} (severity {spec['severity']})"),
        ("Subject", f"{render.subject(spec)} (uid {spec['subject']['uid']}, "
                    f"resourceVersion {spec['subject']['resourceVersion']})"),
        ("Initiator", initiator(who)),
        ("Commit", " ".join(part for part in (
            commit.get("sha") or render.NONE, commit.get("repository"),
            f"(from {commit.get('source', 'unresolved')})") if part)),
        ("Chain", f"#{link['sequence']}, previous {link['previousHash'][:16]}…, hash "
                  f"{link.get('hash', '')[:16]}…" if link else "not sealed"),
    ]
    if link.get("lost"):
        lines.append(("Declares", "sequence " + ", ".join(map(str, link["lost"]))
                      + " lost (sealed, never written)"))
    text = [f"{label + ':':<{LABEL_WIDTH}}{content}" for label, content in lines]
    if spec.get("reasons"):
        text += ["Reasons:", *(f"  {reason}" for reason in spec["reasons"])]
    changes = spec.get("changes") or []
    text.append(f"Changes:{'' if changes else ' none'}")
    for field in changes:
        text.append(f"  {field['path']}")
        if "old" in field:
            text.append(f"    - {render.value(field['old'], width=200)}")
        if "new" in field:
            text.append(f"    + {render.value(field['new'], width=200)}")
    if spec.get("changesTruncated"):
        text.append("  … more changes than a record holds (truncated)")
    return "\n".join(text)


def initiator(who: Mapping[str, Any]) -> str:
    """Who, whether verified, and every source the identity came from."""
    if not who.get("username"):
        return f"unknown (from {who.get('source', 'unresolved')})"
    parts = [str(who["username"]),
             f"{'verified' if who.get('verified') else 'not verified'}, from "
             f"{who.get('source', 'unresolved')}"]
    if who.get("tool"):
        parts.append(f"tool {who['tool']}")
    if who.get("impersonatedBy"):
        parts.append(f"impersonated by {who['impersonatedBy']}")
    if who.get("declared"):
        mismatch = " (does not match!)" if who.get("declaredMismatch") else ""
        parts.append(f"declared {who['declared']}{mismatch}")
    if who.get("groups"):
        parts.append(f"groups {', '.join(who['groups'])}")
    if who.get("sourceIPs"):
        parts.append(f"from {', '.join(who['sourceIPs'])}")
    return "; ".join(parts)
