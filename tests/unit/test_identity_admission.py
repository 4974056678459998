"""The admission cache joins admitted writes to the changes the watch then shows."""

from __future__ import annotations

import pickle

from kubeledger.identity.admission import AdmissionCache, AdmissionIdentity
from kubeledger.identity.user import User
from unit import identity_objects as io
from unit import objects

NEW_IMAGE = "registry.example.com/shop/web:1.5.0"
BOB = "bob@example.com"
MALLORY = "mallory@example.com"


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def update_by(
    username: str, image: str = NEW_IMAGE, *, dry_run: bool = False,
    sub_resource: str | None = None,
) -> io.Body:
    """The admission request of ``username`` changing the Deployment's image."""
    old = objects.deployment()
    return io.admission_request(
        "UPDATE", obj=io.with_image(old, image), old_obj=old, user=io.user_info(username),
        dry_run=dry_run, sub_resource=sub_resource,
    )


def watched(image: str = NEW_IMAGE) -> io.Body:
    """The watch event of the Deployment after its image changed to ``image``."""
    return io.persisted(io.with_image(objects.deployment(), image), "48214")


UID = objects.deployment()["metadata"]["uid"]


def test_persisted_update_is_attributed_to_the_admitted_user() -> None:
    cache = AdmissionCache()
    assert cache.remember(update_by(io.ALICE))

    found = cache.match(UID, watched())

    assert found == AdmissionIdentity(
        user=User(io.ALICE, "6d3c1f0e-2b7a-4c59-9e8d-1a2b3c4d5e6f",
                  ("developers", "system:authenticated")),
        operation="UPDATE",
    )


def test_created_object_is_attributed_on_its_first_watch_event() -> None:
    cache = AdmissionCache()
    created = objects.deployment()
    cache.remember(io.admission_request("CREATE", obj=created, user=io.user_info(BOB)))

    found = cache.match(UID, io.persisted(created, "48213"))

    assert found is not None
    assert (found.user.username, found.operation) == (BOB, "CREATE")


def test_rbac_write_is_matched_by_its_projection() -> None:
    cache = AdmissionCache()
    role = objects.role([objects.rule(["get"], ["pods"])])
    cache.remember(io.admission_request("CREATE", obj=role))

    assert cache.match(role["metadata"]["uid"], role) is not None


def test_dry_run_pollutes_nothing() -> None:
    cache = AdmissionCache()
    cache.remember(update_by(io.ALICE))

    # The same content, tried later as a dry run: were it remembered, it would win.
    assert not cache.remember(update_by(MALLORY, dry_run=True))
    assert len(cache) == 1

    found = cache.match(UID, watched())
    assert found is not None
    assert found.user.username == io.ALICE


def test_dry_run_alone_leaves_the_change_unattributed() -> None:
    cache = AdmissionCache()
    cache.remember(update_by(MALLORY, dry_run=True))

    assert cache.match(UID, watched()) is None


def test_rejected_write_does_not_match_the_persisted_one_and_expires() -> None:
    clock = FakeClock()
    cache = AdmissionCache(clock=clock)
    cache.remember(update_by(io.ALICE))
    # Bob's write is admitted, then fails (a conflict): the watch never shows it.
    cache.remember(update_by(BOB, image="registry.example.com/shop/web:9.9.9"))

    found = cache.match(UID, watched())
    assert found is not None
    assert found.user.username == io.ALICE
    assert len(cache) == 1

    clock.now += 120
    assert len(cache) == 0


def test_scale_subresource_write_matches_the_new_replica_count() -> None:
    cache = AdmissionCache()
    deployment = objects.deployment(replicas=3)
    cache.remember(io.admission_request(
        "UPDATE", obj=io.scale(deployment, 5), old_obj=io.scale(deployment, 3),
        user=io.user_info(BOB), sub_resource="scale"))

    assert cache.match(UID, io.persisted(objects.deployment(replicas=4), "48214")) is None
    found = cache.match(UID, io.persisted(objects.deployment(replicas=5), "48214"))

    assert found is not None
    assert found.user.username == BOB


def test_scale_to_zero_matches_although_the_scale_omits_replicas() -> None:
    cache = AdmissionCache()
    deployment = objects.deployment(replicas=3)
    request = io.admission_request("UPDATE", obj=io.scale(deployment, 0),
                                   old_obj=io.scale(deployment, 3), sub_resource="scale")
    assert "replicas" not in request["object"]["spec"]
    cache.remember(request)

    assert cache.match(UID, io.persisted(objects.deployment(replicas=0), "48214")) is not None


