"""The endpoints others call: the admission webhook, the audit backend, the peer relay.

``POST /validate`` receives validating AdmissionReviews for audited writes. It only
remembers who asked (``identity.admission``) and always allows: the webhook is
registered with ``failurePolicy: Ignore`` and must never block a workload or RBAC write,
even when this code fails. ``POST /audit`` receives the apiserver's audit EventLists
(webhook backend) over mutual TLS: only a client holding a certificate from the
configured CA may tell us who did what. ``POST /peer/identities`` on the webhook's port
takes what the other replicas' receivers learned (``peers``; HMAC-signed). Every replica
serves all three; what its receivers learn is relayed to the others.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kubeledger import peers
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.audit import AuditLog

logger = logging.getLogger(__name__)

# Audit batches can be large (the apiserver sends up to 400 events per batch by default).
MAX_AUDIT_BATCH_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Relaying:
    """How this replica shares what it learns and takes what its peers learned."""

    relay: peers.Relay
    key: bytes


def admission_app(cache: AdmissionCache, *, audit: AuditLog | None = None,
                  relaying: Relaying | None = None) -> web.Application:
    async def validate(request: web.Request) -> web.Response:
        review: dict[str, Any] = {}
        try:
            review = await request.json()
            kept = cache.remember(review.get("request") or {})
            if kept is not None and relaying is not None:
                relaying.relay.share("admission", [kept])
        except Exception:  # never let our failure become the apiserver's
            logger.exception("could not read an admission review; allowing it")
        uid = (review.get("request") or {}).get("uid", "")
        return web.json_response({
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        })

    app = web.Application(client_max_size=MAX_AUDIT_BATCH_BYTES)
    app.router.add_post("/validate", validate)
    if relaying is not None:
        app.router.add_post(peers.PATH, _from_peers(relaying.key, cache, audit))
    return app


def _from_peers(key: bytes, admission: AdmissionCache,
                audit: AuditLog | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def receive(request: web.Request) -> web.Response:
        if not peers.accept(await request.read(), request.headers.get(peers.SIGNATURE_HEADER),
                            key=key, admission=admission, audit=audit):
            logger.warning("refused identities relayed from %s: bad signature", request.remote)
            return web.json_response({"error": "bad signature"}, status=403)
        return web.json_response({})

    return receive


def audit_app(log: AuditLog, *, relaying: Relaying | None = None) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        try:
            kept = log.ingest(await request.json())
        except ValueError:
            return web.json_response({"error": "not an audit.k8s.io EventList"}, status=400)
        logger.debug("kept %d audit events", len(kept))
        if relaying is not None:
            relaying.relay.share("audit", kept)
        return web.json_response({})

    app = web.Application(client_max_size=MAX_AUDIT_BATCH_BYTES)
    app.router.add_post("/audit", receive)
    return app


def server_tls(cert_dir: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS with the certificate in ``cert_dir``; with ``client_ca``, clients must present one."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_dir / "tls.crt", cert_dir / "tls.key")
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


async def serve(app: web.Application, host: str, port: int,
                tls: ssl.SSLContext | None) -> Callable[[], Awaitable[None]]:
    """Starts serving ``app``; returns the coroutine function that stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner.cleanup
