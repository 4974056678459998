"""Throughput and memory of the operator's hot paths: ``make bench``.

Every watch event of an audited object takes the same steps, all in
:func:`kubeledger.core.decision.decide`: the body is projected and redacted, then compared
with the object's baseline; only when the two differ is the change classified and
diffed. The bench calls that very function. On one realistic Deployment (two
containers, 25 env vars of which 6 hold secret-looking values, labels, annotations with
``last-applied-configuration``, managedFields, status; built with the unit tests' object
builders, :mod:`unit.objects`) this command measures:

- a change event: project + redact + classify + diff, for an image change;
- a status-churn event. Most events are of this kind (status updates, re-lists), so
  its cost is the operator's cost per event at rest. Measured twice: as it runs once a
  watch has shown the object (project + fingerprint + compare: the redaction is skipped
  when the unredacted projection's fingerprint is the baseline's), and as the first event
  after start-up, when the baseline comes from a record and has no fingerprint yet
  (project + redact + compare);
- the memory one baseline holds: N baselines built from redacted projections, measured
  with :mod:`tracemalloc` (what stays allocated, divided by N; and the peak while
  building). The operator keeps one baseline per audited object for as long as it runs,
  so memory stays bounded only because a baseline is the projection alone: managedFields,
  status and the last-applied copy go with the body once an event is handled;
- the memory one audited write holds while it is kept for a replay (``identity.written``:
  up to 5,000 of them, for 10 minutes after a burst), measured the same way.

Event bodies are decoded from JSON, as the watch stream delivers them, and cycled from a
pool of distinct copies, so no comparison is cut short by objects shared with the
baseline. Times are the median of several rounds on ``time.perf_counter``. The figures
are printed, never checked: they depend on the machine, which is named in the output.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from kubeledger.core import decision, kinds, projection, revisions
from kubeledger.core.baselines import Baseline, Baselines, encode
from kubeledger.core.redaction import Redactor
from kubeledger.identity.written import MAX_STATES, WrittenStates
from unit import identity_objects, objects

Body = dict[str, Any]
Row = tuple[str, str, str, str]  # measure, value, unit, remark

ROUNDS = 5
EVENTS_PER_ROUND = 2_000
POOL_SIZE = 64  # distinct decoded bodies the events cycle through
BASELINE_COUNT = 10_000
BODY_COUNT = 1_000  # whole bodies are only the yardstick: fewer, to keep memory modest
SALT = b"bench-salt"
NAMESPACE = "payments"
REGISTRY = "registry.example.com/payments/checkout"
OLD_IMAGE, NEW_IMAGE = f"{REGISTRY}:2.7.0", f"{REGISTRY}:2.8.0"
# Earlier revisions of the template: a change is checked against them for a rollback.
HISTORY_IMAGES = tuple(f"{REGISTRY}:2.{minor}.0" for minor in range(2, 7))


def main() -> None:
    redactor = Redactor(SALT)
    old_text = json.dumps(deployment(OLD_IMAGE))
    baseline = snapshot(redactor, json.loads(old_text))
    events, timing_rows, cpu_share = measure_events(redactor, baseline)
    memory_rows = measure_memory(redactor, old_text)

    print(f"machine: {platform.platform()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs; the timed loops got "
          f"{cpu_share:.0%} of one CPU (below 100%: other load slowed them)")
    print(f"object:  {describe(redactor, old_text, baseline)}")
    print(f"events:  {events}")
    print()
    print_table(
        ("measure", "median", "unit", f"min .. max of {ROUNDS} rounds x {EVENTS_PER_ROUND:,}"),
        [*timing_rows, *memory_rows],
    )


def measure_events(redactor: Redactor, baseline: Body) -> tuple[str, list[Row], float]:
    """The two event paths timed against ``baseline``: what they were, rows, CPU share."""
    history = tuple(revisions.template_fingerprint(snapshot(redactor, deployment(image)))
                    for image in (*HISTORY_IMAGES, OLD_IMAGE))
    held = Baselines()
    held.remember_encoded(decision.subject_of(kinds.DEPLOYMENTS, deployment(OLD_IMAGE)),
                          encode(baseline), templates=tuple(filter(None, history)))
    recorded = held.get(UID)  # as loaded from a record: no fingerprint
    assert recorded is not None
    seen = decision.decide(kinds.DEPLOYMENTS, "MODIFIED", deployment(OLD_IMAGE),
                           baseline=recorded, redactor=redactor)
    assert isinstance(seen, decision.Unchanged)
    watched = Baseline(recorded.subject, recorded.encoded, seen.fingerprint, recorded.templates)

    def event(body: Body, known: Baseline = watched) -> decision.Decision:
        return decision.decide(kinds.DEPLOYMENTS, "MODIFIED", body, baseline=known,
                               redactor=redactor)

    def first_event(body: Body) -> decision.Decision:
        return event(body, recorded)

    change_text = json.dumps(deployment(NEW_IMAGE, resource_version=90_412))
    # The same Deployment a minute later: only status, resourceVersion and managedFields moved.
    churn_text = json.dumps(deployment(OLD_IMAGE, resource_version=90_412,
                                       status_time="09:14:05"))
    change = event(json.loads(change_text))
    described = (
        f"change = new image ({describe_decision(change)}); churn = status update "
        f"({describe_decision(event(json.loads(churn_text)))})"
    )
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    change_us = per_event_us(event, change_text)
    churn_us = per_event_us(event, churn_text)
    first_churn_us = per_event_us(first_event, churn_text)
    cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    rows = [
        *timing("change: project+redact+classify+diff", change_us),
        *timing("churn: project+fingerprint+compare", churn_us),
        *timing("churn, first after start-up (+redact)", first_churn_us),
    ]
    return described, rows, cpu_share


def describe_decision(decided: decision.Decision) -> str:
    if isinstance(decided, decision.Draft):
        return f"{decided.action.value}, {len(decided.changes)} fields changed"
    return "no record: projections equal" if isinstance(decided, decision.Unchanged) else (
        "no record")


def per_event_us(handle: Callable[[Body], object], text: str) -> list[float]:
    """Microseconds per event of ``handle`` in each round, on decoded copies of ``text``."""
    pool = [json.loads(text) for _ in range(POOL_SIZE)]
    events = [pool[index % POOL_SIZE] for index in range(EVENTS_PER_ROUND)]
    timings = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for body in events:
            handle(body)
        timings.append((time.perf_counter() - start) / EVENTS_PER_ROUND * 1e6)
    return timings


def measure_memory(redactor: Redactor, text: str) -> list[Row]:
    """Bytes held per baseline, the peak while building them, and whole bodies to compare."""
    baselines = Baselines()
    per_baseline, peak = held_memory(
        lambda index: remember(baselines, redactor, json.loads(text), index), BASELINE_COUNT
    )
    bodies: list[Body] = []
    per_body, _ = held_memory(lambda _: bodies.append(json.loads(text)), BODY_COUNT)
    written = WrittenStates(redactor)
    per_write, _ = held_memory(lambda index: keep_write(written, json.loads(text), index),
                               MAX_STATES)
    return [
        (f"memory held per baseline (N={BASELINE_COUNT:,})", f"{per_baseline:,.0f}", "bytes",
         ""),
        (f"peak traced while building the {BASELINE_COUNT:,}", f"{peak / 2**20:,.1f}", "MiB",
         ""),
        (f"memory held per audited write kept for replay (N={MAX_STATES:,})",
         f"{per_write:,.0f}", "bytes", "identity.written: a full store"),
        (f"whole watch body instead (N={BODY_COUNT:,})", f"{per_body:,.0f}", "bytes",
         "for comparison: not what is kept"),
    ]


def held_memory(keep: Callable[[int], object], count: int) -> tuple[float, int]:
    """Bytes still allocated per call of ``keep(index)`` after ``count`` calls, and the peak.

    Only allocations made while tracing count: what ``keep`` stores, and whatever it
    decoded that the stored parts keep alive.
    """
    tracemalloc.start()
    try:
        for index in range(count):
            keep(index)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current / count, peak


def remember(baselines: Baselines, redactor: Redactor, body: Body, index: int) -> None:
    """Remembers ``body`` as the ``index``-th object, as the recorder does after a change."""
    metadata = body["metadata"]
    metadata["name"] = f"checkout-{index:05d}"
    metadata["uid"] = str(uuid.UUID(int=index))
    baselines.remember(decision.subject_of(kinds.DEPLOYMENTS, body), snapshot(redactor, body))


def keep_write(written: WrittenStates, body: Body, index: int) -> None:
    """Keeps ``body`` as the audit event of the ``index``-th write, as the receiver does."""
    metadata = body["metadata"]
    metadata["uid"] = str(uuid.UUID(int=index))
    metadata["resourceVersion"] = str(index)
    written.keep("update", body)


def snapshot(redactor: Redactor, body: Body) -> dict[str, Any]:
    return redactor.redact(projection.project(body))


def describe(redactor: Redactor, text: str, baseline: Body) -> str:
    containers = json.loads(text)["spec"]["template"]["spec"]["containers"]
    env = [var for container in containers for var in container["env"]]
    secret = sum(redactor.is_secret_name(var["name"]) for var in env if "value" in var)
    return (f"Deployment, {len(containers)} containers, {len(env)} env vars ({secret} "
            f"secret-looking values); {kilobytes(text)} as JSON, "
            f"{kilobytes(json.dumps(baseline))} projected and redacted")


def timing(label: str, timings: list[float]) -> Iterator[Row]:
    """A row for the median time per event, and one for the rate it makes."""
    median = statistics.median(timings)
    yield label, f"{median:,.1f}", "µs/event", f"{min(timings):,.1f} .. {max(timings):,.1f}"
    yield "", f"{1e6 / median:,.0f}", "events/s", ""


def print_table(header: Row, rows: list[Row]) -> None:
    """Label left-aligned, value right-aligned, the rest left-aligned."""
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header))]
    for row in (header, *rows):
        label, value, *rest = row
        cells = [label.ljust(widths[0]), value.rjust(widths[1]),
                 *(cell.ljust(width) for cell, width in zip(rest, widths[2:], strict=True))]
        print("  ".join(cells).rstrip())


def kilobytes(text: str) -> str:
    return f"{len(text.encode()) / 1000:.1f} kB"


# The Deployment measured: what a production Deployment applied with kubectl carries,
# built with the unit tests' builders and dressed up with what they leave out.

UID = "d1c0b9a8-7f6e-4d5c-9b4a-39281706f5e4"
LABELS = {
    "app.kubernetes.io/name": "checkout",
    "app.kubernetes.io/instance": "checkout-prod",
    "app.kubernetes.io/component": "api",
    "app.kubernetes.io/part-of": "shop",
    "app.kubernetes.io/managed-by": "kubectl",
    "team": "payments",
    "tier": "backend",
}
PLAIN_ENV = {
    "LOG_LEVEL": "info", "LOG_FORMAT": "json", "HTTP_PORT": "8080", "METRICS_PORT": "9102",
    "DB_HOST": "checkout-db.payments.svc", "DB_PORT": "5432", "DB_NAME": "checkout",
    "DB_USER": "checkout", "REDIS_URL": "redis://redis.payments.svc:6379/0",
    "PAYMENT_GATEWAY_URL": "https://gateway.example.com/v2", "FEATURE_FLAGS": "one-click",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4317",
    "OTEL_SERVICE_NAME": "checkout", "TZ": "UTC", "CURRENCY_DEFAULT": "EUR",
}
# Made-up values, shaped like real ones.
SECRET_ENV = {
    "DB_PASSWORD": "not-a-real-password-1", "PAYMENT_API_KEY": "test-key-0123456789abcdef",
    "JWT_SIGNING_SECRET": "bm90LWEtcmVhbC1zZWNyZXQ=", "REDIS_AUTH": "not-a-real-auth",
    "SENTRY_DSN": "https://public0123@sentry.example.com/42",
}


def deployment(image: str, *, resource_version: int = 90_411,
               status_time: str = "09:12:41") -> Body:
    labels = {**LABELS, "app.kubernetes.io/version": image.rsplit(":", 1)[1]}
    template = objects.pod_template(
        [app_container(image), proxy_container()], app="checkout",
        annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                     "kubectl.kubernetes.io/restartedAt": "2025-11-18T16:02:11Z"})
    template["metadata"]["labels"] = labels
    template["spec"].update({
        "serviceAccountName": "checkout",
        "volumes": [{"name": "config", "configMap": {"name": "checkout-config",
                                                     "defaultMode": 420}},
                    {"name": "envoy", "configMap": {"name": "checkout-envoy",
                                                    "defaultMode": 420}}],
        "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
        "terminationGracePeriodSeconds": 45,
    })
    body = objects.deployment(
        name="checkout", namespace=NAMESPACE, template=template, replicas=6, labels=labels,
        annotations={"example.com/owner": "payments-oncall@example.com",
                     "example.com/runbook": "https://runbooks.example.com/payments/checkout"},
        generation=14, revision="14",
        status=objects.deployment_status(generation=14, replicas=6, updated=6))
    for condition in body["status"]["conditions"]:
        condition["lastUpdateTime"] = f"2025-11-20T{status_time}Z"
    metadata = body["metadata"]
    metadata.update(uid=UID, resourceVersion=str(resource_version))
    metadata["managedFields"] = [
        identity_objects.managed_field(
            "kubectl-client-side-apply", "2025-11-20T08:59:00Z",
            fields=fields_v1({"metadata": {"labels": labels, "annotations": {}},
                              "spec": body["spec"]})),
        identity_objects.managed_field(
            "kube-controller-manager", f"2025-11-20T{status_time}Z", subresource="status",
            fields=fields_v1({"status": body["status"]})),
    ]
    return body


def app_container(image: str) -> Body:
    env = [objects.env_var(name, value) for name, value in {**PLAIN_ENV, **SECRET_ENV}.items()]
    env += [
        objects.env_from_secret("SMTP_PASSWORD", "checkout-smtp", "password"),
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    container = objects.container("checkout", image, env=env,
                                  args=["serve", "--config=/etc/checkout/config.yaml",
                                        "--workers=4"])
    probe: Body = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                   "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    container.update({
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"memory": "1Gi"}},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/ready"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/checkout", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    })
    return container


def proxy_container() -> Body:
    container = objects.container(
        "envoy", "envoyproxy/envoy:v1.30.2",
        env=[objects.env_var("ENVOY_UID", "0"),
             objects.env_var("ADMIN_TOKEN", "envoy-admin-7f3a9c")],
        args=["--config-path", "/etc/envoy/envoy.yaml", "--log-level", "warn"])
    container.update({
        "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "envoy", "mountPath": "/etc/envoy", "readOnly": True}],
    })
    return container


def fields_v1(value: Any) -> Any:
    """The ``fieldsV1`` set naming every field of ``value``, list items keyed by name."""
    if isinstance(value, dict):
        return {f"f:{key}": fields_v1(item) for key, item in value.items()}
    if isinstance(value, list) and value and all(
        isinstance(item, dict) and "name" in item for item in value
    ):
        return {f'k:{{"name":"{item["name"]}"}}': {".": {}, **fields_v1(item)} for item in value}
    return {}


if __name__ == "__main__":
    main()
