"""Replicas relay to each other who made a change, so attribution survives the Service's choice.

The apiserver calls the webhook and the audit receiver through a Service, which picks any
ready replica, but only the leader writes records. So every replica relays what its
receivers learn to all the others, which keep it as if they had been told themselves.
The leader has what it needs whichever replica was called, and a standby that takes over
already holds what the old leader was told but had not yet used: relaying to the leader
only would lose exactly the changes a failover interrupts.

Only the identity entries are relayed (``identity.admission`` and ``identity.audit``
produce them: user, operation, fingerprint or join key), never the admitted object or the
audit event, which hold secrets.

- Peers are the ready endpoints of the webhook Service's EndpointSlices (the replicas the
  apiserver may call), minus this replica, refreshed every ``REFRESH_SECONDS``.
- Transport: HTTPS to the peer's webhook port; its serving certificate is checked against
  the webhook's CA, under the Service's DNS name.
- Authenticity: an HMAC-SHA256 of the body, keyed by a key derived from the redaction
  salt, which every replica holds (a Secret) and nobody else does: whoever can reach the
  port still cannot plant identities.
- Best effort: a peer that does not answer within ``SEND_TIMEOUT_SECONDS`` misses that
  batch (counted in ``kubeledger_peer_relays_total``); its own receivers, the audit
  events and ``managedFields`` still stand behind it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from kubeledger import metrics
from kubeledger.core import kinds
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.audit import AuditLog
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes

logger = logging.getLogger(__name__)

PATH = "/peer/identities"
SIGNATURE_HEADER = "X-Kubeledger-Signature"
REFRESH_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 2.0
# Entries waiting to be sent; beyond this the oldest are dropped (counted as failed).
MAX_PENDING = 10_000
SOURCES = ("admission", "audit")


def relay_key(salt: bytes) -> bytes:
    """The relay's HMAC key: derived from the salt, so the salt itself is never used twice."""
    return hmac.new(salt, b"kubeledger peer relay v1", hashlib.sha256).digest()


def signature(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class Peers:
    """The other replicas' addresses, from the EndpointSlices of the webhook Service."""

    def __init__(self, api: Kubernetes, *, namespace: str, service: str,
                 own_address: str | None) -> None:
        self._api = api
        self._namespace = namespace
        self._service = service
        self._own_address = own_address
        self.addresses: list[str] = []

    async def refresh(self) -> None:
        slices = await self._api.list(
            kinds.ENDPOINT_SLICES, lambda item: item.get("endpoints") or [],
            namespace=self._namespace,
            label_selector=f"kubernetes.io/service-name={self._service}")
        found = sorted({
            address for endpoints in slices for endpoint in endpoints
            if (endpoint.get("conditions") or {}).get("ready", True)
            for address in endpoint.get("addresses") or ()
            if address != self._own_address})
        if found != self.addresses:
            logger.info("peer replicas: %s", ", ".join(found) or "none")
        self.addresses = found

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except errors.KubeError as error:
                logger.warning("could not list the peer replicas (%s); keeping %s", error,
                               ", ".join(self.addresses) or "none")
            await asyncio.sleep(REFRESH_SECONDS)


class Relay:
    """Sends what this replica's receivers learn to every peer, in batches."""

    def __init__(self, peers: Peers, *, key: bytes, port: int, ca_file: Path,
                 server_name: str) -> None:
        self._peers = peers
        self._key = key
        self._port = port
        self._tls = ssl.create_default_context(cafile=str(ca_file))
        self._server_name = server_name
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()

    def share(self, source: str, entries: list[dict[str, Any]]) -> None:
        """Queues entries of one source (``"admission"`` or ``"audit"``) for the peers."""
        for entry in entries:
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                metrics.PEER_RELAYS.labels(outcome="failed").inc()
            self._pending.append((source, entry))
        if entries:
            self._wake.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self._wake.wait()
                self._wake.clear()
                batch = list(self._pending)
                self._pending.clear()
                body = json.dumps({source: [entry for kind, entry in batch if kind == source]
                                   for source in SOURCES}).encode()
                await asyncio.gather(*(self._send(session, address, body, len(batch))
                                       for address in self._peers.addresses))

    async def _send(self, session: aiohttp.ClientSession, address: str, body: bytes,
                    count: int) -> None:
        host = f"[{address}]" if ":" in address else address
        try:
            async with session.post(
                    f"https://{host}:{self._port}{PATH}", data=body, ssl=self._tls,
                    server_hostname=self._server_name,
                    headers={SIGNATURE_HEADER: signature(self._key, body),
                             "Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_SECONDS)) as answer:
                answer.raise_for_status()
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            metrics.PEER_RELAYS.labels(outcome="failed").inc(count)
            logger.warning("could not relay %d identities to the replica at %s: %s", count,
                           address, error)
            return
        metrics.PEER_RELAYS.labels(outcome="sent").inc(count)


def accept(body: bytes, signed: str | None, *, key: bytes, admission: AdmissionCache | None,
           audit: AuditLog | None) -> bool:
    """Keeps a peer's relayed identities; False (nothing kept) when the signature is wrong."""
    if not signed or not hmac.compare_digest(signed, signature(key, body)):
        metrics.PEER_RELAYS.labels(outcome="rejected").inc()
        return False
    relayed: Mapping[str, Any] = json.loads(body)
    for source, cache in (("admission", admission), ("audit", audit)):
        entries = relayed.get(source) or []
        if cache is None:
            continue
        for entry in entries:
            # A malformed entry (a peer of another version) must not drop the others.
            try:
                cache.adopt(entry)
            except (KeyError, TypeError, ValueError) as error:
                logger.warning("ignored a relayed %s identity: %r", source, error)
        metrics.PEER_RELAYS.labels(outcome="received").inc(len(entries))
    return True
