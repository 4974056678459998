"""The operator installed by its chart into the session's cluster, for the e2e tests.

The release is installed once per module as ``make dev-up`` installs it (``stack.release``),
which points the apiserver's audit backend at the pod; afterwards the release is removed
and the audit backend pointed back at the host, where the integration tests' operator
runs. Records stay (the CRD is kept), as after a user's ``helm uninstall``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack import release
from stack.cluster import Endpoints, Stack


@pytest.fixture(scope="module")
def in_cluster(local_stack: Stack, stack: Endpoints) -> Iterator[release.Release]:
    installed = release.Release(local_stack, stack)
    try:
        installed.install()
        yield installed
    finally:
        try:
            if installed.installed():
                installed.uninstall()
        finally:
            local_stack.up(audit_target=stack.audit_target)
