"""Readiness: when kopf's first listing of every audited kind has reached the handlers."""

from __future__ import annotations

import asyncio

import pytest

from kubeledger import first_listing
from kubeledger.core import kinds
from kubeledger.first_listing import FirstListing
from unit import objects
from unit.fake_kube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_listed_once_every_object_found_at_start_up_was_handed_over() -> None:
    listing = FirstListing({kinds.DEPLOYMENTS: {"web", "api"}, kinds.CLUSTER_ROLES: {"admin"}})

    listing.seen(kinds.DEPLOYMENTS, None, "web")
    listing.seen(kinds.CLUSTER_ROLES, None, "admin")
    listing.seen(kinds.DEPLOYMENTS, None, "web")  # a second event of the same object
    assert not listing.done
    assert listing.pending(kinds.DEPLOYMENTS) == 1

    listing.seen(kinds.DEPLOYMENTS, None, "api")
    listing.seen(kinds.DEPLOYMENTS, "MODIFIED", "api")

    assert listing.done and listing.listed.is_set()


def test_those_waiting_for_the_listing_are_called_once_when_it_ends() -> None:
    listing, calls = FirstListing({kinds.DEPLOYMENTS: {"web"}}), []
    listing.when_listed(lambda: calls.append("before"))
    assert calls == []

    listing.seen(kinds.DEPLOYMENTS, None, "web")
    listing.seen(kinds.DEPLOYMENTS, "MODIFIED", "web")
    listing.when_listed(lambda: calls.append("after"))

    assert calls == ["before", "after"]


def test_an_object_created_meanwhile_is_not_waited_for() -> None:
    listing = FirstListing({kinds.DEPLOYMENTS: {"web"}})

    listing.seen(kinds.DEPLOYMENTS, None, "created-after-start-up")

    assert listing.pending(kinds.DEPLOYMENTS) == 1


@pytest.mark.parametrize("event_type", ["ADDED", "MODIFIED", "DELETED"])
def test_an_event_of_kopfs_watch_means_its_listing_is_over(event_type: str) -> None:
    listing = FirstListing({kinds.DEPLOYMENTS: {"web", "api"}})

    listing.seen(kinds.DEPLOYMENTS, event_type, "something-else")

    assert listing.done


def test_kinds_with_nothing_to_list_are_listed_at_once() -> None:
    assert FirstListing({kinds.DEPLOYMENTS: set()}).done
    assert FirstListing({}).done


async def test_a_stalled_kind_stops_waiting_for_objects_deleted_before_kopf_listed_them(
        ) -> None:
    kube = FakeKube()
    still_there = kube.add(kinds.DEPLOYMENTS, objects.deployment(name="api"))
    uid = still_there["metadata"]["uid"]
    clock = Clock()
    listing = FirstListing({kinds.DEPLOYMENTS: {uid, "deleted-meanwhile"}}, clock=clock)
    waiting = asyncio.create_task(listing.run(kube, check_every=0.01))

    await asyncio.sleep(0.05)  # no progress, but not for long: nothing is listed again
    assert listing.pending(kinds.DEPLOYMENTS) == 2
    clock.now += first_listing.STALLED_SECONDS
    await asyncio.sleep(0.05)
    assert listing.pending(kinds.DEPLOYMENTS) == 1  # the one still there will come
    listing.seen(kinds.DEPLOYMENTS, None, uid)

    await asyncio.wait_for(waiting, timeout=1)
    assert listing.done
