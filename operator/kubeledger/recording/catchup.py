"""Finding objects that were deleted while nobody watched.

A watch cannot report a deletion it did not see: the operator was down, or a watch was
re-established after its history expired. So the operator compares, at start-up and then
periodically, the baselines it holds with what a fresh listing shows; an object that is
gone gets one ``deleted-while-unobserved`` record. The record shares its name with the
live deletion record, so seeing a deletion both ways still writes it once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable

from kubeledger import backoff
from kubeledger.core.baselines import Baselines
from kubeledger.core.kinds import Resource
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes, list_uids
from kubeledger.recording.recorder import Recorder

logger = logging.getLogger(__name__)


async def record_unobserved_deletions(
    api: Kubernetes, recorder: Recorder, baselines: Baselines, resources: Iterable[Resource],
) -> dict[Resource, set[str]]:
    """Records every baseline object missing from a fresh listing.

    Returns the uids each listing found (a resource that does not exist is left out).
    """
    recorded = 0
    listed: dict[Resource, set[str]] = {}
    for resource in resources:
        listing_started = time.monotonic()
        present = await backoff.retrying(functools.partial(list_uids, api, resource),
                                         what=f"list {resource.plural}",
                                         retry_on=errors.WORTH_WAITING_FOR)
        if present is None:
            continue  # the resource does not exist here (an absent CRD): nothing to compare
        listed[resource] = present
        # An object first seen after the listing started may simply be missing from it.
        vanished = [
            baseline for baseline in baselines.of_kind(resource.api_version, resource.kind)
            if baseline.subject.uid not in present and baseline.seen_at < listing_started
        ]
        for baseline in vanished:
            if await recorder.record_unobserved_deletion(baseline):
                recorded += 1
    if recorded:
        logger.info("recorded %d deletions that happened while unobserved", recorded)
    return listed
