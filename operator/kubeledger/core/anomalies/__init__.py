"""Anomaly detection: flagging, before a record is sealed, what about its change looks wrong.

Pure. :class:`Detector` runs every enabled detector over one record and returns it with
``anomalies`` filled in; the ledger calls it while sealing, so the flags are part of the
hashed content and are decided in chain order. One-record rules live in ``rules``, the
windowed ones (burst, spikes) in ``windows``, change-window schedules in ``cron``, image
registries in ``images``, the settings in ``policy``. The README's "Anomalies" section
describes each kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kubeledger.core.anomalies import rules
from kubeledger.core.anomalies.policy import Policy
from kubeledger.core.anomalies.windows import Windows
from kubeledger.core.model import Anomaly, AnomalyKind, RecordSpec

Rule = Callable[[RecordSpec, Policy], Iterator[str]]

RULES: tuple[tuple[AnomalyKind, Rule], ...] = (
    (AnomalyKind.OUT_OF_BAND_CHANGE, rules.out_of_band),
    (AnomalyKind.UNVERIFIED_INITIATOR, rules.unverified_initiator),
    (AnomalyKind.DECLARED_MISMATCH, rules.declared_mismatch),
    (AnomalyKind.OUTSIDE_CHANGE_WINDOW, rules.outside_change_window),
    (AnomalyKind.CRITICAL_RBAC, rules.critical_rbac),
    (AnomalyKind.UNAPPROVED_REGISTRY, rules.unapproved_registry),
)


class Detector:
    """Flags records; holds the windows of the windowed detectors (see ``windows``)."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._windows = Windows(policy)

    def __call__(self, spec: RecordSpec) -> RecordSpec:
        """The record with its anomalies; called once per record, in chain order."""
        found = [Anomaly(kind=kind, reason=reason) for kind, reason in self._found(spec)]
        return spec.model_copy(update={"anomalies": found}) if found else spec

    def _found(self, spec: RecordSpec) -> Iterator[tuple[AnomalyKind, str]]:
        for kind, rule in RULES:
            if self._policy.enabled(kind):
                for reason in rule(spec, self._policy):
                    yield kind, reason
        yield from self._windows.flag(spec)
