"""Fixtures of the integration tests: the real operator run as a host process.

The stack itself (``stack``, ``kubectl``, ``elasticsearch``) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.kubectl import Kubectl
from integration.operator import Operator
from stack.cluster import Endpoints


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
