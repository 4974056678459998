"""The metrics move with the work: recorder, attribution and shipper driven through the
fakes (the shipper's from ``test_delivery``), and the endpoint that serves them.

The registry is process-wide, so every assertion is about a change (``Delta``), never an
absolute value.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kubeledger import endpoint, metrics
from kubeledger.core import chain, decision, kinds
from kubeledger.core.baselines import Baselines
from kubeledger.core.redaction import Redactor
from kubeledger.identity.admission import AdmissionCache
from kubeledger.identity.attribution import Attributor
from kubeledger.identity.audit import AuditLog
from kubeledger.recording.ledger import Ledger
from kubeledger.recording.recorder import Recorder
from unit import identity_objects as io
from unit import objects
from unit.fake_kube import FakeKube
from unit.test_delivery import FakeSink, shipper_for, shipping, until, write

Body = dict[str, Any]


class Delta:
    """How much one sample has grown since this was made."""

    def __init__(self, name: str, **labels: str) -> None:
        self._name, self._labels = name, labels
        self._before = self._now()

    def _now(self) -> float:
        return metrics.REGISTRY.get_sample_value(self._name, self._labels) or 0.0

    def __call__(self) -> float:
        return self._now() - self._before


def written(action: str) -> Delta:
    return Delta("kubeledger_records_written_total", kind="Deployment", action=action)


def skipped(reason: str) -> Delta:
    return Delta("kubeledger_changes_skipped_total", kind="Deployment", reason=reason)


def events(event_type: str) -> Delta:
    return Delta("kubeledger_watch_events_total", kind="Deployment", type=event_type)


def joins(source: str, outcome: str) -> Delta:
    return Delta("kubeledger_identity_joins_total", source=source, outcome=outcome)


def unresolved() -> Delta:
    return Delta("kubeledger_unresolved_initiators_total", kind="Deployment")


def recorder_over(kube: FakeKube) -> Recorder:
    return Recorder(cluster="prod", redactor=Redactor(b"salt"), baselines=Baselines(),
                    ledger=Ledger(kube, chain.Head()))


def later(body: Body, version: str) -> Body:
    body["metadata"]["resourceVersion"] = version
    return body


async def test_a_new_record_is_counted_by_kind_and_action_with_its_unresolved_initiator() -> None:
    added, created, nobody = events("ADDED"), written("created"), unresolved()

    await recorder_over(FakeKube()).observe(kinds.DEPLOYMENTS, "ADDED", objects.deployment())

    assert (added(), created(), nobody()) == (1, 1, 1)


async def test_a_change_recorded_before_is_not_counted_again() -> None:
    kube = FakeKube()
    await recorder_over(kube).observe(kinds.DEPLOYMENTS, "ADDED", objects.deployment())
    listed, created = events("None"), written("created")

    # A restart that lost its baselines meets the same change in the listing.
    restarted = recorder_over(kube)
    assert await restarted.observe(kinds.DEPLOYMENTS, None, objects.deployment()) is None

    assert (listed(), created()) == (1, 0)


def delivered(name: str) -> Delta:
    return Delta(f"kubeledger_{name}", namespace="shop")


async def test_delivery_is_counted_by_namespace_as_records_are_written() -> None:
    recorder = recorder_over(FakeKube())
    deployments, failures, failed_changes, restores = (
        delivered("deployments_total"), delivered("failed_rollouts_total"),
        delivered("failed_changes_total"), delivered("time_to_restore_seconds_count"))
    broken = objects.pod_template([objects.container(image="registry.example/web:broken")])
    fixed = objects.pod_template([objects.container(image="registry.example/web:2")])

    # Created with its rollout complete: a deployment. Then a rollout that fails, and
    # one that completes and so restores it.
    await recorder.observe(kinds.DEPLOYMENTS, "ADDED", objects.deployment())
    await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", later(objects.deployment(
        template=broken, generation=2, status=objects.deployment_status(
            generation=2, updated=1, available=0, deadline_exceeded=True)), "2"))
    await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", later(objects.deployment(
        template=fixed, generation=3, status=objects.deployment_status(generation=3)), "3"))

    assert (deployments(), failures(), failed_changes(), restores()) == (2, 1, 1, 1)


async def test_the_integration_tests_history_counts_five_one_one_and_two() -> None:
    # tests/integration/test_report.py's history, as the watch shows it to the recorder:
    # each change first (the controller has not seen it: progressing), then its end.
    recorder = recorder_over(FakeKube())
    counters = [delivered(f"{name}_total") for name in (
        "deployments", "rollbacks", "failed_rollouts", "failed_changes")]
    first, second = objects.container(image="app:1"), objects.container(image="app:2")
    configured = objects.container(image="app:2", env=[objects.env_var("STEP", "config")])
    fixed = objects.container(image="app:1", env=[objects.env_var("STEP", "fix")])
    last = objects.container(image="app:1", env=[objects.env_var("STEP", "last")])
    steps = [(first, "complete"), (second, "complete"), (configured, "complete"),
             (second, "complete"),  # kubectl rollout undo: revision 2 again
             (objects.container(image="app:missing"), "failed"),
             (fixed, "complete"), (last, "complete")]
    version = 0
    for generation, (container, ending) in enumerate(steps, start=1):
        template = objects.pod_template([container])
        for status in (objects.deployment_status(generation=generation,
                                                 observed_generation=generation - 1),
                       objects.deployment_status(generation=generation, updated=1,
                                                 available=0, deadline_exceeded=True)
                       if ending == "failed" else
                       objects.deployment_status(generation=generation)):
            version += 1
            await recorder.observe(kinds.DEPLOYMENTS, "ADDED" if version == 1 else "MODIFIED",
                                   later(objects.deployment(template=template,
                                                            generation=generation,
                                                            status=status), str(version)))

    assert [counted() for counted in counters] == [5, 1, 1, 2]


async def test_events_without_a_record_are_counted_by_reason() -> None:
    recorder = recorder_over(FakeKube())
    await recorder.observe(kinds.DEPLOYMENTS, "ADDED", objects.deployment())
    unchanged, rebaseline, modified = skipped("unchanged"), skipped("rebaseline"), events(
        "MODIFIED")
    churn = later(objects.deployment(), "2")
    churn["status"]["conditions"][0]["lastUpdateTime"] = "2025-11-20T10:00:00Z"
    progressing = later(objects.deployment(
        status=objects.deployment_status(updated=3, available=2)), "3")

    assert await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", churn) is None
    assert await recorder.observe(kinds.DEPLOYMENTS, "MODIFIED", progressing) is None

    assert (unchanged(), rebaseline(), modified()) == (1, 1, 2)


async def test_each_identity_source_asked_about_a_change_counts_a_hit_or_a_miss() -> None:
    body = objects.deployment()
    log = AuditLog()
    log.ingest(io.event_list(io.audit_event("update", body, user=io.user_info(io.ALICE))))
    attribute = Attributor(FakeKube(), admission=AdmissionCache(), audit=log,
                           audit_wait_seconds=0.01, commit_annotations=())
    subject = decision.subject_of(kinds.DEPLOYMENTS, body)
    audit_hit, admission_miss = joins("audit", "hit"), joins("admission", "miss")
    audit_miss, admission_hit = joins("audit", "miss"), joins("admission", "hit")

    await attribute(subject, body, deleted=False, wait_for_audit=True)
    await attribute(subject, body, deleted=False, wait_for_audit=False)  # after the fact: asked too

    assert (audit_hit(), admission_miss()) == (2, 2)
    assert (audit_miss(), admission_hit()) == (0, 0)


def sink_metric(name: str) -> Delta:
    return Delta(name, sink=FakeSink.name)


def sink_gauge(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"sink": FakeSink.name})


async def test_delivery_counts_documents_failed_attempts_and_the_backlog() -> None:
    kube, sink = FakeKube(), FakeSink(failures=1_000)
    ledger = Ledger(kube, chain.Head())
    delivered = sink_metric("kubeledger_documents_delivered_total")
    failed = sink_metric("kubeledger_delivery_errors_total")
    shipper = shipper_for(kube, sink)
    ledger.on_written.append(shipper.offer)
    started = time.time()

    async with shipping(shipper):
        await write(ledger, 3)
        await until(lambda: failed() >= 2)
        backlog_in_outage = sink_gauge("kubeledger_delivery_backlog_records")
        attempts_failed = failed()
        sink.failures = 0
        await until(lambda: shipper.position == 3)

    assert backlog_in_outage == 3
    assert sink_gauge("kubeledger_delivery_backlog_records") == 0
    assert delivered() == 3
    assert failed() == attempts_failed  # the attempts that landed are not errors
    last = sink_gauge("kubeledger_last_delivery_timestamp_seconds")
    assert last is not None and last >= started


@pytest.fixture
def server() -> Iterator[endpoint.Endpoint]:
    served = metrics.serve("http://127.0.0.1:0/metrics")
    try:
        yield served
    finally:
        served.stop()


def get(port: int, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def scrape(port: int, accept: str) -> tuple[str, str]:
    """The content type and the body of /metrics, asked for with ``accept``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics", headers={"Accept": accept})
        response = connection.getresponse()
        return response.getheader("Content-Type", ""), response.read().decode()
    finally:
        connection.close()


def test_the_endpoint_serves_our_metrics_at_its_path_only(server: endpoint.Endpoint) -> None:
    status, text = get(server.port, "/metrics")

    assert status == 200
    assert "kubeledger_records_written_total" in text
    assert "process_resident_memory_bytes" in text
    assert get(server.port, "/metrics?debug=1")[0] == 200
    assert get(server.port, "/")[0] == 404
    assert get(server.port, "/metricsx")[0] == 404


def test_the_format_is_the_one_the_scraper_asks_for(server: endpoint.Endpoint) -> None:
    prometheus = scrape(server.port, "application/openmetrics-text; version=1.0.0")
    browser = scrape(server.port, "text/html")

    assert prometheus[0].startswith("application/openmetrics-text; version=1.0.0")
    assert prometheus[1].endswith("# EOF\n")
    assert browser[0].startswith("text/plain; version=0.0.4")
    assert "# EOF" not in browser[1]


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:9090/metrics",
    "http://127.0.0.1/metrics",
    "http://:9090/metrics",
    "http://127.0.0.1:port/metrics",
    "127.0.0.1:9090",
])
def test_a_url_that_is_not_http_host_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="expected http://HOST:PORT/metrics"):
        metrics.serve(url)
