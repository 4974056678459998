"""``kubeledger report``: how delivery went over a time window, per namespace and workload.

Deployments, rollbacks, failed rollouts, failed changes, the change failure rate and the
median time to restore, computed by ``core.insights`` from the AuditRecords in the
cluster or, with ``--source elasticsearch``, from the records the documents carry (what
retention removed from the cluster included). The README's "Delivery report" says what
each figure means and how it is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from kubeledger.cli import connection, history, render, search
from kubeledger.cli.exits import OK, USAGE, CommandError
from kubeledger.core import insights, kinds, model
from kubeledger.core.model import RecordSpec
from kubeledger.kube.api import Kubernetes

OUTPUTS = ("table", "json")
DEFAULT_SINCE = "7d"
HEADERS = ("NAMESPACE", "WORKLOAD", "DEPLOYMENTS", "ROLLBACKS", "FAILED-ROLLOUTS",
           "FAILED-CHANGES", "CHANGE-FAILURE-RATE", "MEDIAN-TIME-TO-RESTORE")
ALL = "*"  # the WORKLOAD of a namespace's row, and both columns of the total's
TOTAL = "TOTAL"


def add(commands: Any) -> None:
    parser = commands.add_parser(
        "report", help="delivery figures (deployments, rollbacks, failures, change failure "
                       "rate, time to restore) per namespace and workload",
        description=__doc__)
    parser.add_argument("--since", default=DEFAULT_SINCE, metavar="DURATION|TIME",
                        help="the window starts then: 30m, 24h, 7d (default), or a time "
                             "(2026-12-01T09:00:00Z); it ends now")
    parser.add_argument("--source", choices=history.SOURCES, default="cluster",
                        help="read the records in the cluster (default), or the documents "
                             "in Elasticsearch")
    connection.add_flags(parser, namespace_help="only this namespace (default: all)")
    search.add_flags(parser)
    parser.add_argument("-o", "--output", choices=OUTPUTS, default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Parsed here, not by argparse: a bad value is one line (argparse adds its usage).
    try:
        start = history.since(args.since)
    except argparse.ArgumentTypeError as error:
        raise CommandError(f"--since: {error}", USAGE) from None
    end = datetime.now(UTC)
    records = asyncio.run(_read(args))
    found = insights.report(_specs(records), since=start, until=end, namespace=args.namespace)
    if args.output == "json":
        window = {"since": render.time(start), "until": render.time(end),
                  "namespace": args.namespace, "source": args.source}
        print(render.structured(insights.as_wire(found, window=window), "json"))
        return OK
    print(render.table(HEADERS, rows(found)))
    if not found.workloads:
        print(f"no rollouts since {render.time(start)}", file=sys.stderr)
    return OK


async def _read(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.source == "elasticsearch":
        subject = {"namespace": args.namespace} if args.namespace else None
        return await search.checked_specs(args, subject=subject)
    cluster = connection.connect(args)
    return await connection.reading("AuditRecords", lambda: listed(cluster.api,
                                                                   args.namespace))


async def listed(api: Kubernetes, namespace: str | None) -> list[dict[str, Any]]:
    """The records (of one namespace's objects), each as its name and spec."""
    selector = None if namespace is None else f"{model.LABEL_SUBJECT_NAMESPACE}={namespace}"
    return await api.list(kinds.RECORDS, _named, label_selector=selector)


def _named(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": record["metadata"]["name"]}, "spec": record["spec"]}


def _specs(records: Iterable[Mapping[str, Any]]) -> list[RecordSpec]:
    """The records as the model reads them; one it cannot read is left out, and said so."""
    specs, unreadable = [], []
    for record in records:
        try:
            specs.append(RecordSpec.model_validate(record["spec"]))
        except ValidationError:
            unreadable.append(record["metadata"]["name"])
    if unreadable:
        print(f"left out {len(unreadable)} records this version cannot read (e.g. "
              f"{unreadable[0]})", file=sys.stderr)
    return specs


def rows(found: insights.Report) -> list[list[str]]:
    """A row per workload, then one per namespace (WORKLOAD ``*``), then the total."""
    table = [_row(where, f"{kind}/{name}", found.workloads[(where, kind, name)])
             for where, kind, name in insights.workload_keys(found)]
    table += [_row(where or ALL, ALL, found.namespaces[where]) for where in sorted(
        found.namespaces)]
    return [*table, _row(TOTAL, ALL, found.total)]


def _row(where: str, workload: str, figures: insights.Figures) -> list[str]:
    return [where, workload, str(figures.deployments), str(figures.rollbacks),
            str(figures.failed_rollouts), str(figures.failed_changes),
            render.percent(figures.change_failure_rate),
            render.duration(figures.median_time_to_restore)]
