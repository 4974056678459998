"""Fixtures every suite that needs the real cluster shares: one stack per test session.

The stack (a single-node Kubernetes cluster and Elasticsearch, see ``stack``) lives in a
fresh directory under /tmp (the Elasticsearch service user must be able to enter it) with
its own free ports and network slot, so a test run never touches ``make dev-up``'s stack.
Everything it started is stopped in the finalizer, whether the tests pass or fail. The
end-to-end tests (tests/e2e) run first, with the operator installed by its chart; the
integration tests (tests/integration) then run the operator as a host process.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from integration.kubectl import Kubectl
from stack.cluster import Endpoints, Stack

# tests/kind needs pytest-kind and a Docker engine: only `make e2e-kind` runs it.
collect_ignore = [] if os.environ.get("KUBELEDGER_E2E_KIND") else ["kind"]

REAL_STACK_SUITES = {"integration", "e2e"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_STACK_SUITES & set(item.path.parts):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[Stack]:
    directory = Path(tempfile.mkdtemp(prefix="kubeledger-stack-", dir="/tmp"))
    directory.chmod(0o755)
    local = Stack(directory)
    try:
        yield local
    finally:
        local.purge()


@pytest.fixture(scope="session")
def stack(local_stack: Stack) -> Endpoints:
    return local_stack.up()


@pytest.fixture(scope="session")
def kubectl(stack: Endpoints) -> Kubectl:
    """kubectl as admin; ``kubectl.as_user("alice")`` acts as alice."""
    return Kubectl(stack)


@pytest.fixture(scope="session")
def elasticsearch(stack: Endpoints) -> Iterator[Elasticsearch]:
    es = Elasticsearch(
        stack.elasticsearch_url,
        basic_auth=(stack.elasticsearch_username, stack.elasticsearch_password),
        ca_certs=str(stack.elasticsearch_ca), request_timeout=30,
    )
    yield es
    es.close()
