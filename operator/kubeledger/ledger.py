"""The ledger: writes AuditRecords one at a time, in chain order, exactly once.

Records are sealed into the hash chain and created under their deterministic name. A
name that already exists means the change is already recorded (a re-list, a retry, a
restart), and nothing is added. Failures that may pass are retried with backoff for as
long as it takes: a change is never dropped because the apiserver was briefly away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubeledger import chain
from kubeledger.kube import ApiUnavailableError, KubeApi
from kubeledger.model import RecordSpec, record_labels

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_BACKOFF_SECONDS = 0.5
RETRIED_REFUSALS = frozenset({401, 403, 404})
MAX_BACKOFF_SECONDS = 30.0


class Ledger:
    """The single writer of records; holds the head of the chain."""

    def __init__(self, api: KubeApi, head: chain.Head) -> None:
        self._api = api
        self._head = head
        self._lock = asyncio.Lock()
        # Called with every record once it is in the cluster (the shippers take it).
        self.on_written: list[Callable[[str, RecordSpec], None]] = []

    @property
    def head(self) -> chain.Head:
        return self._head

    async def append(self, name: str, spec: RecordSpec) -> RecordSpec | None:
        """Seals and writes one record; None when that change was already recorded."""
        async with self._lock:
            sealed, new_head = chain.seal(spec, self._head)
            existing = await retrying(
                lambda: self._api.create_record(name, record_labels(sealed), sealed.wire()),
                what=f"writing record {name}",
            )
            if existing is not None and existing.get("chain", {}).get("hash") != new_head.hash:
                logger.debug("record %s exists already; change recorded before", name)
                return None
            # Written now, or by an earlier attempt of this very call whose answer was lost.
            self._head = new_head
            for listener in self.on_written:
                listener(name, sealed)
            return sealed


def head_of(specs: Iterable[Mapping[str, Any]]) -> chain.Head:
    """The chain head among existing records: the highest sequence wins."""
    best = chain.Head()
    for spec in specs:
        link = spec.get("chain")
        if link and link["sequence"] > best.sequence:
            best = chain.Head(link["sequence"], link["hash"])
    return best


async def retrying(call: Callable[[], Awaitable[T]], *, what: str,
                   give_up_on: frozenset[int] = frozenset()) -> T:
    """Awaits ``call`` until it succeeds, backing off on failures that may pass.

    Also retries refusals that an administrator can fix while we wait (403 after an RBAC
    change, 404 while the CRD is being installed): losing a record is never better. At
    start-up nothing is at stake yet, and ``give_up_on`` lets a refusal surface at once.
    """
    delay = FIRST_BACKOFF_SECONDS
    while True:
        try:
            return await call()
        except (ApiUnavailableError, HTTPError, OSError) as error:
            problem = str(error)
        except ApiException as error:
            if error.status not in RETRIED_REFUSALS or error.status in give_up_on:
                raise
            problem = f"{error.status} {error.reason}: {error.body}"
        logger.warning("%s failed (%s); retrying in %.1fs", what, problem, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_SECONDS)
