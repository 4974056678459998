"""Naming a change to RBAC, and judging whether it grants something dangerous.

A change is ``critical`` when it grants a dangerous permission that was not granted
before. Dangerous (design.md): any ``*`` in verbs, resources, apiGroups or
nonResourceURLs; access to ``secrets`` (any verb: reading them is the danger); the verbs
``escalate``, ``bind`` and ``impersonate``; and any binding to ClusterRole
``cluster-admin``.

Rules are compared as sets of single permissions (one verb on one resource of one group,
optionally one name, or one verb on one URL), so that widening a rule flags only what it
adds, and a permission already covered by an old wildcard is not new. A binding grants
its role to the subjects it adds (to all its subjects when it is new or its roleRef
changed); the role's rules come from the caller's resolver.

Changes to an RBAC object's labels or annotations alone are ``config-changed``: the RBAC
vocabulary has no action of its own for them, and they matter (an aggregation label on a
ClusterRole feeds its rules into others).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from kubeledger.core import model
from kubeledger.core.classify import common

Action = model.Action
Severity = model.Severity

WILDCARD = "*"
DANGEROUS_VERBS = ("escalate", "bind", "impersonate")
CLUSTER_ADMIN = "cluster-admin"

#: Most significant first, for a change that does several things at once.
PRECEDENCE: tuple[Action, ...] = (
    Action.RULES_CHANGED,
    Action.SUBJECTS_CHANGED,
    Action.CONFIG_CHANGED,
)

# How many permissions a reason names before it says "and N more".
_NAMED_PERMISSIONS = 5

Projection = Mapping[str, Any]


class Permission(NamedTuple):
    """One verb on one resource (or one non-resource URL).

    ``api_group`` and ``resource`` are None for a URL, ``url`` None for a resource;
    ``resource_name`` "" means every name.
    """

    verb: str
    api_group: str | None
    resource: str | None
    resource_name: str
    url: str | None


class Subject(NamedTuple):
    """Whom a binding grants its role: a User, a Group or a ServiceAccount."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


def classify_role(old: Projection | None, new: Projection | None) -> common.Classification | None:
    """The classification of a change to a Role or ClusterRole."""
    if new is None:
        return None if old is None else common.Classification(Action.DELETED, Severity.WARNING)
    grants = tuple(f"grants {grant}" for grant in dangerous_grants(_rules(new), _rules(old or {})))
    severity = Severity.CRITICAL if grants else Severity.NOTICE
    if old is None:
        return common.Classification(Action.CREATED, severity, grants)
    findings: list[common.Finding] = []
    changed = [field for field in ("rules", "aggregationRule") if old.get(field) != new.get(field)]
    if changed:
        reasons = grants or tuple(f"{field} changed" for field in changed)
        findings.extend(common.Finding(Action.RULES_CHANGED, severity, r) for r in reasons)
    findings.extend(_metadata_findings(old, new))
    return common.conclude(findings, PRECEDENCE)


def classify_binding(
    old: Projection | None, new: Projection | None, context: common.Context
) -> common.Classification | None:
    """The classification of a change to a RoleBinding or ClusterRoleBinding."""
    if new is None:
        return None if old is None else common.Classification(Action.DELETED, Severity.WARNING)
    if old is None:
        severity, reason = _grant(new, _subjects(new), context)
        return common.Classification(Action.CREATED, severity, (reason,) if reason else ())
    findings = list(_subject_findings(old, new, context))
    findings.extend(_metadata_findings(old, new))
    return common.conclude(findings, PRECEDENCE)


