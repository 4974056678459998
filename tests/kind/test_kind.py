"""End to end on kind, for users with Docker: ``make e2e-kind`` (not part of ``make test``).

pytest-kind creates a kind cluster; the image is built from the Dockerfile with Docker,
loaded into the cluster and installed through the chart; one change must come back as a
record naming the authenticated user. Our own machines have no Docker engine: there the
Makefile target stops before pytest with one line saying so, and ``make test`` runs the
same checks on the project's own cluster (tests/e2e).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_kind import KindCluster

from stack import helm_tool

CHECKOUT = Path(__file__).resolve().parents[2]
IMAGE = "kubeledger:e2e-kind"
NAMESPACE = "kubeledger"
# kind's kubeconfig authenticates as this user (a client certificate, O=kubeadm:cluster-admins).
KIND_ADMIN = "kubernetes-admin"


@pytest.fixture(scope="module")
def installed(kind_cluster: KindCluster) -> Iterator[KindCluster]:
    subprocess.run(["docker", "build", "--tag", IMAGE, str(CHECKOUT)], check=True)
    kind_cluster.load_docker_image(IMAGE)
    repository, tag = IMAGE.split(":")
    subprocess.run([
        str(helm_tool.ensure_helm()), "upgrade", "--install", "kubeledger",
        str(CHECKOUT / "helm" / "kubeledger"), "--namespace", NAMESPACE, "--create-namespace",
        "--kubeconfig", str(kind_cluster.kubeconfig_path), "--set", "clusterName=kind",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m",
    ], check=True)
    yield kind_cluster


def created_record(cluster: KindCluster, name: str) -> dict[str, Any] | None:
    listed = json.loads(cluster.kubectl("get", "auditrecords", "-o", "json", "-l",
                                        f"kubeledger.io/subject-name={name},"
                                        "kubeledger.io/action=created"))
    items: list[dict[str, Any]] = listed["items"]
    return items[0] if items else None


def test_a_change_is_recorded_with_its_verified_initiator(installed: KindCluster) -> None:
    installed.kubectl("create", "deployment", "e2e-web", "--image=registry.k8s.io/pause:3.10")
    deadline = time.monotonic() + 60
    while (created := created_record(installed, "e2e-web")) is None:
        assert time.monotonic() < deadline, "no AuditRecord for deployment e2e-web after 60 s"
        time.sleep(1)
    assert created["spec"]["initiator"]["username"] == KIND_ADMIN
    assert created["spec"]["initiator"]["verified"] is True
