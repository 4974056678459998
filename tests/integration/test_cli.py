"""The reading commands on the real cluster, as an administrator runs them: a Deployment's
history across two lives with its initiators, one record shown, the kubectl plugin form,
and one line with its exit status for what cannot be shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.kubectl import Kubectl, eventually
from integration.manifests import TEST_IMAGE, TEST_IMAGE_2, deployment, unique
from integration.operator import (
    ROLLOUT_STATUS,
    Operator,
    apply_recorded,
    uid_of,
    wait_for_action,
)
from kubeledger.cli import exits
from stack.cluster import Endpoints

BIN = Path(sys.executable).parent


def ledger(endpoints: Endpoints, *args: str, context: str = "admin", plugin: bool = False,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kubeledger ARGS``, or ``kubectl ledger ARGS`` (the plugin found on PATH)."""
    command = [str(endpoints.kubectl), "ledger"] if plugin else [str(BIN / "kubeledger")]
    return subprocess.run(
        [*command, *args, "--kubeconfig", str(endpoints.kubeconfig), "--context", context],
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(endpoints.directory), **(env or {})},
        capture_output=True, text=True, timeout=60, check=False)


def table_rows(output: str) -> list[list[str]]:
    """A history table's rows as cells (columns are three or more spaces apart)."""
    header, *lines = output.splitlines()
    assert header.split() == ["TIME", "ACTION", "INITIATOR", "TOOL", "COMMIT", "CHANGES"]
    return [[cell.strip() for cell in line.split("   ") if cell.strip()] for line in lines]


@pytest.fixture(scope="module")
def two_lives(kubectl: Kubectl, operator: Operator) -> tuple[str, list[str], dict[str, Any]]:
    """demo/NAME: made by alice, image changed by bob, scaled by alice, deleted by alice,
    made again by bob. Returns the name, both uids, and bob's image-changed record."""
    alice, bob = kubectl.as_user("alice"), kubectl.as_user("bob")
    name = unique("history")
    first, _ = apply_recorded(alice, deployment(name))
    bob("-n", "demo", "set", "image", f"deployment/{name}", f"app={TEST_IMAGE_2}")
    changed = wait_for_action(kubectl, first, "image-changed")
    alice("-n", "demo", "scale", f"deployment/{name}", "--replicas=2")
    wait_for_action(kubectl, first, "scaled")
    alice("-n", "demo", "delete", "deployment", name, "--wait=true")
    wait_for_action(kubectl, first, "deleted")
    second, _ = apply_recorded(bob, deployment(name))
    assert uid_of(kubectl, deployment(name)) == second
    return name, [first, second], changed


def test_history_lists_every_change_of_both_lives_in_time_order_with_its_initiator(
        stack: Endpoints, two_lives: tuple[str, list[str], dict[str, Any]]) -> None:
    name, uids, _ = two_lives
    done = ledger(stack, "history", f"deployment/{name}", "-n", "demo")

    assert done.returncode == 0, done.stderr
    rows = [row for row in table_rows(done.stdout) if row[1] not in ROLLOUT_STATUS]
    assert [(row[1], row[2]) for row in rows] == [
        ("created", "alice ✓"), ("image-changed", "bob ✓"), ("scaled", "alice ✓"),
        ("deleted", "alice ✓"), ("created", "bob ✓")]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert f"{TEST_IMAGE} -> {TEST_IMAGE_2}" in rows[1][-1]

    as_json = json.loads(ledger(stack, "history", f"deployment/{name}", "-n", "demo",
                                "-o", "json").stdout)
    assert {entry["subject"]["uid"] for entry in as_json} == set(uids)
    assert all("snapshot" not in entry for entry in as_json)