def permissions(rules: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """Every single permission the rules grant."""
    granted: set[Permission] = set()
    for rule in rules:
        verbs = rule.get("verbs") or ()
        granted.update(
            Permission(verb, group, resource, name, None)
            for verb, group, resource, name in itertools.product(
                verbs,
                rule.get("apiGroups") or (),
                rule.get("resources") or (),
                rule.get("resourceNames") or ("",),
            )
        )
        granted.update(
            Permission(verb, None, None, "", url)
            for verb, url in itertools.product(verbs, rule.get("nonResourceURLs") or ())
        )
    return granted


def dangers(permission: Permission) -> tuple[str, ...]:
    """Why a permission is dangerous, in words; empty when it is not."""
    verb, group, resource, _, url = permission
    found = [
        f"wildcard {what}"
        for what, value in (
            ("verbs", verb),
            ("apiGroups", group),
            ("resources", resource),
            ("nonResourceURLs", url),
        )
        if value == WILDCARD
    ]
    if resource == "secrets" and group in ("", WILDCARD):
        found.append("access to secrets")
    if verb in DANGEROUS_VERBS:
        found.append(f"the {verb} verb")
    return tuple(found)


def dangerous_grants(
    rules: Iterable[Mapping[str, Any]], before: Iterable[Mapping[str, Any]] = ()
) -> tuple[str, ...]:
    """What ``rules`` grant that is dangerous and not already granted by ``before``.

    One sentence per kind of danger, naming the permissions, e.g.
    ``access to secrets (get secrets, list secrets)``.
    """
    old = permissions(before)
    by_danger: dict[str, set[str]] = {}
    for permission in permissions(rules):
        reasons = dangers(permission)
        if reasons and not _covered(permission, old):
            for reason in reasons:
                by_danger.setdefault(reason, set()).add(_render(permission))
    return tuple(f"{danger} ({_some(named)})" for danger, named in sorted(by_danger.items()))


def _covered(permission: Permission, granted: set[Permission]) -> bool:
    """Whether ``granted`` already includes ``permission``, itself or through a wildcard."""
    verb, group, resource, name, url = permission
    candidates = itertools.product(
        (verb, WILDCARD),
        _or_wildcard(group),
        _or_wildcard(resource),
        (name, ""),  # no resourceNames: every name
        _or_wildcard(url),
    )
    return any(Permission(*candidate) in granted for candidate in candidates)


def _or_wildcard(value: str | None) -> tuple[str | None, ...]:
    """The value and the wildcard that would cover it; None (not applicable) alone."""
    return (None,) if value is None else (value, WILDCARD)


def _render(permission: Permission) -> str:
    """kubectl's ``resource.group/name`` notation, after the verb: ``get secrets/db``."""
    if permission.url is not None:
        return f"{permission.verb} {permission.url}"
    target = (
        f"{permission.resource}.{permission.api_group}"
        if permission.api_group
        else str(permission.resource)
    )
    if permission.resource_name:
        target += f"/{permission.resource_name}"
    return f"{permission.verb} {target}"


def _some(named: Iterable[str]) -> str:
    ordered = sorted(named)
    shown = ", ".join(ordered[:_NAMED_PERMISSIONS])
    hidden = len(ordered) - _NAMED_PERMISSIONS
    return f"{shown} and {hidden} more" if hidden > 0 else shown


def _subject_findings(
    old: Projection, new: Projection, context: common.Context
) -> Iterator[common.Finding]:
    old_subjects, new_subjects = _subjects(old), _subjects(new)
    if old.get("roleRef") != new.get("roleRef"):
        # Everyone bound now gets the new role, whether or not they had the old one.
        yield common.Finding(
            Action.SUBJECTS_CHANGED,
            Severity.NOTICE,
            f"roleRef {_role(old)} -> {_role(new)}",
        )
        old_subjects = []
    added = [subject for subject in new_subjects if subject not in old_subjects]
    removed = [subject for subject in old_subjects if subject not in new_subjects]
    if added:
        severity, reason = _grant(new, added, context)
        yield common.Finding(Action.SUBJECTS_CHANGED, severity, reason)
    if removed:
        yield common.Finding(
            Action.SUBJECTS_CHANGED,
            Severity.NOTICE,
            f"revokes {_role(new)} from {_whom(removed)}",
        )


def _grant(
    binding: Projection, subjects: list[Subject], context: common.Context
) -> tuple[Severity, str]:
    """The severity of granting the binding's role to ``subjects``, and why."""
    if not subjects:
        return Severity.NOTICE, ""
    role = _role(binding)
    kind, namespace, name = role_of(binding, context.namespace)
    if kind == "ClusterRole" and name == CLUSTER_ADMIN:
        return Severity.CRITICAL, f"grants {CLUSTER_ADMIN} to {_whom(subjects)}"
    rules = context.resolve_role_rules(kind, namespace, name)
    if rules is None:
        return Severity.NOTICE, f"grants {role} to {_whom(subjects)} (its rules are unknown)"
    granted = dangerous_grants(rules)
    if granted:
        return Severity.CRITICAL, f"grants {role} to {_whom(subjects)}: {'; '.join(granted)}"
    return Severity.NOTICE, f"grants {role} to {_whom(subjects)}"


def _metadata_findings(old: Projection, new: Projection) -> Iterator[common.Finding]:
    before, after = old.get("metadata") or {}, new.get("metadata") or {}
    changed = [part for part in ("labels", "annotations") if before.get(part) != after.get(part)]
    if changed:
        yield common.Finding(
            Action.CONFIG_CHANGED, Severity.NOTICE, " and ".join(changed) + " changed"
        )


def _rules(role: Projection) -> list[Mapping[str, Any]]:
    return role.get("rules") or []


def _subjects(binding: Projection) -> list[Subject]:
    return [
        Subject(subject.get("kind", ""), subject.get("namespace", ""), subject.get("name", ""))
        for subject in binding.get("subjects") or ()
    ]


def role_of(binding: Mapping[str, Any], namespace: str) -> tuple[str, str, str]:
    """(kind, namespace, name) of the role a binding in ``namespace`` refers to: a
    ClusterRole has no namespace, a Role is the binding's own namespace's."""
    role_ref = binding.get("roleRef") or {}
    kind = role_ref.get("kind", "")
    return kind, "" if kind == "ClusterRole" else namespace, role_ref.get("name", "")


def _role(binding: Projection) -> str:
    role_ref = binding.get("roleRef") or {}
    return f"{role_ref.get('kind', '')} {role_ref.get('name', '')}"


def _whom(subjects: Iterable[Subject]) -> str:
    return ", ".join(str(subject) for subject in subjects)
