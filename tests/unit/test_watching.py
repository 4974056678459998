"""The kopf handlers: of a kind audited for one object (the records' CRD), only that one
is taken.

kopf cannot select by name, so the handler of CustomResourceDefinitions is given every
CRD of the cluster and must pass on all but the records' own.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubeledger import watching
from kubeledger.core import kinds


class Runtime:
    """A runtime's stand-in that notes what the handler hands on (it is its recorder too)."""

    def __init__(self) -> None:
        self.recorder = self
        self.counted: list[str] = []
        self.taken: list[str] = []

    def handed(self, resource: kinds.Resource, event_type: str | None, uid: str) -> None:
        self.counted.append(uid)

    async def take(self, resource: kinds.Resource, event_type: str | None,
                   body: dict[str, Any]) -> None:
        self.taken.append(body["metadata"]["name"])


async def test_of_every_crd_only_the_records_crd_is_taken() -> None:
    runtime = Runtime()
    handler = watching._auditing(kinds.RECORDS_CRD)
    for name in ("rollouts.argoproj.io", kinds.RECORDS_CRD_NAME):
        event = {"type": "MODIFIED", "object": {"metadata": {"name": name, "uid": name}}}
        await handler(event=event, memo=kopf.Memo(runtime=runtime))

    assert runtime.taken == runtime.counted == [kinds.RECORDS_CRD_NAME]
