"""kopf handlers, and running kopf: the only module that knows kopf.

Handlers are thin: they hand the raw event to the recorder and return. Only
``@kopf.on.event`` is used, so kopf writes nothing onto watched objects (no annotations,
no finalizers): an audit tool must not cause GitOps drift in what it audits. The
services the handlers call are built once at start-up (``runtime``) and reach them
through kopf's memo.

Readiness: every watched kind also has an index handler that keeps nothing. kopf holds
back all other handlers until every indexed kind has been listed once, so the first
event any handler sees means every watch is established. A cluster always has
ClusterRoles, so that first event comes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from kubeledger import config
from kubeledger.config import Settings
from kubeledger.core import kinds
from kubeledger.core.kinds import Resource
from kubeledger.kube import crd
from kubeledger.runtime import Runtime


def run(settings: Settings, *, liveness_url: str | None, readiness_url: str | None,
        verbose: bool) -> None:
    """Runs the operator until it is stopped; a start-up failure raises."""
    kopf.configure(verbose=verbose)
    logging.getLogger("kubeledger").setLevel(logging.DEBUG if verbose else logging.INFO)
    registry = kopf.OperatorRegistry()
    register(registry, settings, readiness_url=readiness_url)
    asyncio.run(kopf.operator(registry=registry, clusterwide=True, standalone=True,
                              liveness_endpoint=liveness_url, memo=kopf.Memo()))


def register(registry: kopf.OperatorRegistry, settings: Settings,
             readiness_url: str | None = None) -> None:
    """Registers every handler the given settings call for."""

    @kopf.on.startup(registry=registry)
    async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf would post its log lines as Events about the watched objects: noise.
        settings.posting.enabled = False
        try:
            memo.runtime = await Runtime.start(operator_settings, readiness_url=readiness_url)
        except (crd.CrdMissingError, crd.AccessDeniedError, config.ConfigError) as error:
            raise kopf.PermanentError(str(error)) from error

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own starts without kopf's default login handlers. The official
        # client finds the apiserver in a pod the way client-go does, from the
        # KUBERNETES_SERVICE_HOST/PORT the kubelet sets, where kopf's own service-account
        # login asks cluster DNS for kubernetes.default.svc, which a cluster may not run.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.probe(registry=registry, id="background")
    def background(memo: kopf.Memo, **_: Any) -> str:
        # A failing probe handler fails kopf's liveness endpoint (see ``supervision``).
        # Permanent, so kopf reports it at once instead of retrying it within the probe.
        problems = memo.runtime.supervisor.problems if "runtime" in memo else []
        if problems:
            raise kopf.PermanentError("; ".join(problems))
        return "ok"

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        if "runtime" in memo:
            await memo.runtime.stop()

    operator_settings = settings
    audited = kinds.audited(settings.watch_extra_kinds)
    for resource in audited:
        kopf.on.event(resource.group, resource.version, resource.plural,
                      registry=registry)(_auditing(resource))

    @kopf.on.event(kinds.REPLICA_SETS.group, kinds.REPLICA_SETS.version,
                   kinds.REPLICA_SETS.plural, registry=registry)
    async def replica_set(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.runtime.watches_listed()
        memo.runtime.revisions.observe(event["type"], event["object"])

    for resource in [*audited, kinds.REPLICA_SETS]:
        kopf.index(resource.group, resource.version, resource.plural, registry=registry,
                   id=f"listed_{resource.plural}")(_keep_nothing)


def _keep_nothing(**_: Any) -> None:
    """An index that stores nothing: it only makes kopf wait for the first listing."""


def _auditing(resource: Resource) -> Any:
    async def audit(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.runtime.watches_listed()
        await memo.runtime.recorder.observe(resource, event["type"], event["object"])

    audit.__name__ = f"audit_{resource.plural}"
    return audit
