"""Audit records for unit tests: one fully populated record, and small variations of it.

Tests state only what they vary (``full_spec_with(initiator=...)``) and take the
rest from ``full_spec``, in which every optional field of the record is set, so a test
that walks a document built from it sees every field a record can produce.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubeledger.core import model

RECORD_NAME = "deployment-6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f-48213"
OBSERVED_AT = datetime(2025, 11, 26, 7, 18, 0, 123456, tzinfo=UTC)
# Appears only in the snapshot, so tests can prove the snapshot never leaves the record.
SNAPSHOT_MARKER = "only-in-the-snapshot-7c1e"

REAL_USER = "alice@example.com"
ASSUMED_USER = "system:serviceaccount:shop:deployer"
DECLARED_USER = "bob@example.com"


def deployment() -> model.Subject:
    return model.Subject(
        apiVersion="apps/v1",
        kind="Deployment",
        namespace="shop",
        name="web",
        uid="6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f",
        resourceVersion="48213",
    )


def cluster_role_binding() -> model.Subject:
    return model.Subject(
        apiVersion="rbac.authorization.k8s.io/v1",
        kind="ClusterRoleBinding",
        name="deployer-is-admin",
        uid="0b9a8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        resourceVersion="51007",
    )


def impersonated_initiator() -> model.Initiator:
    """Alice, authenticated by the apiserver, acting as a service account."""
    return model.Initiator(
        username=ASSUMED_USER,
        uid="9d8c7b6a-5f4e-4d3c-8b2a-190817161514",
        groups=["system:serviceaccounts", "system:serviceaccounts:shop"],
        source=model.InitiatorSource.ADMISSION,
        verified=True,
        tool="kubectl-client-side-apply",
        impersonatedBy=REAL_USER,
        declared=DECLARED_USER,
        declaredMismatch=True,
        sourceIPs=["10.0.0.17", "2001:db8::17"],
    )


def direct_initiator() -> model.Initiator:
    """Alice acting as herself."""
    return model.Initiator(
        username=REAL_USER,
        uid="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        groups=["developers", "system:authenticated"],
        source=model.InitiatorSource.AUDIT,
        verified=True,
        sourceIPs=["10.0.0.17"],
    )


def full_spec() -> model.RecordSpec:
    """A record with every optional field set (impersonation included)."""
    return model.RecordSpec(
        action=model.Action.IMAGE_CHANGED,
        severity=model.Severity.NOTICE,
        observedAt=OBSERVED_AT,
        observation=model.Observation.LIVE,
        cluster="prod-eu-1",
        subject=deployment(),
        changes=[
            model.FieldChange(
                path="spec.template.spec.containers[web].image",
                old="shop/web:1.4.2",
                new="shop/web:1.5.0",
            ),
            model.FieldChange(path="spec.replicas", old=3, new=5),
            model.FieldChange(
                path="spec.template.metadata.labels",
                old={"app": "web"},
                new={"app": "web", "tier": "front"},
            ),
            model.FieldChange(path="spec.paused", new=True),
        ],
        changesTruncated=True,
        reasons=["grants cluster-admin to User mallory"],
        initiator=impersonated_initiator(),
        commit=model.Commit(
            sha="3f786850e387550fdab836ed7e6dc881de23001b",
            repository="https://git.example.com/shop/deploy.git",
            source=model.CommitSource.ARGOCD,
        ),
        snapshot={"spec": {"replicas": 5, "note": SNAPSHOT_MARKER}},
        anomalies=[model.Anomaly(kind=model.AnomalyKind.OUT_OF_BAND_CHANGE,
                                 reason="Deployment web is managed by Argo CD but was "
                                        "changed (image-changed) by alice")],
        truncated=[model.Truncation(path='snapshot.metadata.annotations["example.com/notes"]',
                                    bytes=300_000, sha256="c" * 64)],
        chain=model.Chain(
            sequence=4711,
            previousHash="a" * 64,
            hash="b" * 64,
        ),
    )


def full_spec_with(**fields: Any) -> model.RecordSpec:
    """``full_spec`` with some spec fields replaced, by wire name (initiator, chain, ...)."""
    # Validated again, unlike model_copy(update=...), so a test cannot build a bad record.
    return model.RecordSpec.model_validate({**dict(full_spec()), **fields})


def leaf_paths(document: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every value in a document; list items share their list's path."""
    if isinstance(document, dict):
        return set().union(
            *(leaf_paths(value, f"{prefix}{key}.") for key, value in document.items())
        )
    if isinstance(document, list):
        return set().union(*(leaf_paths(item, prefix) for item in document))
    return {prefix.removesuffix(".")}
