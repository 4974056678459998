"""Secrets never leak: not into a record, a document, the operator's log or its metrics.

A Deployment carries a fresh random secret in each place people put one (an env var, a
``--flag=value`` and a ``--flag value`` argument, a shell script in ``command``, secret-
looking annotations), applied with ``kubectl apply`` so that the
``last-applied-configuration`` annotation holds all of them at once; then every secret is
changed. Every AuditRecord in the cluster, every document of every kubeledger index, every
line of the operator's log and its /metrics are searched for every value, old and new.

Since each value is random and new, finding it anywhere can only be a leak. A failure
names the placement and where it was found, never the value: no assertion here compares
or prints a text that could hold a secret. The values next to the secrets that are not
secret must stay readable, and a changed secret must still show as a change.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch

from integration.documents import delivered, every_document
from integration.kubectl import Kubectl
from integration.manifests import deployment, unique
from integration.operator import Operator, uid_of, wait_for_action
from kubeledger.core import projection, redaction

ENV = "env var DB_PASSWORD"
FLAG_ASSIGNED = "args --db-password=VALUE"
FLAG_SPACED = "args --token VALUE (two items)"
SCRIPT_ASSIGNED = "command sh -c '--api-key=VALUE'"
SCRIPT_SPACED = "command sh -c '--client-secret VALUE'"
ANNOTATION = "annotation example.com/api-token"
TEMPLATE_ANNOTATION = "pod template annotation example.com/db-credentials"
PLACEMENTS = (ENV, FLAG_ASSIGNED, FLAG_SPACED, SCRIPT_ASSIGNED, SCRIPT_SPACED, ANNOTATION,
              TEMPLATE_ANNOTATION)

CONTAINER = "spec.template.spec.containers[name=app]"
MARKER = re.compile(re.escape(redaction.MARKER_PREFIX) + r"[0-9a-f]{32}")

Placement = str
Where = str


@dataclass(frozen=True)
class Readable:
    """Values beside the secrets that are not secret: a record must show them as written."""

    log_level: str
    team: str

    @classmethod
    def fresh(cls) -> Readable:
        return cls(unique("level"), unique("team"))


def _fresh_secrets() -> dict[Placement, str]:
    # Random, like real secrets, and new: no other test or run can have written them.
    return {placement: secrets.token_hex(16) for placement in PLACEMENTS}


def _manifest(name: str, secret: Mapping[Placement, str], readable: Readable) -> dict[str, Any]:
    # No replicas: no pod ever runs the script, and the rollout completes at once.
    manifest = deployment(name, replicas=0, env={"DB_PASSWORD": secret[ENV],
                                                 "LOG_LEVEL": readable.log_level})
    manifest["metadata"]["annotations"] = {"example.com/api-token": secret[ANNOTATION],
                                           "example.com/team": readable.team}
    template = manifest["spec"]["template"]
    template["metadata"]["annotations"] = {
        "example.com/db-credentials": secret[TEMPLATE_ANNOTATION]}
    container = template["spec"]["containers"][0]
    container["command"] = [
        "sh", "-c", f"exec server --api-key={secret[SCRIPT_ASSIGNED]} "
                    f"--client-secret {secret[SCRIPT_SPACED]} --verbose"]
    container["args"] = [f"--db-password={secret[FLAG_ASSIGNED]}", "--token",
                         secret[FLAG_SPACED]]
    return manifest


def _found(places: Iterable[tuple[Where, str]],
           secret: Mapping[Placement, str]) -> list[tuple[Placement, Where]]:
    """(placement, where) for each secret value that occurs in one of the texts."""
    return [(placement, where) for where, text in places
            for placement, value in secret.items() if value in text]


def _report(leaks: list[tuple[Placement, Where]]) -> str:
    """Where each secret was found, one line each: the whole list, never a value."""
    return f"{len(leaks)} secrets found:\n" + "\n".join(
        f"  {placement} in {where}" for placement, where in leaks)


def _records(kubectl: Kubectl) -> Iterable[tuple[Where, str]]:
    for record in kubectl.json("get", "auditrecords")["items"]:
        yield f"record {record['metadata']['name']}", json.dumps(record)


def _documents(es: Elasticsearch) -> Iterable[tuple[Where, str]]:
    for document in every_document(es):
        yield f"document {document['_index']}/{document['_id']}", json.dumps(document)


def _log_lines(operator: Operator) -> Iterable[tuple[Where, str]]:
    lines = operator.log.read_text(errors="replace").splitlines()
    return ((f"operator log line {number}", line) for number, line in enumerate(lines, 1))


def _changes(record: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["path"]: (c.get("old"), c.get("new")) for c in record["spec"].get("changes", [])}


def _is_marker(value: object) -> bool:
    return isinstance(value, str) and MARKER.fullmatch(value) is not None


def _markers_in(value: object) -> list[str]:
    return MARKER.findall(json.dumps(value))


def _unmarked_in_snapshot(snapshot: Mapping[str, Any]) -> list[Placement]:
    """The placements whose value the snapshot does not show as a marker, where expected."""
    container = snapshot["spec"]["template"]["spec"]["containers"][0]
    env = {var["name"]: var.get("value") for var in container["env"]}
    args, script = container["args"], container["command"][2]
    marked = {
        ENV: _is_marker(env["DB_PASSWORD"]),
        FLAG_ASSIGNED: args[0].startswith("--db-password=")
        and _is_marker(args[0].removeprefix("--db-password=")),
        FLAG_SPACED: args[1] == "--token" and _is_marker(args[2]),
        SCRIPT_ASSIGNED: re.search(rf"--api-key={MARKER.pattern} ", script) is not None,
        SCRIPT_SPACED: re.search(rf"--client-secret {MARKER.pattern} ", script) is not None,
        ANNOTATION: _is_marker(snapshot["metadata"]["annotations"]["example.com/api-token"]),
        TEMPLATE_ANNOTATION: _is_marker(
            snapshot["spec"]["template"]["metadata"]["annotations"]["example.com/db-credentials"]),
    }
    return [placement for placement, ok in marked.items() if not ok]


def _readable_in_snapshot(snapshot: Mapping[str, Any]) -> Readable:
    container = snapshot["spec"]["template"]["spec"]["containers"][0]
    env = {var["name"]: var.get("value") for var in container["env"]}
    return Readable(env["LOG_LEVEL"], snapshot["metadata"]["annotations"]["example.com/team"])


def _unseen_changes(changes: Mapping[str, tuple[Any, Any]]) -> list[Placement]:
    """The placements whose change the record does not show as markers that differ."""
    scalar_paths = {
        ENV: f"{CONTAINER}.env[name=DB_PASSWORD].value",
        ANNOTATION: 'metadata.annotations["example.com/api-token"]',
        TEMPLATE_ANNOTATION: 'spec.template.metadata.annotations["example.com/db-credentials"]',
    }
    unseen = [placement for placement, path in scalar_paths.items()
              if not (path in changes and all(map(_is_marker, changes[path]))
                      and changes[path][0] != changes[path][1])]
    # A list of scalars changes whole: each side keeps its markers, and they all differ.
    list_paths = {(FLAG_ASSIGNED, FLAG_SPACED): f"{CONTAINER}.args",
                  (SCRIPT_ASSIGNED, SCRIPT_SPACED): f"{CONTAINER}.command"}
    for placements, path in list_paths.items():
        old, new = changes.get(path, (None, None))
        old_markers, new_markers = _markers_in(old), _markers_in(new)
        if not (len(old_markers) == len(new_markers) == 2
                and not set(old_markers) & set(new_markers)):
            unseen += placements
    return unseen


def _last_applied_holds(kubectl: Kubectl, name: str, secret: Mapping[Placement, str]) -> bool:
    """Whether the live object's last-applied-configuration carries every secret."""
    metadata = kubectl.json("-n", "demo", "get", "deployment", name)["metadata"]
    last_applied = metadata.get("annotations", {}).get(projection.LAST_APPLIED_ANNOTATION, "")
    return all(value in last_applied for value in secret.values())


