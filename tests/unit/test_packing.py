"""Packing: an object comes back equal, and smaller than its JSON."""

from __future__ import annotations

import json

from kubeledger.core import packing
from unit import objects


def test_a_packed_object_comes_back_equal_and_smaller_than_its_json() -> None:
    body = objects.deployment(name="web")

    packed = packing.pack(body)

    assert packing.unpack(packed) == body
    assert len(packed) < len(json.dumps(body))
