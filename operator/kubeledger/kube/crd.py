"""Installing the AuditRecord CRD at start-up, or saying clearly why the operator cannot.

The manifest is ``crds/auditrecords.yaml`` (shipped inside the wheel; read from the
source tree in a development checkout). The operator applies it when it may; when it may
not (the chart installed the CRD and granted no right to change it) an established CRD
is fine, and a missing one stops the operator with instructions. An unchanged CRD is
not rewritten: it carries the digest of the manifest it was made from.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kubeledger.core.kinds import CUSTOM_RESOURCE_DEFINITIONS, RECORDS_CRD_NAME
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)

CRD_NAME = RECORDS_CRD_NAME
# Set on the CRD we install: the digest of our manifest, so an unchanged CRD is not rewritten.
CRD_DIGEST_ANNOTATION = "kubeledger.io/manifest-sha256"
ESTABLISH_TIMEOUT_SECONDS = 30.0


class CrdMissingError(RuntimeError):
    """The CRD is absent and the operator may not install it."""


class AccessDeniedError(RuntimeError):
    """The operator may not read its own records: RBAC must be fixed before it can start."""


def manifest() -> dict[str, Any]:
    """The CRD manifest, annotated with its own digest."""
    text = _manifest_text()
    crd: dict[str, Any] = yaml.safe_load(text)
    annotations = crd["metadata"].setdefault("annotations", {})
    annotations[CRD_DIGEST_ANNOTATION] = hashlib.sha256(text.encode()).hexdigest()
    return crd


def _manifest_text() -> str:
    packaged = resources.files("kubeledger") / "crds" / "auditrecords.yaml"
    if packaged.is_file():
        return packaged.read_text()
    # An editable install runs from the source tree, where the CRD sits at the top level.
    return (Path(__file__).resolve().parents[3] / "crds" / "auditrecords.yaml").read_text()


async def ensure(api: Kubernetes) -> None:
    """Installs or upgrades the CRD when allowed, and waits until it is established."""
    try:
        outcome = await apply(api, manifest())
    except errors.Refused:
        if await _established_or_forbidden(api):
            logger.info("CRD %s is installed; no permission to upgrade it, using it as is",
                        CRD_NAME)
            return
        raise CrdMissingError(
            f"the CRD {CRD_NAME} is not installed and this operator may not install it: "
            "apply crds/auditrecords.yaml or install the Helm chart with crds.install=true"
        ) from None
    logger.info("CRD %s: %s", CRD_NAME, outcome)
    deadline = asyncio.get_running_loop().time() + ESTABLISH_TIMEOUT_SECONDS
    while not await established(api, CRD_NAME):
        if asyncio.get_running_loop().time() > deadline:
            raise CrdMissingError(f"the CRD {CRD_NAME} did not become established")
        await asyncio.sleep(0.2)


async def apply(api: Kubernetes, crd: Mapping[str, Any]) -> str:
    """Creates or replaces a CRD; returns "created", "updated" or "unchanged"."""
    name = crd["metadata"]["name"]
    try:
        current = await api.get(CUSTOM_RESOURCE_DEFINITIONS, name)
    except errors.NotFound:
        await api.create(CUSTOM_RESOURCE_DEFINITIONS, crd)
        return "created"
    digest = crd["metadata"]["annotations"][CRD_DIGEST_ANNOTATION]
    if current["metadata"].get("annotations", {}).get(CRD_DIGEST_ANNOTATION) == digest:
        return "unchanged"
    metadata = {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}
    await api.replace(CUSTOM_RESOURCE_DEFINITIONS, {**crd, "metadata": metadata})
    return "updated"


async def established(api: Kubernetes, name: str) -> bool:
    try:
        crd = await api.get(CUSTOM_RESOURCE_DEFINITIONS, name)
    except errors.NotFound:
        return False
    # A CRD created a moment ago has ``status.conditions: null``.
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


async def _established_or_forbidden(api: Kubernetes) -> bool:
    try:
        return await established(api, CRD_NAME)
    except errors.Refused:
        # Not even allowed to read CRDs: listing records will tell whether it exists.
        return True