def test_history_filters_by_user_and_action_and_works_as_a_kubectl_plugin(
        stack: Endpoints, two_lives: tuple[str, list[str], dict[str, Any]]) -> None:
    name, _, _ = two_lives
    by_bob = json.loads(ledger(stack, "history", f"deploy/{name}", "-n", "demo", "--user",
                               "bob", "-o", "json").stdout)
    assert [entry["action"] for entry in by_bob
            if entry["action"] not in ROLLOUT_STATUS] == ["image-changed", "created"]

    plugin = ledger(stack, "history", f"deployment/{name}", "-n", "demo", "--action",
                    "scaled", plugin=True)
    assert plugin.returncode == 0, plugin.stderr
    assert [(row[1], row[2]) for row in table_rows(plugin.stdout)] == [("scaled", "alice ✓")]


def test_show_prints_one_record_with_its_diff_initiator_and_chain_position(
        stack: Endpoints, two_lives: tuple[str, list[str], dict[str, Any]]) -> None:
    _, _, changed = two_lives
    record = changed["metadata"]["name"]
    done = ledger(stack, "show", f"auditrecord/{record}")

    assert done.returncode == 0, done.stderr
    assert f"Record:     {record}\n" in done.stdout
    assert "Action:     image-changed (severity " in done.stdout
    assert "Initiator:  bob; verified, from " in done.stdout
    assert f"    - {TEST_IMAGE}\n    + {TEST_IMAGE_2}\n" in done.stdout
    assert f"Chain:      #{changed['spec']['chain']['sequence']}, previous " in done.stdout
    as_json = ledger(stack, "show", record, "-o", "json")
    assert json.loads(as_json.stdout)["spec"] == changed["spec"]


@pytest.mark.parametrize(("args", "context", "expected"), [
    (("history", "deployment/never-made-here", "-n", "demo"), "admin",
     (exits.NOT_FOUND, "kubeledger: no records of Deployment demo/never-made-here")),
    (("show", "deployment-never-written"), "admin",
     (exits.NOT_FOUND, "kubeledger: no AuditRecord named 'deployment-never-written'")),
    (("history", "deployment/web", "-n", "demo"), "alice",
     (exits.NO_ACCESS, 'kubeledger: not allowed to read AuditRecords: 403 Forbidden: '
                       'auditrecords.kubeledger.io is forbidden: User "alice" cannot list '
                       'resource "auditrecords" in API group "kubeledger.io" at the cluster '
                       'scope')),
])
def test_what_cannot_be_shown_is_one_line_and_its_exit_status(
        stack: Endpoints, operator: Operator, args: tuple[str, ...], context: str,
        expected: tuple[int, str]) -> None:
    done = ledger(stack, *args, context=context)

    status, message = expected
    assert (done.returncode, done.stderr, done.stdout) == (status, message + "\n", "")


def test_history_from_elasticsearch_is_the_same_timeline(
        stack: Endpoints, elasticsearch: Any,
        two_lives: tuple[str, list[str], dict[str, Any]]) -> None:
    name, uids, _ = two_lives
    from_cluster = json.loads(ledger(stack, "history", f"deployment/{name}", "-n", "demo",
                                     "-o", "json").stdout)
    env = {"ELASTICSEARCH_URL": stack.elasticsearch_url,
           "ELASTICSEARCH_USERNAME": stack.elasticsearch_username,
           "ELASTICSEARCH_PASSWORD": stack.elasticsearch_password,
           "ELASTICSEARCH_CA_CERTS": str(stack.elasticsearch_ca)}

    def searched() -> list[dict[str, Any]] | None:
        elasticsearch.indices.refresh(index="kubeledger-*")
        done = ledger(stack, "history", f"deployment/{name}", "-n", "demo", "--source",
                      "elasticsearch", "-o", "json", env=env)
        assert done.returncode == 0, done.stderr
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found if len(found) >= len(from_cluster) else None

    from_elasticsearch = eventually(searched, what="every record's document")
    assert [entry["record"] for entry in from_elasticsearch[:len(from_cluster)]] == [
        entry["record"] for entry in from_cluster]
    assert {entry["subject"]["uid"] for entry in from_elasticsearch} == set(uids)
