"""The shipper delivers every record once, in order, in batches, through sink failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiohttp import web

from kubeledger.config import ElasticsearchSettings
from kubeledger.core import chain, kinds, model
from kubeledger.recording.ledger import Ledger
from kubeledger.sinks import delivery
from kubeledger.sinks.delivery import PositionStore, Shipper
from kubeledger.sinks.elasticsearch import sink as elasticsearch_sink
from unit import records
from unit.fake_kube import FakeKube

NAMESPACE = "kubeledger"


class FakeSink:
    """Keeps what it is given; ``failures`` makes the next deliveries fail."""

    name = "fake"

    def __init__(self, *, failures: int = 0, setup_failures: int = 0,
                 anchor_failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.failures = failures
        self.setup_failures = setup_failures
        self.anchor_failures = anchor_failures
        self.prepared = 0
        self.checkpoints: list[tuple[int, str, str]] = []

    async def prepare(self) -> None:
        if self.setup_failures:
            self.setup_failures -= 1
            raise RuntimeError("template refused")
        self.prepared += 1

    async def deliver(self, batch: Sequence[tuple[str, model.RecordSpec]]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("sink unreachable")
        self.batches.append([name for name, _ in batch])

    async def anchor(self, sequence: int, digest: str, record: str) -> None:
        if self.anchor_failures:
            self.anchor_failures -= 1
            raise RuntimeError("checkpoint refused")
        self.checkpoints.append((sequence, digest, record))

    async def close(self) -> None:
        pass

    @property
    def delivered(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


async def write(ledger: Ledger, count: int, first: int = 1) -> list[str]:
    names = [f"record-{n}" for n in range(first, first + count)]
    for name in names:
        await ledger.append(name, records.full_spec_with(chain=None))
    return names


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def shipping(shipper: Shipper) -> AsyncIterator[None]:
    task = asyncio.create_task(shipper.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def positions(kube: FakeKube) -> dict[str, str]:
    return kube.config_maps[(NAMESPACE, delivery.POSITION_CONFIG_MAP)]


def shipper_for(kube: FakeKube, sink: FakeSink, *, batch_size: int = 2,
                flush_interval: float = 0.01, checkpoint_interval: float = 60,
                preloaded: delivery.Preloaded | None = None) -> Shipper:
    return Shipper(sink, kube, PositionStore(kube, NAMESPACE), batch_size=batch_size,
                   flush_interval=flush_interval, checkpoint_interval=checkpoint_interval,
                   preloaded=preloaded)


async def test_records_go_in_batches_and_the_position_is_stored_once_caught_up() -> None:
    kube, sink = FakeKube(), FakeSink()
    names = await write(Ledger(kube, chain.Head()), 5)
    shipper = shipper_for(kube, sink, flush_interval=60)

    async with shipping(shipper):
        await until(lambda: kube.config_maps.get((NAMESPACE, delivery.POSITION_CONFIG_MAP))
                    == {"fake": "5"})

    assert sink.batches == [names[0:2], names[2:4], names[4:5]]
    # After the first batch, then not again within the flush interval until caught up.
    assert kube.calls["write_config_map"] == 2
    assert sink.prepared == 1


async def test_a_record_written_while_idle_is_delivered_without_waiting() -> None:
    kube, sink = FakeKube(), FakeSink()
    ledger = Ledger(kube, chain.Head())
    shipper = shipper_for(kube, sink, flush_interval=60)
    ledger.on_written.append(shipper.offer)

    async with shipping(shipper):
        await until(lambda: kube.calls["list"] == 1)
        names = await write(ledger, 1)
        await until(lambda: shipper.position == 1, timeout=1)  # not the 60 s interval

    assert sink.delivered == names


async def test_records_written_while_shipping_are_taken_from_the_ledger() -> None:
    kube, sink = FakeKube(), FakeSink()
    ledger = Ledger(kube, chain.Head())
    shipper = shipper_for(kube, sink, batch_size=3)
    ledger.on_written.append(shipper.offer)

    async with shipping(shipper):
        await until(lambda: kube.calls["list"] == 1)  # the first look at the outbox
        names = await write(ledger, 6)
        await until(lambda: shipper.position == 6)

    assert sink.delivered == names
    assert kube.calls["list"] == 1  # the rest came from memory


async def test_a_restart_resumes_after_the_saved_position() -> None:
    kube, sink = FakeKube(), FakeSink()
    names = await write(Ledger(kube, chain.Head()), 5)
    kube.config_maps[(NAMESPACE, delivery.POSITION_CONFIG_MAP)] = {"fake": "3"}
    shipper = shipper_for(kube, sink)

    async with shipping(shipper):
        await until(lambda: shipper.position == 5)

    assert sink.delivered == names[3:]


async def test_an_outage_is_told_once_and_delivery_resumes_without_loss_or_doubles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, sink = FakeKube(), FakeSink(failures=4)
    names = await write(Ledger(kube, chain.Head()), 3)
    shipper = shipper_for(kube, sink)

    with caplog.at_level(logging.INFO):
        async with shipping(shipper):
            await until(lambda: shipper.position == 3)

    assert sink.delivered == names
    assert kube.calls["write_config_map"] == 2
    text = caplog.text
    assert text.count("cannot deliver to fake: sink unreachable; records are kept in the "
                      "cluster and delivery is retried") == 1
    assert text.count("delivery to fake resumed after") == 1


async def test_a_setup_failure_is_reported_as_setup_not_as_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, sink = FakeKube(), FakeSink(setup_failures=3)
    names = await write(Ledger(kube, chain.Head()), 1)
    shipper = shipper_for(kube, sink)

    with caplog.at_level(logging.INFO):
        async with shipping(shipper):
            await until(lambda: shipper.position == 1)

    assert sink.delivered == names
    assert caplog.text.count("cannot set up fake: template refused") == 1
    assert "cannot deliver" not in caplog.text


async def test_records_removed_before_delivery_are_stepped_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, sink = FakeKube(), FakeSink()
    names = await write(Ledger(kube, chain.Head()), 4)
    await kube.delete(kinds.RECORDS, names[1])
    shipper = shipper_for(kube, sink, batch_size=10)

    async with shipping(shipper):
        await until(lambda: shipper.position == 4)

    assert sink.delivered == [names[0], names[2], names[3]]
    assert "records 2..2 are missing from the cluster" in caplog.text


async def test_elasticsearch_counts_an_existing_document_as_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Delivering a batch twice (a restart mid-batch) is harmless: 409 means delivered."""
    answers = {"new": (True, 201), "old": (False, 409), "bad": (False, 400)}

    async def bulk(_client: Any, actions: list[dict[str, Any]],
                   **_: Any) -> AsyncIterator[tuple[bool, dict[str, Any]]]:
        for action in actions:
            ok, status = answers[action["_id"]]
            yield ok, {"create": {"_id": action["_id"], "status": status,
                                  "error": {"reason": "mapper_parsing_exception"}}}

    monkeypatch.setattr(elasticsearch_sink, "async_streaming_bulk", bulk)
    sink = elasticsearch_sink.ElasticsearchSink(
        ElasticsearchSettings(urls=["http://127.0.0.1:9"]), "prod")
    spec = records.full_spec()
    try:
        await sink.deliver([("new", spec), ("old", spec)])
        with pytest.raises(elasticsearch_sink.SinkUnavailableError, match="refused 1 doc"):
            await sink.deliver([("old", spec), ("bad", spec)])
    finally:
        await sink.close()


