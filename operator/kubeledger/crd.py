"""Installing the AuditRecord CRD at start-up, or saying clearly why the operator cannot.

The manifest is ``crds/auditrecords.yaml`` (shipped inside the wheel; read from the
source tree in a development checkout). The operator applies it when it may; when it may
not (the chart installed the CRD and granted no right to change it) an established CRD
is fine, and a missing one stops the operator with instructions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from kubeledger.kube import CRD_DIGEST_ANNOTATION, KubeApi
from kubeledger.model import GROUP, PLURAL

logger = logging.getLogger(__name__)

CRD_NAME = f"{PLURAL}.{GROUP}"
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
    return (Path(__file__).resolve().parents[2] / "crds" / "auditrecords.yaml").read_text()


async def ensure(api: KubeApi) -> None:
    """Installs or upgrades the CRD when allowed, and waits until it is established."""
    try:
        outcome = await api.apply_crd(manifest())
    except ApiException as error:
        if error.status != 403:
            raise
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
    while not await api.crd_established(CRD_NAME):
        if asyncio.get_running_loop().time() > deadline:
            raise CrdMissingError(f"the CRD {CRD_NAME} did not become established")
        await asyncio.sleep(0.2)


async def _established_or_forbidden(api: KubeApi) -> bool:
    try:
        return await api.crd_established(CRD_NAME)
    except ApiException as error:
        if error.status == 403:
            # Not even allowed to read CRDs: listing records will tell whether it exists.
            return True
        raise
