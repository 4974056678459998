"""Finding objects that were deleted while nobody watched.

A watch cannot report a deletion it did not see: the operator was down, or a watch was
re-established after its history expired. So the operator compares, at start-up and then
periodically, the baselines it holds with what a fresh listing shows; an object that is
gone gets one ``deleted-while-unobserved`` record. The record shares its name with the
live deletion record, so seeing a deletion both ways still writes it once.

At start-up the listing (``list_present``) runs while the records are read, and the
comparison (``record_vanished``) follows once the baselines exist.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubeledger import backoff
from kubeledger.core.baselines import Baselines
from kubeledger.core.kinds import Resource
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes, list_uids
from kubeledger.recording.recorder import Recorder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Present:
    """What one listing of a kind found, and when it started (monotonic clock)."""

    since: float
    uids: set[str]


async def list_present(api: Kubernetes, resources: Iterable[Resource]) -> dict[Resource, Present]:
    """Lists every kind; a resource that does not exist here (an absent CRD) is left out."""
    listed: dict[Resource, Present] = {}
    for resource in resources:
        since = time.monotonic()
        uids = await backoff.retrying(functools.partial(list_uids, api, resource),
                                      what=f"list {resource.plural}",
                                      retry_on=errors.WORTH_WAITING_FOR)
        if uids is not None:
            listed[resource] = Present(since, uids)
    return listed


async def record_vanished(recorder: Recorder, baselines: Baselines,
                          listed: Mapping[Resource, Present]) -> None:
    """Records every baseline object missing from the listing of its kind."""
    recorded = 0
    for resource, present in listed.items():
        # An object first seen after the listing started may simply be missing from it.
        vanished = [
            baseline for baseline in baselines.of_kind(resource.api_version, resource.kind)
            if baseline.uid not in present.uids and baseline.seen_at < present.since
        ]
        for baseline in vanished:
            if await recorder.record_unobserved_deletion(baseline):
                recorded += 1
    if recorded:
        logger.info("recorded %d deletions that happened while unobserved", recorded)


async def record_unobserved_deletions(
    api: Kubernetes, recorder: Recorder, baselines: Baselines, resources: Iterable[Resource],
) -> dict[Resource, set[str]]:
    """Lists every kind, then records every baseline object missing from its listing.

    Returns the uids each listing found (a resource that does not exist is left out).
    """
    listed = await list_present(api, resources)
    await record_vanished(recorder, baselines, listed)
    return {resource: present.uids for resource, present in listed.items()}
