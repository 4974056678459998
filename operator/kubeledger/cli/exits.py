"""How a ``kubeledger`` command ends: its exit statuses, and the failure that carries one.

A mistake a user can fix ends a command with one line on stderr and one of these
statuses, never a traceback. The README's "Command line" section lists the same table.
"""

from __future__ import annotations

OK = 0
# ``verify`` found problems in the chain; ``run`` could not start.
PROBLEMS = 1
# A mistake in the command line or the configuration (an unknown kind, a bad --since).
USAGE = 2
# ``run`` stopped writing because another replica leads now: start again as a standby.
LEADERSHIP_LOST = 3
# Nothing to show: no such record, no records of that subject.
NOT_FOUND = 4
# The cluster could not be read: no kubeconfig, unreachable, refused, no AuditRecord CRD.
NO_ACCESS = 5


class CommandError(Exception):
    """Ends a command with ``message`` (one line) and ``status``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
