"""What classification returns and takes, shared by the workload and the RBAC rules."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kubeledger.core import model

#: Looks up a Role's or ClusterRole's rules: ``(kind, namespace, name)`` to its ``rules``,
#: or None when the role cannot be found. The namespace is "" for a ClusterRole.
RoleRulesResolver = Callable[[str, str, str], list[Mapping[str, Any]] | None]


def rules_unknown(kind: str, namespace: str, name: str) -> list[Mapping[str, Any]] | None:
    """The resolver for when roles cannot be looked up: every role's rules are unknown."""
    return None


@dataclass(frozen=True)
class Context:
    """What the caller knows beyond the two projections."""

    #: The subject's namespace ("" for cluster-scoped objects); a RoleBinding's Role
    #: lives there.
    namespace: str = ""
    #: The subject's name: the records' CRD is told by it, and a deleted record named.
    name: str = ""
    #: ``revisions.fingerprint`` of each pod template the workload was recorded with
    #: before: a new template matching one of them is a rollback.
    older_revision_fingerprints: frozenset[bytes] = frozenset()
    resolve_role_rules: RoleRulesResolver = rules_unknown


@dataclass(frozen=True)
class Classification:
    """What a change did, how much it matters, and why, in short human sentences."""

    action: model.Action
    severity: model.Severity
    reasons: tuple[str, ...] = ()


class Finding(NamedTuple):
    """One thing a change did; a change may do several."""

    action: model.Action
    severity: model.Severity
    reason: str


def conclude(
    findings: Iterable[Finding], precedence: tuple[model.Action, ...]
) -> Classification | None:
    """One classification from a change's findings; None when there are none.

    The action is the finding's highest in ``precedence``; the severity is the highest of
    all findings (a rollout that failed in the same change as a scale is still a warning);
    the reasons are all findings', most significant first.
    """
    ranked = sorted(findings, key=lambda finding: precedence.index(finding.action))
    if not ranked:
        return None
    return Classification(
        action=ranked[0].action,
        severity=max((finding.severity for finding in ranked), key=lambda s: s.rank),
        reasons=tuple(finding.reason for finding in ranked),
    )
