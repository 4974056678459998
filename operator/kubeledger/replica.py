"""One replica of the operator: everything it runs whether it writes records or stands by.

Every replica serves the admission webhook and the audit receiver (the apiserver calls
whichever one its Service picks), relays what they learn to the other replicas
(``peers``), answers its probes, serves its metrics, and takes part in the election
(``leadership``). Only the replica holding the Lease goes on to watch and write: its
``runtime.Runtime`` is started by ``watching`` once ``lead`` returns.

Probes:

- Liveness fails when the event loop has not run for ``probes.STALL_SECONDS`` (a blocking call
  or a busy loop: nothing is being recorded) or when a supervised task keeps dying. It is
  answered from a thread of its own, so a stuck loop cannot hide.
- Readiness (whether the Service may send the apiserver's calls here): the receivers
  serve and the AuditRecord CRD is in place; for the writer, also the records are loaded
  and every watch has listed its kind. A standby that was ready stays ready while it
  takes over: the apiserver goes on calling its receivers meanwhile, and what they are
  told is what attributes the changes of the takeover.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kubeledger import heap, metrics, peers, probes, receivers
from kubeledger.config import Settings
from kubeledger.core.redaction import Redactor
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.audit import AuditLog
from kubeledger.kube import crd, errors
from kubeledger.kube.api import Kubernetes
from kubeledger.kube.client import KubeClient, load_client
from kubeledger.leadership import Election, Timing
from kubeledger.runtime import Runtime
from kubeledger.supervision import Supervisor

logger = logging.getLogger(__name__)

CRD_CHECK_SECONDS = 5.0
DRAIN_SECONDS = 3.0
# The Lease's own client: one renewal at a time, and a spare.
LEASE_CONCURRENT_CALLS = 2


def holder_identity(pod_name: str | None) -> str:
    """How the Lease names this process: its pod (or host), and a part of its own.

    A container restarted in the same pod is a new process that knows nothing of its
    predecessor's writes in flight: it must wait out the lease like any standby, not
    renew it as if it were the same holder.
    """
    return f"{pod_name or socket.gethostname()}_{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Endpoints:
    """Where the probes and the metrics are served (``http://HOST:PORT/PATH``); None: not."""

    liveness: str | None = None
    readiness: str | None = None
    metrics: str | None = None


@dataclass
class Replica:
    settings: Settings
    api: Kubernetes
    election: Election
    admission: AdmissionCache | None
    audit: AuditLog | None
    supervisor: Supervisor = field(default_factory=Supervisor)
    loop_watch: probes.LoopWatch = field(default_factory=probes.LoopWatch)
    # The writer's services, once this replica leads (set by ``watching``).
    runtime: Runtime | None = None
    crd_installed: bool = False
    ready_before_leading: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    relaying: receivers.Relaying | None = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    stopped: bool = False

    @classmethod
    async def start(cls, settings: Settings, endpoints: Endpoints) -> Replica:
        api = KubeClient(load_client(), timeout_seconds=settings.api_timeout_seconds)
        # The Lease has a client of its own (threads and connections), as client-go's
        # leader election does: a renewal must not queue behind a burst of record writes.
        # A call on a connection that hangs gives up within half the renew deadline, so
        # that another, on a fresh connection, can still renew in time.
        lease_api = KubeClient(
            load_client(concurrent_calls=LEASE_CONCURRENT_CALLS),
            timeout_seconds=min(settings.api_timeout_seconds,
                                settings.lease_renew_deadline_seconds / 2))
        election = Election(
            lease_api, namespace=settings.namespace, name=settings.lease_name,
            identity=holder_identity(settings.pod_name),
            timing=Timing(settings.lease_duration_seconds,
                          settings.lease_renew_deadline_seconds,
                          settings.lease_retry_period_seconds))
        # The audit log keeps the objects as written, redacted as records are.
        redactor = Redactor(settings.redaction_salt.get_secret_value().encode(),
                            settings.redaction)
        replica = cls(settings, api, election,
                      admission=AdmissionCache() if settings.webhook_port else None,
                      audit=AuditLog(redactor=redactor) if settings.audit_port else None)
        replica._serve_probes_and_metrics(endpoints)
        replica.supervisor.spawn("the event loop watch", replica.loop_watch.run)
        replica.supervisor.spawn("the CRD check", replica._check_crd)
        if (trim := heap.trimmer()) is not None:
            replica.supervisor.spawn("the return of freed memory",
                                     functools.partial(heap.trim_periodically, trim))
        await replica._start_receivers()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, replica.stopping.set)
        return replica

    async def lead(self) -> bool:
        """Waits as a standby until this replica leads (True) or is asked to stop (False)."""
        acquiring = asyncio.create_task(self.election.acquire())
        stopping = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
        if self.stopping.is_set():
            # Asked to stop while taking the Lease (a standby of an uninstalled release):
            # it must not start writing now, and its stop hands the Lease on (``stop``).
            return False
        # A replica that led at once (nobody else did) is not ready before it records live.
        self.ready_before_leading = acquiring.result() and self.crd_installed
        self.supervisor.spawn("the lease renewal", self.election.keep)
        return True

    def may_write(self) -> bool:
        """The ledger's fence: only while this replica's leadership lasts."""
        return self.election.leading

    def liveness_problems(self) -> list[str]:
        problems = probes.liveness_problems(self.loop_watch, lambda: self.supervisor.problems)
        if self.runtime is not None:
            problems.extend(self.runtime.supervisor.problems)
        return problems

    def readiness_problems(self) -> list[str]:
        problems = [] if self.crd_installed else ["the AuditRecord CRD is not installed yet"]
        if (self.election.leading and not self.ready_before_leading
                and not (self.runtime and self.runtime.ready)):
            problems.append("leading, but the records are not loaded or a watch has not "
                            "listed its kind yet")
        return problems

    async def stop(self) -> None:
        """Hands the Lease back (if the writer has not yet) and stops serving.

        The receivers and the relay go on for ``DRAIN_SECONDS`` first: the Service takes a
        stopping pod out of its endpoints at once, but proxies learn it a moment later,
        and what the apiserver tells this replica meanwhile must still reach the others.
        A second call does nothing.
        """
        if self.stopped:
            return
        self.stopped = True
        await self.election.release()
        if self.relaying is not None:
            await asyncio.sleep(DRAIN_SECONDS)
        await self.supervisor.stop()
        for close in self.closers:
            await close()
        for stop in self.stoppers:
            stop()

    def _serve_probes_and_metrics(self, endpoints: Endpoints) -> None:
        for url, check in ((endpoints.liveness, self.liveness_problems),
                           (endpoints.readiness, self.readiness_problems)):
            if url:
                server = probes.ProbeServer(url, check)
                server.start()
                self.stoppers.append(server.stop)
        if endpoints.metrics:
            self.stoppers.append(metrics.serve(endpoints.metrics).stop)

    async def _check_crd(self) -> None:
        """Until the CRD is there: the writer installs it, a standby waits for it."""
        while not self.crd_installed:
            try:
                self.crd_installed = await crd.established(self.api, crd.CRD_NAME)
            except errors.KubeError as error:
                logger.warning("could not check the AuditRecord CRD: %s", error)
            if not self.crd_installed:
                await asyncio.sleep(CRD_CHECK_SECONDS)

    async def _start_receivers(self) -> None:
        """Serves the admission webhook and the audit backend, where configured.

        The settings guarantee the certificates of a configured port (``config``).
        """
        settings = self.settings
        cert_dir = settings.webhook_cert_dir
        relaying = self.relaying = self._relaying()
        if self.admission is not None and settings.webhook_port and cert_dir:
            self.closers.append(await receivers.serve(
                receivers.admission_app(self.admission, audit=self.audit, relaying=relaying),
                settings.webhook_host, settings.webhook_port, receivers.server_tls(cert_dir)))
            logger.info("admission webhook listening on %s:%d", settings.webhook_host,
                        settings.webhook_port)
        client_ca = settings.audit_client_ca
        if self.audit is not None and settings.audit_port and cert_dir and client_ca:
            self.closers.append(await receivers.serve(
                receivers.audit_app(self.audit, relaying=relaying), settings.audit_host,
                settings.audit_port, receivers.server_tls(cert_dir, client_ca=client_ca)))
            logger.info("audit receiver listening on %s:%d", settings.audit_host,
                        settings.audit_port)

    def _relaying(self) -> receivers.Relaying | None:
        settings = self.settings
        if not (settings.peer_service and settings.webhook_port and settings.webhook_cert_dir):
            return None
        found = peers.Peers(self.api, namespace=settings.namespace,
                            service=settings.peer_service, own_address=settings.pod_ip)
        key = peers.relay_key(settings.redaction_salt.get_secret_value().encode())
        relay = peers.Relay(found, key=key, port=settings.webhook_port,
                            ca_file=settings.webhook_cert_dir / "ca.crt",
                            server_name=f"{settings.peer_service}.{settings.namespace}.svc")
        self.supervisor.spawn("the peer discovery", found.run)
        self.supervisor.spawn("the identity relay", relay.run)
        return receivers.Relaying(relay, key)
