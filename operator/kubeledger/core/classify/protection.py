"""Changes to what protects the trail itself, and whether they weaken it.

The guard (``guards``) is what keeps records from being forged, changed or removed:

- kubeledger's ValidatingAdmissionPolicy and its binding, and the operator's own RBAC
  (its ClusterRole, ClusterRoleBinding, Role and RoleBinding), which the chart labels
  ``kubeledger.io/protection: "true"``;
- the AuditRecord CRD, told by its name (deleting it deletes every record).

Removing or weakening the guard is ``critical``: deleting any part of it, removing its
label, a policy whose validations, variables, match rules or failure policy change (CEL
cannot be compared for strength, so any change of those counts), a binding that no
longer denies or binds otherwise, a CRD that loses one of its validation rules. Any
other change to the guard is at least a ``warning`` (a creation a ``notice``), and a
change to the operator's own rules or bindings says it changes kubeledger's own
permissions. Admission policies that are not kubeledger's are recorded like any other
object: created and changed a ``notice``, deleted a ``warning``.

A deleted AuditRecord is classified here too: only deletions outside retention are
handed over (``recording.break_glass``), and each is ``critical``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubeledger.core import kinds, model, projection
from kubeledger.core.classify import common

Action = model.Action
Severity = model.Severity
Projection = Mapping[str, Any]

PROTECTION_LABEL = "kubeledger.io/protection"
POLICY = kinds.ADMISSION_POLICIES.kind
BINDING = kinds.ADMISSION_POLICY_BINDINGS.kind
CRD = kinds.RECORDS_CRD.kind
RECORD = kinds.RECORDS.kind
RBAC_KINDS = projection.ROLE_KINDS | projection.BINDING_KINDS
ADMISSION_KINDS = frozenset({POLICY, BINDING, CRD})
# What a policy lets through depends on these: any change of one may weaken it.
POLICY_FIELDS = ("failurePolicy", "matchConstraints", "matchConditions", "paramKind",
                 "variables", "validations")
# What a binding enforces, and where: a change of one may leave records unguarded.
BINDING_FIELDS = ("policyName", "paramRef", "matchResources")
DENY = "Deny"
CEL_RULES = "x-kubernetes-validations"

_DELETED = {
    POLICY: "deletes the ValidatingAdmissionPolicy that protects the records: whoever RBAC "
            "allows may now forge, change or delete them",
    BINDING: "deletes the binding of the records' ValidatingAdmissionPolicy: the policy is "
             "no longer enforced",
    CRD: "deletes the AuditRecord CRD: every record in the cluster goes with it",
}


def guards(kind: str, projected: Projection | None, *, name: str) -> bool:
    """Whether the object is part of kubeledger's protection."""
    if projected is None:
        return False
    if kind == CRD:
        return name == kinds.RECORDS_CRD_NAME
    return _labelled(projected)


def guarded(kind: str, old: Projection | None, new: Projection | None,
            ordinary: common.Classification | None, *,
            name: str) -> common.Classification | None:
    """``ordinary`` (what the change is for an object of its kind), judged again when the
    object is part of the guard; ``ordinary`` itself when it is not."""
    if ordinary is None or not (guards(kind, old, name=name) or guards(kind, new, name=name)):
        return ordinary
    weakened = tuple(_weakenings(kind, old, new))
    if weakened:
        return common.Classification(ordinary.action, Severity.CRITICAL,
                                     (*weakened, *ordinary.reasons))
    floor = Severity.NOTICE if old is None else Severity.WARNING
    return common.Classification(ordinary.action,
                                 max(ordinary.severity, floor, key=lambda s: s.rank),
                                 (_what_it_does(kind, old, new), *ordinary.reasons))