def test_secrets_reach_no_record_document_log_or_metric(
    demo: Kubectl, kubectl: Kubectl, operator: Operator, elasticsearch: Elasticsearch,
) -> None:
    name = unique("secrets")
    first, changed = _fresh_secrets(), _fresh_secrets()
    readable = Readable.fresh()
    readable_later = Readable(unique("level"), readable.team)
    try:
        manifest = _manifest(name, first, readable)
        demo.apply(manifest)
        uid = uid_of(demo, manifest)
        created = wait_for_action(demo, uid, "created")
        # Else the apply below would not test that annotation at all.
        assert _last_applied_holds(kubectl, name, first)

        demo.apply(_manifest(name, changed, readable_later))
        assert _last_applied_holds(kubectl, name, changed)
        config_changed = wait_for_action(demo, uid, "config-changed")
        docs = delivered(elasticsearch, kubectl, uid, 2)

        every_secret = {f"{placement} (first)": value for placement, value in first.items()}
        every_secret |= {f"{placement} (changed)": value for placement, value in changed.items()}
        leaks = [
            *_found(_records(kubectl), every_secret),
            *_found(_documents(elasticsearch), every_secret),
            *_found(_log_lines(operator), every_secret),
            *_found([("metrics", operator.metrics())], every_secret),
        ]
        assert leaks == [], _report(leaks)

        # The copy of last-applied-configuration is gone, not merely redacted.
        mentions = [where for where, text in [*_records(kubectl), *_documents(elasticsearch)]
                    if projection.LAST_APPLIED_ANNOTATION in text]
        assert mentions == []

        # Not secret, so readable: in the snapshots, in the change, in the documents.
        assert _readable_in_snapshot(created["spec"]["snapshot"]) == readable
        assert _readable_in_snapshot(config_changed["spec"]["snapshot"]) == readable_later
        changes = _changes(config_changed)
        assert changes[f"{CONTAINER}.env[name=LOG_LEVEL].value"] == (
            readable.log_level, readable_later.log_level)
        documented = json.dumps(docs)
        assert readable.log_level in documented
        assert readable_later.log_level in documented

        # Secret, so a marker in each snapshot; and a change of each shows as one.
        assert _unmarked_in_snapshot(created["spec"]["snapshot"]) == []
        assert _unmarked_in_snapshot(config_changed["spec"]["snapshot"]) == []
        assert _unseen_changes(changes) == []
        # The searches above looked where the operator writes: it did write there.
        assert operator.log.stat().st_size > 0
        assert "kubeledger_records_written_total" in operator.metrics()
    finally:
        kubectl("-n", "demo", "delete", "deployment", name, "--ignore-not-found")
