"""Printing records for people: aligned tables, one-line summaries, JSON and YAML.

Pure functions over record specs as the cluster stores them (wire names, JSON values),
so the table a user reads and the ``-o json`` a script reads come from the same data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

OUTPUTS = ("table", "json", "yaml")
NONE = "-"
VERIFIED_MARK = "✓"
VALUE_WIDTH = 40
ROLLOUT_PATH = "rollout."  # the projection's rollout phase (core.projection)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as kubectl aligns them: upper-case headers, three spaces apart."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                         strict=False)]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in (headers, *rows)]
    return "\n".join(lines)


def structured(data: Any, output: str) -> str:
    """``data`` as ``json`` (indented) or ``yaml`` (block style, keys in their order)."""
    if output == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")


def time(moment: datetime) -> str:
    """A record's time to the second, in UTC, as kubectl prints timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def initiator(spec: Mapping[str, Any]) -> str:
    """``alice ✓`` for a verified identity, ``alice`` for one only declared or guessed."""
    who = spec.get("initiator") or {}
    name = who.get("username")
    if not name:
        return NONE
    return f"{name} {VERIFIED_MARK}" if who.get("verified") else str(name)


def short_commit(spec: Mapping[str, Any]) -> str:
    sha = (spec.get("commit") or {}).get("sha")
    return str(sha)[:12] if sha else NONE


def subject(spec: Mapping[str, Any]) -> str:
    """``Deployment demo/web``, or ``ClusterRole admin`` for a cluster-scoped object."""
    what = spec["subject"]
    where = f"{what['namespace']}/" if what.get("namespace") else ""
    return f"{what['kind']} {where}{what['name']}"


def summary(spec: Mapping[str, Any]) -> str:
    """The changes in one line: the first changed field (one a person changed, before the
    rollout's phase that follows from it) and how many more; else the first reason (a
    creation, a rollout's end), else ``-``."""
    changes = spec.get("changes") or []
    if not changes:
        reasons = spec.get("reasons") or []
        return str(reasons[0]) if reasons else NONE
    first = change(min(changes, key=lambda field: field["path"].startswith(ROLLOUT_PATH)))
    more = len(changes) - 1 + (1 if spec.get("changesTruncated") else 0)
    return f"{first} (+{more} more)" if more else first


def change(field: Mapping[str, Any]) -> str:
    """``path: old -> new``; an added field ``path: + new``, a removed one ``path: - old``."""
    path = field["path"]
    if "old" not in field:
        return f"{path}: + {value(field.get('new'))}"
    if "new" not in field:
        return f"{path}: - {value(field['old'])}"
    return f"{path}: {value(field['old'])} -> {value(field['new'])}"


def value(data: Any, width: int = VALUE_WIDTH) -> str:
    """A field's value, compact, cut at ``width`` characters with an ellipsis."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False,
                                                          separators=(",", ":"))
    return text if len(text) <= width else text[:width - 1] + "…"


def percent(fraction: float | None) -> str:
    """``40%`` (one decimal when not whole: ``33.3%``); ``-`` for no figure."""
    if fraction is None:
        return NONE
    return f"{fraction * 100:.1f}".removesuffix(".0") + "%"


def duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h10m``, ``1d4h``: the two largest units; ``-`` for none."""
    if seconds is None:
        return NONE
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
