"""kopf handlers, and running the replica and kopf: the only module that knows kopf.

Handlers are thin: they put the raw event into the intake (``recording.intake``) and
return, so that kopf holds no listed object for long. Only
``@kopf.on.event`` is used, so kopf writes nothing onto watched objects (no annotations,
no finalizers): an audit tool must not cause GitOps drift in what it audits. The
services the handlers call are built once at start-up (``runtime``) and reach them
through kopf's memo. The startup handler returns once the catch-up listing is over, so
that kopf lists its kinds while the records are still read; the events wait in the intake
until that start is over, and a start that fails stops kopf and is raised by ``run``.

kopf runs only while this replica leads (``replica``, ``leadership``). When leadership
ends, kopf is stopped and ``run`` returns ``LEADERSHIP_LOST``: the process exits and is
started again as a standby, with nothing carried over from its time as the writer.

Readiness: every event put into the intake is counted (``first_listing``) until kopf's
first listing of every audited kind is over.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from importlib import metadata
from typing import Any

import kopf
from kopf._core.reactor import inventory

from kubeledger import config, logs
from kubeledger.config import Settings
from kubeledger.core import kinds
from kubeledger.core.kinds import Resource
from kubeledger.kube import crd
from kubeledger.recording.intake import Intake
from kubeledger.replica import Endpoints, Replica
from kubeledger.runtime import Runtime

logger = logging.getLogger(__name__)

STOPPED = 0
LEADERSHIP_LOST = 3
# A write's round trips, beyond the audit wait, when records are finished before stopping.
DRAIN_MARGIN_SECONDS = 2.0
LIST_CHUNK = 500  # objects per page of kopf's listings
# kopf starts a worker per object with an event queued and ends it after this much quiet:
# at its defaults (no limit, 5 s) the first listing of 10,000 objects keeps 10,000 workers
# alive at once. A slot is free again only after its quiet time (10,000 objects: 15.2 s
# listed at 0.5 s of quiet, 7.7 s at 0.05 s).
OBJECT_WORKERS = 500
# Start-up failures the operator reports as what to fix, without a traceback.
START_FAILURES = (crd.CrdMissingError, crd.AccessDeniedError, config.ConfigError)
WORKER_IDLE_SECONDS = 0.05


def run(settings: Settings, endpoints: Endpoints, *, log_format: str, verbose: bool) -> int:
    """Runs this replica until it is stopped (``STOPPED``) or loses the lead; a start-up
    failure raises."""
    logs.configure(log_format, verbose=verbose)
    # The first line: what follows it is the start's own work, what came before it imports.
    logger.info("kubeledger %s starting (process %d)", metadata.version("kubeledger"),
                os.getpid())
    return asyncio.run(_replica(settings, endpoints))


async def _replica(settings: Settings, endpoints: Endpoints) -> int:
    replica = await Replica.start(settings, endpoints)
    try:
        if not await replica.lead():
            return STOPPED
        registry = kopf.OperatorRegistry()
        register(registry, settings)
        stop = asyncio.Event()
        replica.supervisor.spawn("the leadership watch", lambda: _when(replica.election.lost,
                                                                      stop))
        memo = kopf.Memo(replica=replica, stop=stop)
        await kopf.operator(registry=registry, clusterwide=True, standalone=True,
                            memo=memo, stop_flag=stop, memories=Forgetful())
        starting: asyncio.Task[Runtime] | None = memo.get("starting")
        if starting is not None and (error := _failure(starting)) is not None:
            raise error  # its start failed after kopf began to list
        return LEADERSHIP_LOST if replica.election.lost.is_set() else STOPPED
    finally:
        await replica.stop()


async def _when(happened: asyncio.Event, then: asyncio.Event) -> None:
    await happened.wait()
    then.set()


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Registers every handler the given settings call for."""

    @kopf.on.startup(registry=registry)
    async def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf would post its log lines as Events about the watched objects: noise.
        settings.posting.enabled = False
        # kopf lists a kind in one response unless told otherwise: 10,000 Deployments at
        # once, held whole while decoded.
        settings.watching.chunk_size = LIST_CHUNK
        settings.queueing.worker_limit = OBJECT_WORKERS
        settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
        settings.persistence.diffbase_storage = NoDiffBase()
        replica: Replica = memo.replica
        # kopf lists its kinds once this handler returns: as soon as the catch-up listing
        # is over, while the records are still read (10,000 objects: seconds each).
        listed = asyncio.get_running_loop().create_future()
        memo.intake = Intake()
        memo.starting = starting = asyncio.create_task(Runtime.start(
            operator_settings, replica.api, admission=replica.admission,
            audit=replica.audit, may_write=replica.may_write, intake=memo.intake,
            predecessor=replica.election.predecessor,
            listed=lambda: listed.set_result(None)), name="the start of the writer")
        await asyncio.wait([starting, listed], return_when=asyncio.FIRST_COMPLETED)
        if (error := _failure(starting)) is not None:
            if isinstance(error, START_FAILURES):
                raise kopf.PermanentError(str(error)) from error
            raise error
        replica.crd_installed = True
        starting.add_done_callback(functools.partial(_started, memo))

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own starts without kopf's default login handlers. The official
        # client finds the apiserver in a pod the way client-go does, from the
        # KUBERNETES_SERVICE_HOST/PORT the kubelet sets, where kopf's own service-account
        # login asks cluster DNS for kubernetes.default.svc, which a cluster may not run.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        # The records being written first (a live one waits for its audit event at most
        # this long), so that they keep their attribution.
        starting: asyncio.Task[Runtime] | None = memo.get("starting")
        if starting is not None and not starting.done():
            starting.cancel()  # stopped while the records were read: nothing was written
        runtime = None if starting is None else _started_runtime(starting)
        if runtime is not None:
            await runtime.finish(operator_settings.audit_wait_seconds + DRAIN_MARGIN_SECONDS)
        # Then hand the Lease over: the fence closes at once, so nothing more is written
        # here, and a standby need not wait for this replica's shippers to stop.
        await memo.replica.election.release()
        if runtime is not None:
            await runtime.stop()
        # kopf then waits 5 s for every task begun while it ran before it cancels them: the
        # receivers' keep-alive connections are such tasks, and so is kopf's own wait for
        # the stop flag when a signal stopped it. Stopping here lets the process exit now.
        await memo.replica.stop()
        memo.stop.set()

    operator_settings = settings
    for resource in kinds.audited(settings.watch_extra_kinds):
        kopf.on.event(resource.group, resource.version, resource.plural,
                      registry=registry)(_auditing(resource))


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf would deep-copy every event's body into an "essence" to compare
    with the last one handled, for change handlers that this operator does not register
    (its own diff is taken against its records)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class Forgetful(inventory.ResourceMemories):
    """kopf's memory of each object, made for each event and not kept: kopf keeps one per
    object it has seen (a copy of the memo, a throttler, the state of daemons and
    indexes: 9.6 MiB for 10,000 objects, tracemalloc) for daemons, timers, indexes and
    resume handlers, none of which this operator registers."""

    async def recall(self, raw_body: kopf.RawBody, *, memobase: Any = None,
                     noticed_by_listing: bool = False,
                     ephemeral: bool = False) -> inventory.ResourceMemory:
        return await super().recall(raw_body, memobase=memobase,
                                    noticed_by_listing=noticed_by_listing, ephemeral=True)


def _failure(starting: asyncio.Future[Runtime]) -> BaseException | None:
    """What the writer's start failed with; None while it runs, once it succeeded, or
    when it was stopped (cancelled)."""
    if not starting.done() or starting.cancelled():
        return None
    return starting.exception()


def _started_runtime(starting: asyncio.Future[Runtime]) -> Runtime | None:
    """The writer's services if its start is over and succeeded, else None."""
    if starting.done() and not starting.cancelled() and starting.exception() is None:
        return starting.result()
    return None


def _started(memo: kopf.Memo, starting: asyncio.Task[Runtime]) -> None:
    """The writer's start is over: its services serve the probes, or the operator stops
    (``_replica`` raises what failed)."""
    if _failure(starting) is not None:
        memo.stop.set()
    memo.replica.runtime = _started_runtime(starting)


def _auditing(resource: Resource) -> Any:
    async def audit(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        body = event["object"]
        if not resource.audits(body["metadata"]["name"]):
            return  # kopf cannot select by name: every other CRD comes here too
        intake: Intake = memo.intake
        intake.put(resource, event["type"], body)

    audit.__name__ = f"audit_{resource.plural}"
    return audit
