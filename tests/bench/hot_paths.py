"""Throughput and memory of the operator's hot paths: ``make bench``.

Every watch event of an audited object takes the same steps (see
:mod:`kubeledger.recording.recorder`): the body is projected (:mod:`kubeledger.core.projection`) and
redacted (:mod:`kubeledger.core.redaction`), then compared with the object's baseline; only
when the two differ is the change classified (:mod:`kubeledger.core.classify`) and diffed
(:mod:`kubeledger.core.diff`). On one realistic Deployment (two containers, 25 env vars of which
6 hold secret-looking values, labels, annotations with ``last-applied-configuration``,
managedFields, status) this command measures:

- a change event: project + redact + classify + diff, for an image change;
- a status-churn event: project + redact + compare equal. Most events are of this kind
  (status updates, re-lists), so its cost is the operator's cost per event at rest;
- the memory one baseline holds: N baselines built from redacted projections, measured
  with :mod:`tracemalloc` (what stays allocated, divided by N; and the peak while
  building). The operator keeps one baseline per audited object for as long as it runs,
  so memory stays bounded only because a baseline is the projection alone: managedFields,
  status and the last-applied copy go with the body once an event is handled.

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

from kubeledger.core import classify, diff, projection
from kubeledger.core.baselines import Baselines, encode
from kubeledger.core.model import Subject
from kubeledger.core.redaction import Redactor

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
    context = classify.Context(
        namespace=NAMESPACE,
        older_revision_fingerprints=frozenset(
            projection.template_fingerprint(deployment(image)["spec"]["template"])
            for image in HISTORY_IMAGES
        ),
    )

    def change_event(body: Body) -> tuple[classify.Classification | None, int]:
        new = snapshot(redactor, body)
        verdict = classify.classify("Deployment", baseline, new, context)
        changes, _ = diff.diff(baseline, new, max_changes=64)
        return verdict, len(changes)

    baseline_encoded = encode(baseline)

    def churn_event(body: Body) -> bool:
        # As the recorder does it: the baseline is held encoded; equal bytes, no record.
        return encode(snapshot(redactor, body)) == baseline_encoded

    change_text = json.dumps(deployment(NEW_IMAGE))
    # The same Deployment a minute later: only status, resourceVersion and managedFields moved.
    churn_text = json.dumps(deployment(OLD_IMAGE, resource_version=90_412,
                                       status_time="09:14:05"))
    verdict, changed_fields = change_event(json.loads(change_text))
    described = (
        f"change = new image ({verdict.action.value if verdict else 'no record'}, "
        f"{changed_fields} fields changed); churn = status update "
        f"(projections equal: {churn_event(json.loads(churn_text))})"
    )
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    change_us = per_event_us(change_event, change_text)
    churn_us = per_event_us(churn_event, churn_text)
    cpu_share = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    rows = [
        *timing("change: project+redact+classify+diff", change_us),
        *timing("churn: project+redact+compare", churn_us),
    ]
    return described, rows, cpu_share


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
    return [
        (f"memory held per baseline (N={BASELINE_COUNT:,})", f"{per_baseline:,.0f}", "bytes",
         ""),
        (f"peak traced while building the {BASELINE_COUNT:,}", f"{peak / 2**20:,.1f}", "MiB",
         ""),
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
    subject = Subject(
        apiVersion=body["apiVersion"], kind=body["kind"], namespace=metadata["namespace"],
        name=metadata["name"], uid=metadata["uid"], resourceVersion=metadata["resourceVersion"],
    )
    baselines.remember(subject, snapshot(redactor, body))


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


# The Deployment measured: what a production Deployment applied with kubectl carries.


def deployment(
    image: str, *, resource_version: int = 90_411, status_time: str = "09:12:41"
) -> Body:
    labels = {
        "app.kubernetes.io/name": "checkout",
        "app.kubernetes.io/instance": "checkout-prod",
        "app.kubernetes.io/version": image.rsplit(":", 1)[1],
        "app.kubernetes.io/component": "api",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/managed-by": "kubectl",
        "team": "payments",
        "tier": "backend",
    }
    spec: Body = {
        "replicas": 6,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "template": {
            "metadata": {
                "creationTimestamp": None,
                "labels": labels,
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                                "kubectl.kubernetes.io/restartedAt": "2025-11-18T16:02:11Z"},
            },
            "spec": {
                "serviceAccountName": "checkout",
                "containers": [app_container(image), proxy_container()],
                "volumes": [
                    {"name": "config", "configMap": {"name": "checkout-config",
                                                     "defaultMode": 420}},
                    {"name": "envoy", "configMap": {"name": "checkout-envoy",
                                                    "defaultMode": 420}},
                ],
                "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
                "dnsPolicy": "ClusterFirst",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "terminationGracePeriodSeconds": 45,
            },
        },
    }
    metadata: Body = {
        "name": "checkout",
        "namespace": NAMESPACE,
        "uid": "d1c0b9a8-7f6e-4d5c-9b4a-39281706f5e4",
        "resourceVersion": str(resource_version),
        "generation": 14,
        "creationTimestamp": "2025-06-02T10:20:30Z",
        "labels": labels,
        "annotations": {
            "deployment.kubernetes.io/revision": "14",
            "example.com/owner": "payments-oncall@example.com",
            "example.com/runbook": "https://runbooks.example.com/payments/checkout",
        },
    }
    status = deployment_status(status_time)
    applied = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "checkout", "namespace": NAMESPACE, "labels": labels},
               "spec": spec}
    metadata["annotations"][projection.LAST_APPLIED_ANNOTATION] = json.dumps(applied)
    metadata["managedFields"] = [
        managed_fields("kubectl-client-side-apply", "2025-11-20T08:59:00Z",
                       {"metadata": {"labels": labels, "annotations": {}}, "spec": spec}),
        managed_fields("kube-controller-manager", f"2025-11-20T{status_time}Z",
                       {"status": status}, subresource="status"),
    ]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": spec, "status": status}


def app_container(image: str) -> Body:
    plain = {
        "LOG_LEVEL": "info", "LOG_FORMAT": "json", "HTTP_PORT": "8080", "METRICS_PORT": "9102",
        "DB_HOST": "checkout-db.payments.svc", "DB_PORT": "5432", "DB_NAME": "checkout",
        "DB_USER": "checkout", "REDIS_URL": "redis://redis.payments.svc:6379/0",
        "PAYMENT_GATEWAY_URL": "https://gateway.example.com/v2", "FEATURE_FLAGS": "one-click",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc:4317",
        "OTEL_SERVICE_NAME": "checkout", "TZ": "UTC", "CURRENCY_DEFAULT": "EUR",
    }
    # Made-up values, shaped like real ones.
    secret = {
        "DB_PASSWORD": "not-a-real-password-1", "PAYMENT_API_KEY": "test-key-0123456789abcdef",
        "JWT_SIGNING_SECRET": "bm90LWEtcmVhbC1zZWNyZXQ=", "REDIS_AUTH": "not-a-real-auth",
        "SENTRY_DSN": "https://public0123@sentry.example.com/42",
    }
    env: list[Body] = [{"name": name, "value": value} for name, value in plain.items()]
    env += [{"name": name, "value": value} for name, value in secret.items()]
    env += [
        {"name": "SMTP_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "checkout-smtp", "key": "password"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    probe: Body = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                   "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    return {
        "name": "checkout",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["serve", "--config=/etc/checkout/config.yaml", "--workers=4"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"memory": "1Gi"}},
        "livenessProbe": probe,
        "readinessProbe": {**probe, "httpGet": {**probe["httpGet"], "path": "/ready"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/checkout", "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def proxy_container() -> Body:
    return {
        "name": "envoy",
        "image": "envoyproxy/envoy:v1.30.2",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config-path", "/etc/envoy/envoy.yaml", "--log-level", "warn"],
        "env": [{"name": "ENVOY_UID", "value": "0"},
                {"name": "ADMIN_TOKEN", "value": "envoy-admin-7f3a9c"}],
        "ports": [{"name": "proxy", "containerPort": 15001, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [{"name": "envoy", "mountPath": "/etc/envoy", "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


def deployment_status(time_of_day: str) -> Body:
    stamp = f"2025-11-20T{time_of_day}Z"
    return {
        "observedGeneration": 14, "replicas": 6, "updatedReplicas": 6, "readyReplicas": 6,
        "availableReplicas": 6,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.",
             "lastUpdateTime": stamp, "lastTransitionTime": "2025-11-20T08:59:30Z"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": 'ReplicaSet "checkout-7d9c6b5f8" has successfully progressed.',
             "lastUpdateTime": stamp, "lastTransitionTime": "2025-06-02T10:20:30Z"},
        ],
    }


def managed_fields(manager: str, stamp: str, owned: Body, subresource: str = "") -> Body:
    entry: Body = {"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
                   "time": stamp, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(owned)}
    if subresource:
        entry["subresource"] = subresource
    return entry


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
