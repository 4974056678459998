"""The initiator of a change: one decision over everything known about who made it.

The attribution gathers the facts (the audit event and the admission request of the
write, the GitOps controller's account of the sync, the annotation an object declares,
the tool ``managedFields`` names) and :func:`resolve` turns them into the record's
``spec.initiator``, saying how it knows (principle 4 of design.md). Strongest first:

``audit``, ``admission``
    The apiserver authenticated the user: ``verified``. Audit alone knows about
    impersonation: ``username`` is then the user the write was made as, and
    ``impersonatedBy`` the user who authenticated. Audit alone has ``sourceIPs``.
``argocd``, ``flux``
    When the authenticated user is a GitOps controller (not impersonated) and the
    controller's object names who started the sync, that person is the initiator:
    ``username`` is the trigger, ``verified`` is False (the GitOps tool vouches for it,
    not the apiserver), ``uid`` and ``groups`` stay empty (they were the controller's),
    and ``tool`` holds the controller's full service-account username, so the
    authenticated identity stays on the record. A sync the controller started itself
    (:data:`~kubeledger.identity.gitops.AUTOMATED`) keeps the controller as the verified
    initiator. Without an authenticated identity the caller vouches that the controller
    wrote (by the ``managedFields`` tool, say), and the trigger is taken the same way.
``annotation``
    Only the object's own ``kubeledger.io/initiator`` annotation: ``username`` is the
    declared name, never ``verified``; anyone who may edit the object may write it.
``managedFields``
    Only the tool: ``username`` stays None.
``unresolved``
    Nothing known; nothing guessed.

``declared`` is filled whenever the annotation is present. ``declaredMismatch`` flags a
declared name that is none of the identities known to be behind the write: the effective
user, the impersonating user, the GitOps trigger, or the controller. Names compare
case-insensitively, and a declared name may omit the prefix of a username up to its last
``:`` (a service account's name without ``system:serviceaccount:<namespace>:``, a user
without the cluster's OIDC username prefix).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubeledger.core import projection
from kubeledger.core.model import Initiator, InitiatorSource
from kubeledger.identity import gitops
from kubeledger.identity.admission import AdmissionIdentity
from kubeledger.identity.audit import AuditIdentity
from kubeledger.identity.user import User

DECLARED_INITIATOR_ANNOTATION = "kubeledger.io/initiator"

_GITOPS_SOURCES = frozenset({InitiatorSource.ARGOCD, InitiatorSource.FLUX})
_WRITE_OPERATIONS = frozenset({"Update", "Apply"})


def resolve(
    *,
    audit: AuditIdentity | None = None,
    admission: AdmissionIdentity | None = None,
    tool: str | None = None,
    declared: str | None = None,
    gitops_trigger: str | None = None,
    gitops_source: InitiatorSource | None = None,
) -> Initiator:
    """The initiator of one change (see the module docstring for the rules)."""
    if gitops_source is not None and gitops_source not in _GITOPS_SOURCES:
        raise ValueError(f"not a GitOps source: {gitops_source}")
    sync = _Sync(gitops_trigger, gitops_source) if gitops_trigger and gitops_source else None
    authenticated = _authenticated(audit, admission)
    if authenticated is not None:
        initiator = authenticated.initiator(tool, sync)
    elif sync is not None:
        initiator = sync.initiator(tool)
    elif declared:
        initiator = Initiator(username=declared, source=InitiatorSource.ANNOTATION, tool=tool)
    elif tool:
        initiator = Initiator(source=InitiatorSource.MANAGED_FIELDS, tool=tool)
    else:
        initiator = Initiator()
    if not declared:
        return initiator
    # The effective user or GitOps trigger, the impersonator, the authenticated controller.
    known = (initiator.username, initiator.impersonatedBy,
             authenticated.user.username if authenticated else None)
    mismatch = not any(_same_person(declared, name) for name in known if name)
    return initiator.model_copy(update={"declared": declared, "declaredMismatch": mismatch})


def declared_initiator(
    body: Mapping[str, Any], annotation_key: str = DECLARED_INITIATOR_ANNOTATION
) -> str | None:
    """The initiator an object declares about itself, unverified by nature."""
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(annotation_key)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def tool_from_managed_fields(body: Mapping[str, Any]) -> str | None:
    """The field manager of an object's latest write by a person's tool, if one stands out.

    Writes that touch only status and controller bookkeeping (the Deployment controller's
    revision annotation) are passed over: apiservers before 1.22 do not mark status writes
    as subresource writes. ``time`` has a resolution of one second; distinct managers
    sharing the latest second leave the tool unknown.
    """
    timed = [
        (written, entry["manager"])
        for entry in (body.get("metadata") or {}).get("managedFields") or ()
        if entry.get("manager") and entry.get("operation") in _WRITE_OPERATIONS
        and not _is_bookkeeping(entry)
        and (written := _time(entry)) is not None
    ]
    if not timed:
        return None
    latest = max(written for written, _ in timed)
    managers = {manager for written, manager in timed if written == latest}
    return managers.pop() if len(managers) == 1 else None


@dataclass(frozen=True)
class _Sync:
    """A GitOps controller's account of who started the sync that wrote."""

    trigger: str
    source: InitiatorSource

    def initiator(self, tool: str | None, source_ips: tuple[str, ...] = ()) -> Initiator:
        # An auto-sync has no person behind it; the controller (in ``tool``) acted alone.
        username = None if self.trigger == gitops.AUTOMATED else self.trigger
        return Initiator(username=username, source=self.source, tool=tool,
                         sourceIPs=list(source_ips))


