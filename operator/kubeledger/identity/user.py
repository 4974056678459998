"""An authenticated Kubernetes user, as admission requests and audit events describe it.

Both carry the apiserver's ``UserInfo`` (``username``, ``uid``, ``groups``; ``extra`` is
left out: it may hold credential ids and is not part of the record).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class User:
    username: str
    # Empty for users without one (client certificates, static tokens).
    uid: str | None = None
    groups: tuple[str, ...] = ()

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> User:
        """A ``UserInfo`` object (``userInfo`` of admission, ``user`` of audit)."""
        return cls(
            username=info.get("username") or "",
            uid=info.get("uid") or None,
            groups=tuple(info.get("groups") or ()),
        )

    def info(self) -> dict[str, Any]:
        """As a ``UserInfo`` object again (what replicas relay to each other)."""
        return {"username": self.username, "uid": self.uid, "groups": list(self.groups)}


def service_account(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a service account's username, None for other users."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    return (namespace, name) if namespace and name else None
