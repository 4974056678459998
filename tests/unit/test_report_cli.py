"""``kubeledger report``: its argument errors in one line, its figures read from the
cluster's records (through the fake API), and how the table and the JSON show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeledger import cli
from kubeledger.cli import exits, render, report
from kubeledger.core import chain, insights
from kubeledger.recording.ledger import Ledger
from unit.fake_kube import FakeKube
from unit.test_insights import Workload


@pytest.mark.parametrize("since", ["yesterday", "7w", "-3d", ""])
def test_a_bad_since_is_one_line_and_a_usage_error(since: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["report", f"--since={since}"])

    err = capsys.readouterr().err
    assert status == exits.USAGE
    assert err.count("\n") == 1 and "Traceback" not in err and "usage" not in err
    assert err.startswith(f"kubeledger: --since: {since!r} is neither a duration")


def test_reading_elasticsearch_without_its_address_is_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    monkeypatch.delenv("KUBELEDGER_CONFIG", raising=False)

    status = cli.main(["report", "--source", "elasticsearch"])

    assert status == exits.USAGE
    assert capsys.readouterr().err == (
        "kubeledger: reading Elasticsearch needs its address: set ELASTICSEARCH_URL or "
        "pass --elasticsearch-url\n")


def test_without_a_cluster_the_report_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    assert cli.main(["report", "-n", "shop"]) == exits.NO_ACCESS
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kubeledger: no cluster to talk to (")


@pytest.mark.parametrize("argv", [["report", "-o", "yaml"], ["report", "--source", "s3"]])
def test_an_unknown_choice_is_refused_by_the_parser(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)
    assert raised.value.code == exits.USAGE


async def test_the_records_of_one_namespace_are_read_from_the_cluster() -> None:
    kube = FakeKube()
    ledger = Ledger(kube, chain.Head())
    web = Workload().created(0).completed(1).image(2, "app:broken").failed(5)
    other = Workload(namespace="other").created(0).completed(1)
    for index, spec in enumerate([*web.specs, *other.specs]):
        await ledger.append(f"record-{index}", spec)

    listed = await report.listed(kube, "shop")

    assert len(listed) == len(web.specs)
    found = insights.report(report._specs(listed))
    assert found.total.wire() | {"medianTimeToRestoreSeconds": None} == {
        "deployments": 1, "rollbacks": 0, "failedRollouts": 1, "failedChanges": 1,
        "changeFailureRate": 1.0, "medianTimeToRestoreSeconds": None, "restored": 0}
    assert len(await report.listed(kube, None)) == len(web.specs) + len(other.specs)


def test_the_table_has_a_row_per_workload_per_namespace_and_a_total() -> None:
    web = Workload().created(0).completed(1).image(2, "app:2").completed(3)
    api = Workload(name="api").created(0).failed(4).image(5, "app:2").completed(7)

    table = render.table(report.HEADERS, report.rows(insights.report([*web.specs,
                                                                       *api.specs])))

    assert [line.split() for line in table.splitlines()] == [
        ["NAMESPACE", "WORKLOAD", "DEPLOYMENTS", "ROLLBACKS", "FAILED-ROLLOUTS",
         "FAILED-CHANGES", "CHANGE-FAILURE-RATE", "MEDIAN-TIME-TO-RESTORE"],
        ["shop", "Deployment/api", "1", "0", "1", "1", "100%", "3m00s"],
        ["shop", "Deployment/web", "2", "0", "0", "0", "0%", "-"],
        ["shop", "*", "3", "0", "1", "1", "33.3%", "3m00s"],
        ["TOTAL", "*", "3", "0", "1", "1", "33.3%", "3m00s"],
    ]


def test_the_json_is_the_figures_by_namespace_and_workload_with_the_window() -> None:
    web = Workload().created(0).completed(1)

    printed = json.loads(render.structured(insights.as_wire(
        insights.report(web.specs), window={"namespace": "shop"}), "json"))

    assert printed["window"] == {"namespace": "shop"}
    assert printed["total"]["deployments"] == 1
    assert printed["namespaces"]["shop"]["deployments"] == 1
    assert printed["workloads"] == [{"namespace": "shop", "kind": "Deployment", "name": "web",
                                     **printed["total"]}]


@pytest.mark.parametrize(("fraction", "shown"), [(0.4, "40%"), (1 / 3, "33.3%"),
                                                  (None, "-"), (1.5, "150%")])
def test_a_rate_is_shown_in_percent(fraction: float | None, shown: str) -> None:
    assert render.percent(fraction) == shown


@pytest.mark.parametrize(("seconds", "shown"), [(45, "45s"), (185, "3m05s"), (7800, "2h10m"),
                                                (100_800, "1d4h"), (None, "-")])
def test_a_time_to_restore_is_shown_in_its_two_largest_units(seconds: float | None,
                                                             shown: str) -> None:
    assert render.duration(seconds) == shown


def test_a_record_the_model_cannot_read_is_left_out_and_said_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    web = Workload().created(0).completed(1)
    records = [{"metadata": {"name": f"record-{index}"}, "spec": spec.wire()}
               for index, spec in enumerate(web.specs)]
    records.append({"metadata": {"name": "odd"}, "spec": {"action": "teleported"}})

    assert report._specs(records) == web.specs
    assert capsys.readouterr().err == (
        "left out 1 records this version cannot read (e.g. odd)\n")
