"""Classification of a change: its action, its severity and the reasons for both.

Input is the projection before the change (None when the object was created) and after
it (None when deleted), as :mod:`kubeledger.core.projection` makes them and
:mod:`kubeledger.core.redaction` leaves them. Workload rules live in
:mod:`kubeledger.core.classify.workloads`, RBAC rules in :mod:`kubeledger.core.classify.rbac`,
and the rules for what protects the trail itself (admission policies, the records' CRD,
the operator's own RBAC, a deleted record) in :mod:`kubeledger.core.classify.protection`,
asked first: weakening the guard outranks what the change is for an object of its kind.
Catch-up after downtime is not decided here: the caller turns the result of a change seen
after the fact into ``changed-while-unobserved``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeledger.core import projection
from kubeledger.core.classify import protection, rbac, workloads
from kubeledger.core.classify.common import Classification, Context, RoleRulesResolver

__all__ = ["Classification", "Context", "RoleRulesResolver", "classify"]

_NO_CONTEXT = Context()


def classify(
    kind: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    context: Context = _NO_CONTEXT,
) -> Classification | None:
    """How to record the change of a ``kind`` object from ``old`` to ``new``.

    None when nothing worth a record changed: the projections are equal, or only a
    rollout went back to progressing.
    """
    if old == new:
        return None
    if kind == protection.RECORD:
        return protection.record_deleted(old, new, context.name)
    return protection.guarded(kind, old, new, _of_kind(kind, old, new, context),
                              name=context.name)


def _of_kind(kind: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
             context: Context) -> Classification | None:
    """What the change is for an object of its kind, part of the guard or not."""
    if kind in projection.ROLE_KINDS:
        return rbac.classify_role(old, new)
    if kind in projection.BINDING_KINDS:
        return rbac.classify_binding(old, new, context)
    if kind in protection.ADMISSION_KINDS:
        return protection.classify_admission(old, new)
    return workloads.classify(old, new, context)
