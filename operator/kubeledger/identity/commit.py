"""Which commit a change came from, as far as the changed object itself says.

No Kubernetes convention carries a commit SHA, so this reads the few places CI pipelines
put one, in order of how deliberate they are:

1. an annotation, on the object or on its pod template, under one of
   :data:`DEFAULT_COMMIT_ANNOTATIONS` (configurable):

   - ``kubeledger.io/commit``: ours, for pipelines that want to say it explicitly;
   - ``org.opencontainers.image.revision``: the OCI image-spec's standard key for "the
     source revision this was built from", which some pipelines copy onto pod templates.

   The repository comes from ``kubeledger.io/repository`` or, beside the OCI key,
   ``org.opencontainers.image.source``;
2. an image tag that is a commit SHA (``registry:5000/team/api:3f2a9c1``).

GitOps controllers keep the commit on their own objects instead: see
:mod:`kubeledger.identity.gitops`. The attribution prefers those when a controller wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kubeledger.core.model import Commit, CommitSource

COMMIT_ANNOTATION = "kubeledger.io/commit"
OCI_REVISION_ANNOTATION = "org.opencontainers.image.revision"
DEFAULT_COMMIT_ANNOTATIONS = (COMMIT_ANNOTATION, OCI_REVISION_ANNOTATION)
REPOSITORY_ANNOTATIONS = ("kubeledger.io/repository", "org.opencontainers.image.source")

# An abbreviated (git's minimum is 7) or full SHA-1 commit name.
_SHA = re.compile(r"[0-9a-f]{7,40}")


def as_sha(text: object) -> str | None:
    """``text`` when it is a commit SHA, lowercased; None for anything else."""
    if not isinstance(text, str):
        return None
    candidate = text.strip().lower()
    return candidate if _SHA.fullmatch(candidate) else None


def commit_from_object(
    body: Mapping[str, Any], annotation_keys: Sequence[str] = DEFAULT_COMMIT_ANNOTATIONS
) -> Commit | None:
    """The commit an object names, by annotation first, then by image tag; None if neither.

    Keys are tried in order, each on the object's annotations before its pod template's,
    so an earlier key wins wherever it is.
    """
    places = _annotation_maps(body)
    sha = _first_annotation(places, annotation_keys, as_sha)
    if sha is None:
        return commit_from_images(body)
    repository = _first_annotation(places, REPOSITORY_ANNOTATIONS, _text)
    return Commit(sha=sha, repository=repository, source=CommitSource.ANNOTATION)


def commit_from_images(body: Mapping[str, Any]) -> Commit | None:
    """The commit named by the tags of an object's container images, if they name one.

    Images whose tags name different commits leave the commit unknown: which one the
    change came from cannot be told from the object alone.
    """
    shas = {sha for image in _images(body) if (sha := _tag_sha(image)) is not None}
    if len(shas) != 1:
        return None
    return Commit(sha=shas.pop(), source=CommitSource.IMAGE_TAG)


def image_tag(image: str) -> str | None:
    """The tag of an image reference; None when it has none (a registry port is no tag)."""
    name = image.split("@", 1)[0]  # a digest is not a tag
    colon = name.rfind(":")
    return name[colon + 1:] if colon > name.rfind("/") else None


def _tag_sha(image: str) -> str | None:
    tag = image_tag(image)
    # Tags are taken as written (git prints SHAs in lowercase), and all-digit tags are
    # build numbers or dates far more often than commits.
    if tag is None or not _SHA.fullmatch(tag) or tag.isdigit():
        return None
    return tag


def _annotation_maps(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    template = (body.get("spec") or {}).get("template") or {}
    return (
        (body.get("metadata") or {}).get("annotations") or {},
        (template.get("metadata") or {}).get("annotations") or {},
    )


def _first_annotation(
    places: tuple[Mapping[str, Any], ...],
    keys: Sequence[str],
    parse: Callable[[object], str | None],
) -> str | None:
    """The first parsable value of ``keys`` in order, each looked up place by place."""
    for key in keys:
        for place in places:
            value = parse(place.get(key))
            if value is not None:
                return value
    return None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _images(body: Mapping[str, Any]) -> Iterator[str]:
    """Images of an object's pod spec: a workload's template, or a Pod's own spec."""
    spec = body.get("spec") or {}
    for pod_spec in (spec, (spec.get("template") or {}).get("spec") or {}):
        for field in ("containers", "initContainers"):
            for container in pod_spec.get(field) or ():
                image = container.get("image")
                if isinstance(image, str):
                    yield image
