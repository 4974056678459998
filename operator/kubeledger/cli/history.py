"""``kubeledger history KIND/NAME``: one object's timeline, read from its AuditRecords
or, with ``--source elasticsearch``, from the records its documents carry (the whole
history, retention's removals from the cluster included).

Records are found by their subject (labels in the cluster, fields in Elasticsearch), so
every life of the name (deleted and made again, each with its own uid) is in the
timeline, in time order. The filters (since, user, action) narrow what is printed; a
subject with no records at all is ``NOT_FOUND``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubeledger.cli import connection, render, search
from kubeledger.cli.exits import NOT_FOUND, OK, USAGE, CommandError
from kubeledger.core import kinds, model
from kubeledger.core.kinds import Resource
from kubeledger.kube.api import Kubernetes

# kubectl's short names for the kinds kubeledger audits.
SHORT_NAMES = {"deploy": "deployments", "ro": "rollouts", "sts": "statefulsets",
               "ds": "daemonsets"}
DURATION = re.compile(r"(\d+)([smhd])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
SOURCES = ("cluster", "elasticsearch")
HEADERS = ("TIME", "ACTION", "INITIATOR", "TOOL", "COMMIT", "CHANGES")

Entry = dict[str, Any]  # a record's name and spec, as ``-o json`` prints it


def add(commands: Any) -> None:
    parser = commands.add_parser(
        "history", help="one object's changes in time order, from its AuditRecords",
        description=__doc__)
    parser.add_argument("target", metavar="KIND/NAME",
                        help="e.g. deployment/web, clusterrole/admin")
    parser.add_argument("--source", choices=SOURCES, default="cluster",
                        help="read the records in the cluster (default), or every document "
                             "in Elasticsearch (the history retention removed from the "
                             "cluster too)")
    connection.add_flags(parser, namespace_help="the object's namespace (default: the "
                                                "context's, as kubectl)")
    search.add_flags(parser)
    parser.add_argument("-o", "--output", choices=render.OUTPUTS, default="table")
    parser.add_argument("--since", type=since, metavar="DURATION|TIME",
                        help="only changes after this: 30m, 24h, 7d, or a time "
                             "(2026-12-01T09:00:00Z)")
    parser.add_argument("--user", help="only changes by this initiator (username)")
    parser.add_argument("--action", choices=[action.value for action in model.Action],
                        metavar="ACTION", help="only this action (image-changed, scaled, ...)")
    parser.set_defaults(func=run)


def since(text: str) -> datetime:
    """``--since``: a duration back from now, or a point in time (UTC when no zone)."""
    duration = DURATION.fullmatch(text)
    if duration:
        amount, unit = duration.groups()
        return datetime.now(UTC) - timedelta(**{UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30m, 24h, 7d) nor a time "
            "(2026-12-01T09:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resolve(kind: str) -> Resource:
    """The audited resource a kubectl-style kind names (deployment, deploy, deployments)."""
    wanted = SHORT_NAMES.get(kind.lower(), kind.lower())
    for resource in kinds.every_audited():
        if wanted in (resource.kind.lower(), resource.plural,
                      f"{resource.plural}.{resource.group}", f"{resource.kind.lower()}."
                                                             f"{resource.group}"):
            return resource
    known = ", ".join(resource.kind.lower() for resource in kinds.every_audited())
    raise CommandError(f"{kind!r} is not a kind kubeledger audits ({known})", USAGE)


def run(args: argparse.Namespace) -> int:
    kind, slash, name = args.target.partition("/")
    if not slash or not kind or not name:
        raise CommandError(f"expected KIND/NAME (deployment/web), got {args.target!r}", USAGE)
    resource = resolve(kind)
    if args.source == "cluster":
        cluster = connection.connect(args)
        namespace = ((args.namespace or cluster.context_namespace) if resource.namespaced
                     else None)
        entries = asyncio.run(connection.reading(
            "AuditRecords", lambda: timeline(cluster.api, resource, namespace, name)))
    else:
        namespace = ((args.namespace or connection.context_namespace(args))
                     if resource.namespaced else None)
        entries = asyncio.run(searched_timeline(args, resource, namespace, name))
    where = f"{namespace}/" if namespace else ""
    if not entries:
        raise CommandError(f"no records of {resource.kind} {where}{name}", NOT_FOUND)
    shown = [entry for entry in entries if matches(entry, args)]
    if args.output != "table":
        print(render.structured(shown, args.output))
    elif shown:
        print(render.table(HEADERS, [row(entry) for entry in shown]))
    else:
        print(f"no records of {resource.kind} {where}{name} match", file=sys.stderr)
    return OK


async def timeline(api: Kubernetes, resource: Resource, namespace: str | None,
                   name: str) -> list[Entry]:
    """Every record of the object called ``name``, oldest first (lives in turn)."""
    selector = ",".join(f"{key}={value}" for key, value in {
        model.LABEL_SUBJECT_KIND: resource.kind,
        model.LABEL_SUBJECT_NAMESPACE: namespace or "",
        model.LABEL_SUBJECT_NAME: model.label_value(name),
    }.items())
    found: list[Entry] = await api.list(kinds.RECORDS, entry, label_selector=selector)
    # A label holds at most 63 characters of the name: the spec has all of it.
    return in_time_order(each for each in found if each["subject"]["name"] == name)


def in_time_order(entries: Iterable[Entry]) -> list[Entry]:
    """Oldest first; records of one instant in chain order."""
    return sorted(entries, key=lambda each: (moment(each),
                                             each.get("chain", {}).get("sequence", 0)))


async def searched_timeline(args: argparse.Namespace, resource: Resource,
                            namespace: str | None, name: str) -> list[Entry]:
    """The object's timeline from Elasticsearch, read from the records its documents
    carry; a document that fails its check is left out, and said so."""
    subject = {"kind": resource.kind, "name": name, **({"namespace": namespace}
                                                        if namespace else {})}
    return in_time_order(entry(record) for record in await search.checked_specs(
        args, subject=subject))


def entry(record: Mapping[str, Any]) -> Entry:
    """What the timeline keeps of a record: its name and spec, not the snapshot."""
    spec = {key: value for key, value in record["spec"].items() if key != "snapshot"}
    return {"record": record["metadata"]["name"], **spec}


def matches(each: Entry, args: argparse.Namespace) -> bool:
    if args.since and moment(each) < args.since:
        return False
    if args.user and (each.get("initiator") or {}).get("username") != args.user:
        return False
    return not args.action or each["action"] == args.action


def moment(each: Entry) -> datetime:
    return datetime.fromisoformat(each["observedAt"])


def row(each: Entry) -> list[str]:
    tool = (each.get("initiator") or {}).get("tool") or render.NONE
    return [render.time(moment(each)), each["action"], render.initiator(each), tool,
            render.short_commit(each), render.summary(each)]