@contextlib.asynccontextmanager
async def elasticsearch_refusing_ilm() -> AsyncIterator[tuple[str, list[str]]]:
    """An Elasticsearch on 127.0.0.1 that has ILM but refuses to let this user manage it
    (the write-once role); yields its URL and the requests it answered."""
    answered: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        answered.append(f"{request.method} {request.path}")
        status = 403 if request.path.startswith("/_ilm/policy/") else 200
        body = ({"error": {"type": "security_exception", "reason": "unauthorized"},
                 "status": 403} if status == 403 else {"acknowledged": True,
                                                       "operation_mode": "RUNNING"})
        return web.json_response(body, status=status,
                                 headers={"X-Elastic-Product": "Elasticsearch"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", answered
    finally:
        await runner.cleanup()


async def test_without_ilm_rights_the_template_is_installed_and_the_gap_said(
        caplog: pytest.LogCaptureFixture) -> None:
    async with elasticsearch_refusing_ilm() as (url, answered):
        sink = elasticsearch_sink.ElasticsearchSink(ElasticsearchSettings(urls=[url]), "prod")
        try:
            with caplog.at_level(logging.WARNING):
                await sink.prepare()
        finally:
            await sink.close()

    assert answered == ["GET /_ilm/status", "PUT /_ilm/policy/kubeledger",
                        "PUT /_index_template/kubeledger"]
    assert ("may not manage the ILM policy kubeledger (403): the index template "
            "names it") in caplog.text


async def test_a_shipper_given_the_outbox_at_start_up_does_not_read_it_again() -> None:
    kube, sink = FakeKube(), FakeSink()
    names = await write(Ledger(kube, chain.Head()), 4)
    kube.config_maps[(NAMESPACE, delivery.POSITION_CONFIG_MAP)] = {"fake": "1"}
    outbox = {record["spec"]["chain"]["sequence"]: (record["metadata"]["name"],
                                                    model.RecordSpec.model_validate(
                                                        record["spec"]))
              for record in kube.of(kinds.RECORDS)}
    preloaded = delivery.Preloaded(1, {seq: rec for seq, rec in outbox.items() if seq > 1})
    shipper = shipper_for(kube, sink, preloaded=preloaded)
    calls_before = kube.calls["list"]

    async with shipping(shipper):
        await until(lambda: shipper.position == 4)

    assert sink.delivered == names[1:]
    assert kube.calls["list"] == calls_before


async def test_an_outbox_read_after_another_position_is_not_trusted() -> None:
    kube, sink = FakeKube(), FakeSink()
    names = await write(Ledger(kube, chain.Head()), 3)
    # Read after position 2, but the stored position is 0: records 1 and 2 are not in it.
    record_3 = kube.of(kinds.RECORDS)[2]
    preloaded = delivery.Preloaded(2, {3: (record_3["metadata"]["name"],
                                           model.RecordSpec.model_validate(record_3["spec"]))})
    shipper = shipper_for(kube, sink, batch_size=5, preloaded=preloaded)

    async with shipping(shipper):
        await until(lambda: shipper.position == 3)

    assert sink.delivered == names
    assert kube.calls["list"] == 1


def sealed(kube: FakeKube, name: str) -> tuple[int, str, str]:
    """A record's place in the chain as a checkpoint states it."""
    link = next(r for r in kube.of(kinds.RECORDS) if r["metadata"]["name"] == name)["spec"]["chain"]
    return link["sequence"], link["hash"], name


async def test_the_first_delivered_head_is_checkpointed_at_once_then_once_per_interval() -> None:
    kube, sink = FakeKube(), FakeSink()
    ledger = Ledger(kube, chain.Head())
    names = await write(ledger, 3)
    shipper = shipper_for(kube, sink, batch_size=10, checkpoint_interval=0.3)
    ledger.on_written.append(shipper.offer)

    async with shipping(shipper):
        await until(lambda: len(sink.checkpoints) == 1)
        later = await write(ledger, 2, first=4)
        await until(lambda: shipper.position == 5)
        assert len(sink.checkpoints) == 1  # the interval has not passed
        await until(lambda: len(sink.checkpoints) == 2)  # it has, while idle

    assert sink.checkpoints == [sealed(kube, names[-1]), sealed(kube, later[-1])]


async def test_a_failing_checkpoint_holds_no_delivery_up_and_is_written_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kube, sink = FakeKube(), FakeSink(anchor_failures=2)
    names = await write(Ledger(kube, chain.Head()), 4)
    shipper = shipper_for(kube, sink, batch_size=1)

    with caplog.at_level(logging.INFO):
        async with shipping(shipper):
            await until(lambda: shipper.position == 4)
            await until(lambda: len(sink.checkpoints) == 1)

    assert sink.delivered == names
    assert sink.checkpoints[0][0] >= 3  # the two failures did not stop delivery
    assert caplog.text.count("cannot write a checkpoint to fake: checkpoint refused") == 1
    assert "checkpoints written to fake again" in caplog.text


async def test_nothing_delivered_nothing_checkpointed() -> None:
    kube, sink = FakeKube(), FakeSink()
    shipper = shipper_for(kube, sink, checkpoint_interval=0.01)

    async with shipping(shipper):
        await until(lambda: kube.calls["list"] == 1)
        await asyncio.sleep(0.1)

    assert sink.checkpoints == []
