"""Where a container image comes from: its registry, as a container runtime reads it.

``nginx`` and ``library/nginx`` come from Docker Hub (``docker.io``); the first part of a
name is a registry only when it has a dot or a port, or is ``localhost``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

DOCKER_HUB = "docker.io"
# The pod-spec lists that hold containers, each with an ``image``.
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def repository(image: str) -> str:
    """``registry/path`` of an image, without tag or digest (``docker.io/library/nginx``)."""
    name = image.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    if not slash:
        return f"{DOCKER_HUB}/library/{_untagged(name)}"
    if "." in first or ":" in first or first == "localhost":
        return f"{first}/{_untagged(rest)}"
    return f"{DOCKER_HUB}/{_untagged(name)}"


def approved(image: str, registries: Sequence[str]) -> bool:
    """Whether an image comes from one of ``registries`` (hosts, or host/path prefixes)."""
    found = repository(image)
    return any(found == entry.rstrip("/") or found.startswith(entry.rstrip("/") + "/")
               for entry in registries)


def images_of(snapshot: Mapping[str, Any] | None) -> Iterator[str]:
    """The images of a workload's pod template in a record's snapshot."""
    pod = (((snapshot or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    for listed in _CONTAINER_LISTS:
        for container in pod.get(listed) or ():
            image = container.get("image") if isinstance(container, Mapping) else None
            if isinstance(image, str) and image:
                yield image


def _untagged(path: str) -> str:
    # A tag follows the last ":" after the last "/" (a registry port comes before it).
    head, _, last = path.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last
