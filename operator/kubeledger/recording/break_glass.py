"""Records deleted by anyone but retention: each deletion becomes a record of its own.

Only the operator's retention (``recording.retention``) removes records in the normal
course; the chart's admission policy lets a break-glass group do it too, and without
the policy anyone RBAC allows may. The writer watches AuditRecords for deletions and
hands each one that retention did not make to the recorder, like a deletion of any
audited object: its initiator comes from the audit log (the audit policy logs record
deletions at ``RequestResponse``), and ``core.classify.protection`` makes it critical,
naming the record and its sequence.

Retention says which records it removes by adding their names to a set shared with this
watch (``Removals``) before it deletes them; the watch takes each name out again when the
deletion arrives. Creations and changes of records are not recorded (each record would
make another, for ever).

The watch starts from the resourceVersion of a listing of one record, so it sees only
what happens from now on (a watch from no version would replay every record as ADDED),
and starts again from a new listing's version when the apiserver no longer keeps the
version it was at (410 Gone); a watch that broke (the apiserver went away, the
connection fell silent) starts again from where it was. A record deleted while no
writer watched is not recorded here: ``kubeledger verify`` reports the gap in the chain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubeledger import backoff
from kubeledger.core import kinds
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes
from kubeledger.recording.recorder import Recorder

logger = logging.getLogger(__name__)

# The pause before watching again after a broken watch: a restarting apiserver needs it.
RECONNECT_SECONDS = 1.0

#: The names of the records retention is removing (see the module docstring).
Removals = set[str]


async def watch(api: Kubernetes, recorder: Recorder, removals: Removals) -> None:
    """Records every deletion of an AuditRecord that retention did not make; runs until
    cancelled."""
    version = await _now(api)
    while True:
        try:
            async for event in api.watch(kinds.RECORDS, resource_version=version):
                body = event["object"]
                version = body["metadata"]["resourceVersion"]
                if event["type"] == "DELETED":
                    await _deleted(recorder, removals, body)
        except errors.Gone:
            logger.info("the watch on record deletions fell behind the apiserver's history; "
                        "watching again from now")
            version = await _now(api)
        except errors.Unavailable as error:
            # A restarted apiserver, a connection gone silent: where it was, once more.
            logger.warning("the watch on record deletions broke (%s); watching again", error)
            await asyncio.sleep(RECONNECT_SECONDS)


async def _now(api: Kubernetes) -> str:
    return await backoff.retrying(lambda: api.collection_version(kinds.RECORDS),
                                  what="list records to watch their deletions",
                                  retry_on=errors.WORTH_WAITING_FOR)


async def _deleted(recorder: Recorder, removals: Removals, body: Mapping[str, Any]) -> None:
    name = body["metadata"]["name"]
    if name in removals:
        removals.discard(name)  # retention's own
        return
    logger.warning("AuditRecord %s deleted outside retention: recording it", name)
    await recorder.take(kinds.RECORDS, "DELETED", body)