@dataclass(frozen=True)
class _Authenticated:
    """The user the apiserver authenticated for the write, by audit or admission."""

    user: User  # the user the write was made as
    source: InitiatorSource
    impersonated_by: str | None = None
    source_ips: tuple[str, ...] = ()

    def initiator(self, tool: str | None, sync: _Sync | None) -> Initiator:
        if sync is not None and self._ran(sync):
            return sync.initiator(self.user.username, self.source_ips)
        return Initiator(
            username=self.user.username, uid=self.user.uid, groups=list(self.user.groups),
            source=self.source, verified=True, tool=tool, impersonatedBy=self.impersonated_by,
            sourceIPs=list(self.source_ips),
        )

    def _ran(self, sync: _Sync) -> bool:
        """Whether this is the controller that ran a sync someone started.

        Anyone impersonating the controller is not the controller: the real user stays.
        """
        return (
            sync.trigger != gitops.AUTOMATED
            and self.impersonated_by is None
            and gitops.controller_source(self.user.username) is sync.source
        )


def _authenticated(
    audit: AuditIdentity | None, admission: AdmissionIdentity | None
) -> _Authenticated | None:
    if audit is not None:
        return _Authenticated(
            user=audit.effective, source=InitiatorSource.AUDIT,
            impersonated_by=audit.user.username if audit.impersonated else None,
            source_ips=audit.source_ips,
        )
    if admission is not None:
        # Admission sees the user after impersonation and cannot tell it happened.
        return _Authenticated(user=admission.user, source=InitiatorSource.ADMISSION)
    return None


def _same_person(declared: str, username: str) -> bool:
    wanted = declared.casefold()
    return wanted in (username.casefold(), username.rpartition(":")[2].casefold())


def _time(entry: Mapping[str, Any]) -> datetime | None:
    written = entry.get("time")
    if not isinstance(written, str):
        return None
    try:
        return datetime.fromisoformat(written)
    except ValueError:
        return None


def _is_bookkeeping(entry: Mapping[str, Any]) -> bool:
    """Whether a managedFields entry owns nothing but status and bookkeeping annotations."""
    if entry.get("subresource") == "status":
        return True
    fields = entry.get("fieldsV1")
    if not isinstance(fields, Mapping):
        return False
    metadata = fields.get("f:metadata") or {}
    annotations = metadata.get("f:annotations") or {}
    return (
        set(fields) <= {".", "f:status", "f:metadata"}
        and set(metadata) <= {".", "f:annotations"}
        and all(key == "." or key.removeprefix("f:") in projection.CONTROLLER_ANNOTATIONS
                for key in annotations)
    )
