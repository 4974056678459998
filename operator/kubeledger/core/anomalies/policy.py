"""What the anomaly detectors are told: thresholds, protected namespaces, windows, lists.

Built by ``config`` from the operator's settings (the README's settings table names each);
pure data here, so the detectors and their unit tests need no configuration machinery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

from kubeledger.core.anomalies.cron import Window
from kubeledger.core.model import AnomalyKind, Initiator


@dataclass(frozen=True)
class Threshold:
    """More than ``count`` within ``within``: the rule of the windowed detectors."""

    count: int
    within: timedelta


@dataclass(frozen=True)
class Policy:
    """Everything the detectors need; the defaults are the operator's."""

    disabled: frozenset[AnomalyKind] = frozenset()
    # Namespace names or shell-style patterns ("prod-*"): where initiators must be
    # verified and changes kept to the windows.
    protected_namespaces: tuple[str, ...] = ()
    change_windows: tuple[Window, ...] = ()
    change_window_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # Usernames or groups allowed to change outside the windows (an on-call group).
    change_window_exempt: frozenset[str] = frozenset()
    # Usernames or groups allowed to change GitOps-managed objects (an autoscaler).
    gitops_exempt: frozenset[str] = frozenset()
    burst: Threshold = Threshold(20, timedelta(minutes=5))
    rollback_spike: Threshold = Threshold(3, timedelta(minutes=30))
    failure_spike: Threshold = Threshold(3, timedelta(minutes=30))
    # Registries (``ghcr.io``) or registry paths (``ghcr.io/acme``) images may come
    # from; empty: any registry.
    approved_registries: tuple[str, ...] = ()

    def enabled(self, kind: AnomalyKind) -> bool:
        return kind not in self.disabled

    def protects(self, namespace: str | None) -> bool:
        return bool(namespace) and any(fnmatchcase(namespace or "", pattern)
                                       for pattern in self.protected_namespaces)


def names(initiator: Initiator) -> Iterable[str]:
    """The names an exemption list may give for an initiator: its username and groups."""
    if initiator.username:
        yield initiator.username
    yield from initiator.groups


def exempt(initiator: Initiator, allowed: frozenset[str]) -> bool:
    return any(name in allowed for name in names(initiator))
