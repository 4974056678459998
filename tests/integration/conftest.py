"""Fixtures of the integration tests: the real operator run as a host process.

The stack itself (``stack``, ``kubectl``, ``elasticsearch``) comes from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from integration.kubectl import Kubectl
from integration.operator import Operator
from stack.cluster import Endpoints

# Lines of the operator's log a failing test's report ends with.
LOG_TAIL_LINES = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report ends with what the operator logged: CI shows nothing else."""
    report = yield
    running = getattr(item, "funcargs", {}).get("operator")
    if report.failed and isinstance(running, Operator) and running.log.exists():
        tail = running.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        report.sections.append(("operator log (tail)", "\n".join(tail)))
    return report


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
