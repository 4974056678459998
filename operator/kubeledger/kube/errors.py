"""What can go wrong when the operator talks to Kubernetes, one class per meaning.

The adapter (``kube.client``) turns the client library's exceptions into these, so no
``ApiException`` or urllib3 error travels past the edge and callers ask "was it a
conflict?" by type, not by status code. As in kopf's own hierarchy, the classes say what
a caller can do about the failure; the status stays on the exception for messages.
"""

from __future__ import annotations


class KubeError(Exception):
    """A call to the apiserver failed; the base of every error below."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.status = status
        # The short form ("403 Forbidden") for sentences that say the detail their own way.
        self.summary = message


class NotConfigured(KubeError):
    """No cluster to talk to: no in-cluster service account and no usable kubeconfig."""


class NotFound(KubeError):
    """The object, or its whole resource (an absent CRD), does not exist (404)."""


class Conflict(KubeError):
    """The object exists already, or changed since it was read (409)."""


class Gone(KubeError):
    """A watch asked to start from a resourceVersion the apiserver no longer keeps (410):
    list again, and watch from the listing's version."""


class Refused(KubeError):
    """The apiserver would not let us (401 unauthenticated, 403 forbidden).

    An administrator can fix it (RBAC, credentials) while the operator waits.
    """


class Unavailable(KubeError):
    """The apiserver could not answer now (connection failure, 429, 5xx): it may pass."""


class TimedOut(Unavailable):
    """No answer within the operator's API timeout; the call may or may not have happened."""


#: Failures worth waiting for while a change is at stake: those that pass by themselves,
#: and refusals an administrator can fix (403 after an RBAC change, 404 while the CRD is
#: being installed). Losing a record is never better.
WORTH_WAITING_FOR: tuple[type[KubeError], ...] = (Unavailable, Refused, NotFound)
