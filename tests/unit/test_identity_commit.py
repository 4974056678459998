"""The commit an object names: by annotation first, then by image tag."""

from __future__ import annotations

import pytest

from kubeledger.core.model import Commit, CommitSource
from kubeledger.identity import commit
from unit import identity_objects as io
from unit import objects

SHORT_SHA = io.SHA[:7]


def running(*images: str, init_images: tuple[str, ...] = (),
            template_annotations: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None) -> io.Body:
    """A Deployment whose pod template runs ``images``."""
    containers = [objects.container(f"c{index}", image) for index, image in enumerate(images)]
    inits = [objects.container(f"i{index}", image) for index, image in enumerate(init_images)]
    template = objects.pod_template(containers, init_containers=inits,
                                    annotations=template_annotations)
    return objects.deployment(template=template, annotations=annotations)


def test_annotation_on_the_object_names_the_commit_and_repository() -> None:
    body = running(objects.IMAGE, annotations={
        commit.COMMIT_ANNOTATION: io.SHA,
        "kubeledger.io/repository": "https://github.com/example/shop"})

    assert commit.commit_from_object(body) == Commit(
        sha=io.SHA, repository="https://github.com/example/shop",
        source=CommitSource.ANNOTATION)


def test_annotation_on_the_pod_template_names_the_commit() -> None:
    body = running(objects.IMAGE, template_annotations={commit.COMMIT_ANNOTATION: SHORT_SHA})

    assert commit.commit_from_object(body) == Commit(sha=SHORT_SHA,
                                                     source=CommitSource.ANNOTATION)


def test_oci_revision_annotation_comes_with_the_oci_source() -> None:
    body = running(objects.IMAGE, template_annotations={
        commit.OCI_REVISION_ANNOTATION: io.SHA,
        "org.opencontainers.image.source": "https://github.com/example/shop"})

    found = commit.commit_from_object(body)

    assert found is not None
    assert (found.sha, found.repository) == (io.SHA, "https://github.com/example/shop")


def test_annotation_wins_over_image_tag() -> None:
    body = running(f"registry.example.com/shop/web:{io.OTHER_SHA}",
                   annotations={commit.COMMIT_ANNOTATION: io.SHA})

    assert commit.commit_from_object(body) == Commit(sha=io.SHA, source=CommitSource.ANNOTATION)


def test_earlier_key_wins_wherever_it_is() -> None:
    body = running(objects.IMAGE,
                   annotations={commit.OCI_REVISION_ANNOTATION: io.OTHER_SHA},
                   template_annotations={commit.COMMIT_ANNOTATION: io.SHA})

    found = commit.commit_from_object(body)

    assert found is not None
    assert found.sha == io.SHA


def test_configured_keys_replace_the_defaults() -> None:
    body = running(objects.IMAGE, annotations={
        commit.COMMIT_ANNOTATION: io.OTHER_SHA, "example.com/git-sha": io.SHA.upper()})

    found = commit.commit_from_object(body, ["example.com/git-sha"])

    assert found is not None
    assert found.sha == io.SHA


def test_annotation_that_is_no_sha_falls_through_to_the_image_tag() -> None:
    body = running(f"api:{SHORT_SHA}", annotations={commit.COMMIT_ANNOTATION: "main"})

    assert commit.commit_from_object(body) == Commit(sha=SHORT_SHA,
                                                     source=CommitSource.IMAGE_TAG)


@pytest.mark.parametrize(
    ("image", "sha"),
    [
        (f"api:{SHORT_SHA}", SHORT_SHA),
        (f"registry:5000/team/api:{io.SHA}", io.SHA),
        (f"registry.example.com:443/team/api:{SHORT_SHA}@sha256:{'ab' * 32}", SHORT_SHA),
    ],
)
def test_image_tag_that_is_a_commit(image: str, sha: str) -> None:
    assert commit.commit_from_object(running(image)) == Commit(sha=sha,
                                                               source=CommitSource.IMAGE_TAG)


@pytest.mark.parametrize(
    "image",
    [
        # The registry's port is no tag, and neither is a digest.
        "registry:5000/team/api",
        f"registry:5000/{SHORT_SHA}/api",
        f"registry.example.com/team/api@sha256:{'ab' * 32}",
        "registry.example.com/team/api:1.4.2",
        "api:latest",
        # All digits: a build number or a date, far more likely than a commit.
        "api:20251120",
        # Too short to be a commit; git's abbreviations have 7 characters at least.
        "api:abc123",
        # Uppercase: not how git prints a commit.
        f"api:{SHORT_SHA.upper()}",
    ],
)
def test_image_tags_that_are_not_commits(image: str) -> None:
    assert commit.commit_from_object(running(image)) is None


def test_init_container_image_counts() -> None:
    body = running(objects.IMAGE, init_images=(f"registry:5000/team/migrate:{SHORT_SHA}",))

    found = commit.commit_from_images(body)

    assert found is not None
    assert found.sha == SHORT_SHA


def test_images_agreeing_on_a_commit_name_it() -> None:
    body = running(f"api:{SHORT_SHA}", f"worker:{SHORT_SHA}", "envoyproxy/envoy:v1.31.0")

    assert commit.commit_from_images(body) == Commit(sha=SHORT_SHA,
                                                     source=CommitSource.IMAGE_TAG)


def test_images_naming_different_commits_leave_it_unknown() -> None:
    body = running(f"api:{io.SHA[:7]}", f"worker:{io.OTHER_SHA[:7]}")

    assert commit.commit_from_images(body) is None


def test_pod_images_count_too() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
           "spec": {"containers": [objects.container(image=f"api:{SHORT_SHA}")]}}

    found = commit.commit_from_images(pod)

    assert found is not None
    assert found.sha == SHORT_SHA


def test_rbac_objects_name_no_commit() -> None:
    assert commit.commit_from_object(objects.role([objects.rule(["get"], ["pods"])])) is None


@pytest.mark.parametrize(
    ("image", "tag"),
    [("api", None), ("api:1.2", "1.2"), ("registry:5000/api", None),
     ("registry:5000/api:v2", "v2"), ("api:v2@sha256:00", "v2")],
)
def test_image_tag(image: str, tag: str | None) -> None:
    assert commit.image_tag(image) == tag
