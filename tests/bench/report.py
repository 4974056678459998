"""What the stack bench prints: a table for people, then one JSON line for tools.

The JSON line is last, so ``make bench | tail -1`` is the figures. Its keys keep the
issue's names (``_10k``, ``_1k``) whatever the scale; ``objects`` and
``records_retained`` say which scale it was. Nothing is judged here: the figures depend
on the machine, which the table's title names.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from typing import Any

Figures = Mapping[str, float]

ROWS = (
    ("changes", "changes"), ("accepted_per_s", "apiserver accepted/s"),
    ("watch_s", "bare watch saw all (s)"), ("records_s", "every record (s)"),
    ("es_s", "every document (s)"),
    ("p50_record_ms", "p50 change->record ms"), ("p99_record_ms", "p99 change->record ms"),
    ("p50_es_ms", "p50 change->document ms"), ("p99_es_ms", "p99 change->document ms"),
    ("lost", "lost"), ("duplicates", "duplicates"), ("verified", "attributed, verified"),
    ("by_admission", "identity from admission"),
)
# Written while the operator was down: when they were answered says nothing of its pace.
CATCHUP_ROWS = frozenset({"changes", "lost", "duplicates", "verified", "by_admission"})


def cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>12}"
    return f"{value:>12.1f}"


def print_table(phases: Mapping[str, Figures]) -> None:
    print(f"{'':28}" + "".join(f"{name:>12}" for name in phases))
    for key, label in ROWS:
        cells = [cell(figures.get(key)) if name != "catch-up" or key in CATCHUP_ROWS
                 else cell(None) for name, figures in phases.items()]
        print(f"{label:28}" + "".join(cells))


def report(*, burst: Figures, steady: Figures, steady_audit_wait: Figures, fill: Figures,
           install: Figures, inventory: Figures, settled: Figures, startup: Figures,
           catchup: Figures,
           objects: int, audit_batch_max_wait_s: float) -> dict[str, Any]:
    """Prints the table and the JSON line; returns the figures the line holds."""
    print(f"\nkubeledger keeping pace ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; operator as a host process, audit backend "
          "and Elasticsearch on)")
    print("steady: KUBELEDGER_AUDIT_WAIT_SECONDS=0 (the admission webhook's identity); "
          "steady+audit: the default wait for the audit event (batches of "
          f"{audit_batch_max_wait_s:g}s at most)")
    print_table({"burst": burst, "steady": steady, "steady+audit": steady_audit_wait,
                 "fill": fill, "catch-up": catchup})
    live = (burst, steady, steady_audit_wait, fill, inventory)
    figures: dict[str, Any] = {
        "burst_ratio_records": burst["watch_s"] / burst["records_s"],
        "burst_ratio_es": burst["watch_s"] / burst["es_s"],
        "burst_accepted_per_s": burst["accepted_per_s"],
        "p50_change_to_record_ms": steady["p50_record_ms"],
        "p99_change_to_record_ms": steady["p99_record_ms"],
        "p50_change_to_es_ms": steady["p50_es_ms"],
        "p99_change_to_es_ms": steady["p99_es_ms"],
        "p50_change_to_record_audit_wait_ms": steady_audit_wait["p50_record_ms"],
        "p99_change_to_record_audit_wait_ms": steady_audit_wait["p99_record_ms"],
        "p50_change_to_es_audit_wait_ms": steady_audit_wait["p50_es_ms"],
        "p99_change_to_es_audit_wait_ms": steady_audit_wait["p99_es_ms"],
        "audit_batch_max_wait_s": audit_batch_max_wait_s,
        # The steady phases ask for 100/s; what the apiserver took is here.
        "steady_accepted_per_s": steady["accepted_per_s"],
        "steady_audit_wait_accepted_per_s": steady_audit_wait["accepted_per_s"],
        "fill_accepted_per_s": fill["accepted_per_s"],
        "burst_p50_change_to_record_ms": burst["p50_record_ms"],
        "burst_p99_change_to_record_ms": burst["p99_record_ms"],
        "burst_p50_change_to_es_ms": burst["p50_es_ms"],
        "burst_p99_change_to_es_ms": burst["p99_es_ms"],
        "burst_operator_cpu_share": burst.get("operator_cpu_share"),
        "rss_mib_10k": settled["rss_mib"],
        "peak_rss_mib": settled["peak_rss_mib"],
        "startup_10k_s": startup["startup_s"],
        "startup_10k_settled_s": startup["settled_s"],
        "startup_10k_records": int(startup["records"]),
        "peak_rss_mib_startup": startup["peak_rss_mib"],
        "catchup_1k_changed_s": catchup["catchup_s"],
        "catchup_lost": int(catchup["lost"]),
        "catchup_duplicates": int(catchup["duplicates"]),
        "catchup_attributed_verified": int(catchup["verified"]),
        "first_install_10k_s": install["first_install_s"],
        "first_install_other_writers_per_s": install["other_writers_per_s"],
        # Changes made while the first install's inventory went on.
        "first_install_p50_change_to_record_ms": inventory["p50_record_ms"],
        "first_install_p99_change_to_record_ms": inventory["p99_record_ms"],
        "other_writers_baseline_per_s": install["other_writers_baseline_per_s"],
        "lost": int(sum(phase["lost"] for phase in (*live, catchup))),
        "duplicates": int(sum(phase["duplicates"] for phase in (*live, catchup))),
        "attributed_verified": int(sum(phase["verified"] for phase in live)),
        "changes": int(sum(phase["changes"] for phase in (*live, catchup))),
        "changes_live": int(sum(phase["changes"] for phase in live)),
        "objects": objects,
        "records_retained": int(settled["records_retained"]),
    }
    print(f"\nat scale: {objects} Deployments, {figures['records_retained']} records retained")
    print(f"  first install, all inventoried     {figures['first_install_10k_s']:9.1f} s "
          f"(recording live after {install['live_s']:.1f} s)")
    print(f"  other writers before / during      {figures['other_writers_baseline_per_s']:9.1f}"
          f" / {figures['first_install_other_writers_per_s']:.1f} writes/s")
    print(f"  a change during the inventory      "
          f"{figures['first_install_p50_change_to_record_ms']:9.0f} ms to its record (p50), "
          f"{figures['first_install_p99_change_to_record_ms']:.0f} ms (p99)")
    print(f"  operator memory settled / peak     {figures['rss_mib_10k']:9.1f} / "
          f"{figures['peak_rss_mib']:.1f} MiB")
    print(f"  restart: recording live after      {figures['startup_10k_s']:9.1f} s "
          f"(idle after {figures['startup_10k_settled_s']:.1f} s), "
          f"{figures['startup_10k_records']} records written, peak "
          f"{figures['peak_rss_mib_startup']:.1f} MiB")
    print(f"  catch-up of {int(catchup['changes'])} changes, all recorded "
          f"{figures['catchup_1k_changed_s']:6.1f} s after start "
          f"({figures['catchup_lost']} lost, {figures['catchup_duplicates']} duplicates)")
    print(f"burst ratio: records {figures['burst_ratio_records']:.2f}, "
          f"documents {figures['burst_ratio_es']:.2f} (1.0 = as fast as a bare watch)")
    print(json.dumps({key: json_value(value) for key, value in figures.items()}))
    return figures


def json_value(value: Any) -> Any:
    """Rounded; a figure that could not be measured (NaN) is null, as JSON has no NaN."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 3)
    return value
