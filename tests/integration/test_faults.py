"""Faults on the real stack, each under a steady stream of writes and each followed by the
same check (``ledger_check``): every write has one record and one document, and the chain
verifies from the cluster and from Elasticsearch.

The apiserver restarted; connections to the apiserver that stop answering; a watch
that cannot resume where it was (410 Gone: compacted away while it hung); the admission
webhook slower than its timeout; Elasticsearch down under the stream; the operator
killed in a burst and in a delivery batch.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from elasticsearch import Elasticsearch

from integration.kubectl import Kubectl
from integration.ledger_check import Stream, assert_recorded_once
from integration.manifests import deployment, unique
from integration.operator import Operator, apply_recorded
from integration.tcp_proxy import TcpProxy
from stack.cluster import HOST_WEBHOOK, Endpoints, Stack

# The chart's Lease timings (values.yaml): a writer rides out an apiserver that is away
# for less than the renew deadline, as it does when installed.
CHART_LEASE = {
    "KUBELEDGER_LEASE_DURATION_SECONDS": "15",
    "KUBELEDGER_LEASE_RENEW_DEADLINE_SECONDS": "10",
    "KUBELEDGER_LEASE_RETRY_PERIOD_SECONDS": "2",
}
# The issue asks for 10 minutes; make test waits less, and the note says what a 10-minute
# run gave (KUBELEDGER_FAULT_ES_OUTAGE_SECONDS=600).
ES_OUTAGE_SECONDS = float(os.environ.get("KUBELEDGER_FAULT_ES_OUTAGE_SECONDS", "60"))


def _deployments(demo: Kubectl, prefix: str, count: int = 2) -> list[str]:
    """``count`` new Deployments of no replicas (no pods, no rollouts), recorded."""
    names = [unique(prefix) for _ in range(count)]
    for name in names:
        apply_recorded(demo, deployment(name, replicas=0))
    return names


@pytest.fixture
def restarted(operator: Operator) -> Iterator[Operator]:
    """The session's operator, which a test restarts with settings of its own; it runs
    with the session's settings again afterwards, whatever the test did to it."""
    yield operator
    operator.stop()
    operator.start()


def _relists(operator: Operator) -> float:
    """Objects the operator was handed by listings so far: kopf lists again after a 410."""
    return operator.metric("kubeledger_watch_events_total", kind="Deployment", type="None")


def test_apiserver_restarted_in_a_stream(demo: Kubectl, kubectl: Kubectl, stack: Endpoints,
                                         restarted: Operator,
                                         elasticsearch: Elasticsearch) -> None:
    names = _deployments(demo, "restart")
    restarted.stop()
    restarted.start(**CHART_LEASE)
    with Stream(demo, names) as stream:
        stream.written(10)
        Stack(stack.directory).restart_apiserver()
        stream.written(len(stream.writes) + 10)
    assert stream.failures > 0  # writes were refused while it was away
    assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice")
    assert restarted.processes.running("operator"), "the operator did not ride out the restart"


