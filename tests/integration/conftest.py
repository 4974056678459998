"""Fixtures that run the real local stack for a test session and stop it afterwards.

The stack lives in a fresh directory under /tmp (the Elasticsearch service user must be
able to enter it) with its own free ports, so a test run never touches ``make dev-up``'s
stack. Every process is stopped by PID in the finalizer, whether the tests pass or fail.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from integration.kubectl import Kubectl
from integration.operator import Operator
from stack.cluster import Endpoints, Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Iterator[Endpoints]:
    directory = Path(tempfile.mkdtemp(prefix="kubeledger-stack-", dir="/tmp"))
    directory.chmod(0o755)
    local = Stack(directory)
    try:
        yield local.up()
    finally:
        local.down()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def kubectl(stack: Endpoints) -> Kubectl:
    """kubectl as admin; ``kubectl.as_user("alice")`` acts as alice."""
    return Kubectl(stack)


@pytest.fixture(scope="session")
def elasticsearch(stack: Endpoints) -> Iterator[Elasticsearch]:
    es = Elasticsearch(
        stack.elasticsearch_url,
        basic_auth=(stack.elasticsearch_username, stack.elasticsearch_password),
        request_timeout=30,
    )
    yield es
    es.close()


@pytest.fixture(scope="session")
def operator(stack: Endpoints) -> Iterator[Operator]:
    """The operator, running against the session's stack; stopped at the end."""
    running = Operator.for_stack(stack)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def demo(kubectl: Kubectl, operator: Operator) -> Kubectl:
    """kubectl as alice in namespace demo, with the operator running."""
    return kubectl.as_user("alice")
