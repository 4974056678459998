"""The endpoints others call: the admission webhook, the audit backend, the readiness probe.

``POST /validate`` receives validating AdmissionReviews for audited writes. It only
remembers who asked (``identity.admission``) and always allows: the webhook is
registered with ``failurePolicy: Ignore`` and must never block a workload or RBAC write,
even when this code fails. ``POST /audit`` receives the apiserver's audit EventLists
(webhook backend) over mutual TLS: only a client holding a certificate from the
configured CA may tell us who did what. ``GET <path>`` of the readiness URL answers 200
once the operator records changes live, 503 before (plain HTTP: the kubelet probes it).
"""

from __future__ import annotations

import logging
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.audit import AuditLog

logger = logging.getLogger(__name__)

# Audit batches can be large (the apiserver sends up to 400 events per batch by default).
MAX_AUDIT_BATCH_BYTES = 32 * 1024 * 1024


def admission_app(cache: AdmissionCache) -> web.Application:
    async def validate(request: web.Request) -> web.Response:
        review: dict[str, Any] = {}
        try:
            review = await request.json()
            cache.remember(review.get("request") or {})
        except Exception:  # never let our failure become the apiserver's
            logger.exception("could not read an admission review; allowing it")
        uid = (review.get("request") or {}).get("uid", "")
        return web.json_response({
            "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        })

    app = web.Application()
    app.router.add_post("/validate", validate)
    return app


def audit_app(log: AuditLog) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        try:
            kept = log.ingest(await request.json())
        except ValueError:
            return web.json_response({"error": "not an audit.k8s.io EventList"}, status=400)
        logger.debug("kept %d audit events", kept)
        return web.json_response({})

    app = web.Application(client_max_size=MAX_AUDIT_BATCH_BYTES)
    app.router.add_post("/audit", receive)
    return app


def readiness_app(path: str, is_ready: Callable[[], bool]) -> web.Application:
    async def probe(_: web.Request) -> web.Response:
        ready = is_ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get(path, probe)
    return app


async def serve_readiness(url: str,
                          is_ready: Callable[[], bool]) -> Callable[[], Awaitable[None]]:
    """Serves the readiness probe at ``url`` (``http://HOST:PORT/PATH``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"readiness URL {url!r}: expected http://HOST:PORT/PATH")
    return await serve(readiness_app(parts.path or "/", is_ready), parts.hostname, parts.port,
                       tls=None)


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