@contextmanager
def _behind_a_proxy(operator: Operator, endpoints: Endpoints) -> Iterator[TcpProxy]:
    """The operator restarted with the chart's Lease timings, reaching the apiserver
    through a proxy the test controls (through a copy of the stack's kubeconfig)."""
    host, port = endpoints.apiserver_url.removeprefix("https://").split(":")
    with TcpProxy((host, int(port))) as proxy:
        config = json.loads(endpoints.kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        path = endpoints.directory / "kubeconfig-proxied"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        operator.stop()
        operator.start(KUBECONFIG=str(path), **CHART_LEASE)
        yield proxy


def test_hung_connections_to_the_apiserver_time_out_and_recording_resumes(
    demo: Kubectl, kubectl: Kubectl, stack: Endpoints, restarted: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    names = _deployments(demo, "hung")
    with _behind_a_proxy(restarted, stack) as proxy:
        with Stream(demo, names) as stream:
            stream.written(5)
            opened = proxy.opened
            assert proxy.freeze_open() > 0
            stream.written(len(stream.writes) + 15)
        # The watches wait for an event (or a bookmark) 70 s before they connect again.
        assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice",
                             timeout=240)
        assert proxy.opened > opened  # it connected again, past the hung connections
        assert restarted.processes.running("operator")


def test_a_watch_that_cannot_resume_lists_again_and_records_each_write(
    demo: Kubectl, kubectl: Kubectl, stack: Endpoints, restarted: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    """The operator's watches hang while writes go on; meanwhile etcd is compacted and
    the apiserver restarted, so its history is gone: the watches come back to 410 Gone,
    and kopf lists again. The writes of the gap are each recorded, from the audit events
    the operator received all along, not as one change after the fact."""
    names = _deployments(demo, "compacted")
    local = Stack(stack.directory)
    with _behind_a_proxy(restarted, stack) as proxy:
        listed = _relists(restarted)
        with Stream(demo, names) as stream:
            stream.written(5)
            proxy.freeze_open()
            stream.written(len(stream.writes) + 10)
            local.restart_apiserver(while_down=local.compact_etcd)
            stream.written(len(stream.writes) + 5)
        assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice",
                             timeout=240)
        assert _relists(restarted) > listed, "no watch listed again"


def test_a_webhook_slower_than_its_timeout_loses_no_identity(
    demo: Kubectl, kubectl: Kubectl, stack: Endpoints, operator: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    """The apiserver gives up on the webhook (failurePolicy Ignore) and persists the
    write: its record still has its verified initiator, from the audit event."""
    names = _deployments(demo, "slow-webhook")
    configuration = kubectl.json("get", "validatingwebhookconfiguration", HOST_WEBHOOK)
    webhook_url = configuration["webhooks"][0]["clientConfig"]["url"]
    with TcpProxy(("127.0.0.1", stack.ports["webhook"])) as proxy:
        proxy.hold()  # accepts, never answers
        _point_webhook(kubectl, f"https://127.0.0.1:{proxy.port}/validate")
        try:
            with Stream(demo, names, per_second=2) as stream:
                stream.written(8, timeout=180)
        finally:
            _point_webhook(kubectl, webhook_url)
        assert proxy.opened > 0  # the apiserver did call it
    tally = assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice")
    assert tally.records >= 8


def _point_webhook(kubectl: Kubectl, url: str) -> None:
    kubectl("patch", "validatingwebhookconfiguration", HOST_WEBHOOK, "--type=json", "-p",
            json.dumps([{"op": "replace", "path": "/webhooks/0/clientConfig/url",
                         "value": url}]))


def test_elasticsearch_down_under_a_steady_stream(
    demo: Kubectl, kubectl: Kubectl, stack: Endpoints, operator: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    names = _deployments(demo, "es-outage")
    log_start = operator.log.stat().st_size
    local = Stack(stack.directory)
    with Stream(demo, names) as stream:
        stream.written(5)
        assert local.processes.stop("elasticsearch")
        try:
            time.sleep(ES_OUTAGE_SECONDS)
        finally:
            local.up()  # Elasticsearch again, with its data
        stream.written(len(stream.writes) + 5)
    tally = assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice")
    assert tally.writes >= ES_OUTAGE_SECONDS * 2  # the stream went on all along
    # One clear line when the outage starts, one when delivery resumes; no flood.
    log = operator.log.read_text()[log_start:]
    assert log.count(f"cannot deliver to elasticsearch: cannot reach Elasticsearch at "
                     f"{stack.elasticsearch_url}") == 1
    assert log.count("delivery to elasticsearch resumed after") == 1


def test_operator_killed_in_a_burst_and_a_delivery_batch(
    demo: Kubectl, kubectl: Kubectl, stack: Endpoints, restarted: Operator,
    elasticsearch: Elasticsearch,
) -> None:
    """SIGKILL while records are being written and delivered three at a time. The writes
    of the downtime are recorded one by one from the audit events the apiserver sends
    again; what the killed writer was told of but had not recorded is at worst one
    record after the fact per object, never lost, never doubled."""
    names = _deployments(demo, "killed", count=3)
    restarted.stop()
    restarted.start(ELASTICSEARCH_BATCH_SIZE="3")
    with Stream(demo, names, per_second=20) as stream:
        stream.written(40)
        restarted.kill()
        stream.written(len(stream.writes) + 20)
        restarted.start(ELASTICSEARCH_BATCH_SIZE="3")
        stream.written(len(stream.writes) + 20)
    tally = assert_recorded_once(kubectl, elasticsearch, stack, stream, user="alice",
                                 exact=False)
    assert tally.merged <= len(names), tally