def record_deleted(old: Projection | None, new: Projection | None,
                   name: str) -> common.Classification | None:
    """A record removed by someone other than retention; None for anything else (no other
    change of a record is handed over)."""
    if old is None or new is not None:
        return None
    sequence = ((old.get("spec") or {}).get("chain") or {}).get("sequence", "unknown")
    return common.Classification(Action.DELETED, Severity.CRITICAL, (
        f"AuditRecord {name} (sequence {sequence}) deleted outside retention "
        "(break-glass, or without the guard)",))


def classify_admission(old: Projection | None,
                       new: Projection | None) -> common.Classification | None:
    """A change to an admission policy, a binding or the records' CRD, guard or not."""
    if new is None:
        return None if old is None else common.Classification(Action.DELETED, Severity.WARNING)
    if old is None:
        return common.Classification(Action.CREATED, Severity.NOTICE)
    changed = _changed_fields(old, new)
    if not changed:
        return None
    return common.Classification(Action.CONFIG_CHANGED, Severity.NOTICE,
                                 (f"{', '.join(changed)} changed",))


def _weakenings(kind: str, old: Projection | None, new: Projection | None) -> Iterator[str]:
    """What the change takes away from the guard, one sentence each."""
    if old is None:
        return
    if new is None:
        yield _DELETED.get(kind, f"deletes kubeledger's own {kind}: the operator loses "
                                 "permissions it records with")
        return
    if _labelled(old) and not _labelled(new):
        yield (f"removes the {PROTECTION_LABEL} label: the object is no longer known as "
               "part of kubeledger's protection")
    before, after = old.get("spec") or {}, new.get("spec") or {}
    if kind == POLICY:
        yield from (f"weakens the records' admission policy: spec.{field} "
                    f"{'removed' if field not in after else 'changed'}"
                    for field in POLICY_FIELDS if before.get(field) != after.get(field))
    elif kind == BINDING:
        actions = before.get("validationActions") or []
        now = after.get("validationActions") or []
        if DENY in actions and DENY not in now:
            yield (f"the records' admission policy no longer denies: validationActions "
                   f"{actions} -> {now}")
        yield from (f"weakens the binding of the records' admission policy: spec.{field} "
                    f"{'removed' if field not in after else 'changed'}"
                    for field in BINDING_FIELDS if before.get(field) != after.get(field))
    elif kind == CRD:
        kept = set(_cel_rules(after))
        yield from (f"weakens the AuditRecord CRD: validation rule {rule!r} removed"
                    for rule in sorted(set(_cel_rules(before)) - kept))


def _what_it_does(kind: str, old: Projection | None, new: Projection | None) -> str:
    """The first reason of a change to the guard that does not weaken it."""
    if kind in RBAC_KINDS and (old is None or any(
            (old or {}).get(field) != (new or {}).get(field)
            for field in ("rules", "aggregationRule", "subjects", "roleRef"))):
        return "changes kubeledger's own permissions"
    return ("creates" if old is None else "changes") + " part of kubeledger's protection"


def _changed_fields(old: Projection, new: Projection) -> list[str]:
    """``spec.<field>`` for each top-level spec field that changed, then the metadata."""
    before, after = old.get("spec") or {}, new.get("spec") or {}
    changed = [f"spec.{field}" for field in sorted(before.keys() | after.keys())
               if before.get(field) != after.get(field)]
    meta_before, meta_after = old.get("metadata") or {}, new.get("metadata") or {}
    changed.extend(f"metadata.{part}" for part in ("labels", "annotations")
                   if meta_before.get(part) != meta_after.get(part))
    return changed


def _labelled(projected: Projection) -> bool:
    labels = (projected.get("metadata") or {}).get("labels") or {}
    return labels.get(PROTECTION_LABEL) == "true"


def _cel_rules(value: Any) -> Iterator[str]:
    """Every CEL rule (``x-kubernetes-validations``) anywhere in a CRD's spec."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == CEL_RULES and isinstance(item, list):
                yield from (str(rule.get("rule")) for rule in item if isinstance(rule, Mapping))
            else:
                yield from _cel_rules(item)
    elif isinstance(value, list):
        for item in value:
            yield from _cel_rules(item)
