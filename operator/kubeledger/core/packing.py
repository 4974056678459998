"""Objects held in memory as compressed JSON, for those kept long or in numbers.

A decoded Kubernetes object is a tree of dicts, lists and strings that takes ten to
twenty times its JSON in memory; packed, a Deployment of the benchmarks takes a few
hundred bytes to a few kB. Packing and unpacking cost tens of microseconds each.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

# zlib's fastest: a tenth of the cost of its default, and most of its gain on JSON.
LEVEL = 1


def pack(body: Mapping[str, Any]) -> bytes:
    """``body`` as zlib-compressed JSON."""
    return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False)
                         .encode(), LEVEL)


def unpack(packed: bytes) -> dict[str, Any]:
    """The object ``pack`` was given, decoded anew."""
    decoded: dict[str, Any] = json.loads(zlib.decompress(packed))
    return decoded