def test_status_subresource_writes_are_not_remembered() -> None:
    cache = AdmissionCache()

    assert not cache.remember(update_by("system:serviceaccount:kube-system:deployment-controller",
                                        sub_resource="status"))
    assert len(cache) == 0


def test_deletion_is_matched_by_uid_alone() -> None:
    cache = AdmissionCache()
    last = objects.deployment()
    cache.remember(io.admission_request("DELETE", old_obj=last, user=io.user_info(BOB)))

    found = cache.match(UID, None)

    assert found is not None
    assert (found.user.username, found.operation) == (BOB, "DELETE")


def test_live_deletion_with_its_last_body_is_matched_as_a_deletion() -> None:
    cache = AdmissionCache()
    last = objects.deployment()
    cache.remember(io.admission_request("UPDATE", obj=last, old_obj=last))
    cache.remember(io.admission_request("DELETE", old_obj=last, user=io.user_info(BOB)))

    found = cache.match(UID, last, "DELETE")

    assert found is not None
    assert found.user.username == BOB


def test_deletions_and_writes_never_explain_each_other() -> None:
    cache = AdmissionCache()
    cache.remember(update_by(io.ALICE))
    assert cache.match(UID, None) is None

    cache.remember(io.admission_request("DELETE", old_obj=objects.deployment()))
    assert cache.match(UID, io.persisted(objects.deployment(), "48214")) is None


def test_matched_entry_is_consumed() -> None:
    cache = AdmissionCache()
    cache.remember(update_by(io.ALICE))

    assert cache.match(UID, watched()) is not None
    assert cache.match(UID, watched()) is None
    assert len(cache) == 0


def test_the_latest_admission_of_the_same_content_wins() -> None:
    cache = AdmissionCache()
    cache.remember(update_by(io.ALICE))
    cache.remember(update_by(BOB))

    first, second = cache.match(UID, watched()), cache.match(UID, watched())

    assert first is not None and second is not None
    assert (first.user.username, second.user.username) == (BOB, io.ALICE)


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = AdmissionCache(ttl=120, clock=clock)
    cache.remember(update_by(io.ALICE))

    clock.now += 119.9
    assert len(cache) == 1
    clock.now += 0.1
    assert cache.match(UID, watched()) is None
    assert len(cache) == 0


def test_oldest_entry_is_evicted_when_full() -> None:
    cache = AdmissionCache(max_entries=2)
    bodies = []
    for index, username in enumerate((io.ALICE, BOB, MALLORY)):
        body = objects.deployment(name=f"web-{index}")
        body["metadata"]["uid"] = f"uid-{index}"
        bodies.append(body)
        cache.remember(io.admission_request("CREATE", obj=body, user=io.user_info(username)))

    assert len(cache) == 2
    assert cache.match("uid-0", bodies[0]) is None
    assert cache.match("uid-1", bodies[1]) is not None
    assert cache.match("uid-2", bodies[2]) is not None


def test_requests_without_a_uid_are_not_remembered() -> None:
    cache = AdmissionCache()
    nameless = objects.deployment()
    del nameless["metadata"]["uid"]

    assert not cache.remember(io.admission_request("CREATE", obj=nameless))


def test_admitted_objects_are_never_stored() -> None:
    leaked = "hunter2-never-kept"  # a secret env value the write carries
    container = objects.container(env=[objects.env_var("DB_PASSWORD", leaked)])
    body = objects.deployment(template=objects.pod_template([container]))
    assert leaked in body["metadata"]["annotations"][objects.LAST_APPLIED]
    cache = AdmissionCache()

    cache.remember(io.admission_request("UPDATE", obj=body, old_obj=body))
    cache.remember(io.admission_request("DELETE", old_obj=body))

    assert len(cache) == 2
    assert leaked not in repr(vars(cache))
    # Everything reachable from the cache, serialised: no copy of the object anywhere.
    assert leaked.encode() not in pickle.dumps(cache)



def test_the_declared_field_manager_names_the_tool() -> None:
    cache = AdmissionCache()
    request = {**update_by(io.ALICE), "options": {"kind": "PatchOptions",
                                                   "fieldManager": "kubectl-set"}}
    cache.remember(request)

    found = cache.match(UID, watched())

    assert found is not None
    assert found.field_manager == "kubectl-set"
