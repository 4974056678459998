"""The Kibana saved objects in kibana/kubeledger.ndjson.

Kibana cannot run here, so these tests check what an import and a security analyst
depend on: every line is a saved object, ids are unique, every reference resolves
inside the file, and every field a query, column, sort or chart names exists in the
index template (with a type that can do what the asset asks of it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubeledger.core import model
from kubeledger.sinks.elasticsearch import template as elasticsearch_setup

ASSETS = Path(__file__).resolve().parents[2] / "kibana" / "kubeledger.ndjson"
AGGREGATABLE_TYPES = {"keyword", "date", "long", "boolean", "ip"}
# A field name directly before a colon, once quoted values are blanked out.
KQL_FIELD = re.compile(r"([@A-Za-z_][\w.@-]*)\s*:")
KQL_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"')
# field:value, field:"value" and field:(a or b)
KQL_TERM = re.compile(r'([@A-Za-z_][\w.@-]*)\s*:\s*(\([^)]*\)|"[^"]*"|[^\s()]+)')

SavedObject = dict[str, Any]

# The delivery panels (README "Delivery report"): each counts these actions, by these fields.
DELIVERY_PANELS = {
    ("visualization", "kubeledger-vis-rollouts-over-time"): (
        {"rollout-completed"}, ["@timestamp", "orchestrator.namespace"]),
    ("visualization", "kubeledger-vis-rollbacks-and-failures-over-time"): (
        {"rolled-back", "rollout-failed"}, ["@timestamp", "event.action"]),
    ("visualization", "kubeledger-vis-delivery-by-namespace"): (
        {"rollout-completed", "rolled-back", "rollout-failed"},
        ["orchestrator.namespace", "event.action"]),
}


def saved_objects() -> list[SavedObject]:
    return [json.loads(line) for line in ASSETS.read_text(encoding="utf-8").splitlines()]


def of_type(saved_type: str) -> list[SavedObject]:
    return [saved for saved in saved_objects() if saved["type"] == saved_type]


def by_id(object_id: str) -> SavedObject:
    (saved,) = (saved for saved in saved_objects() if saved["id"] == object_id)
    return saved


def mapped_field_types() -> dict[str, str]:
    template = elasticsearch_setup.index_template(
        elasticsearch_setup.DEFAULT_INDEX_PREFIX, ilm_policy=None
    )
    return elasticsearch_setup.template_field_types(template)


def search_source(saved: SavedObject) -> dict[str, Any]:
    source: dict[str, Any] = json.loads(
        saved["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]
    )
    return source


def query_of(saved: SavedObject) -> str:
    query = search_source(saved)["query"]
    assert query["language"] == "kuery"
    text: str = query["query"]
    return text


def kql_fields(query: str) -> set[str]:
    return set(KQL_FIELD.findall(KQL_QUOTED.sub('""', query)))


def kql_terms(query: str) -> Iterator[tuple[str, str]]:
    """(field, value) for each ``field:value`` and ``field:(a or b)`` in a KQL query."""
    for field, values in KQL_TERM.findall(query):
        for value in re.split(r"\s+or\s+", values.strip("()")):
            yield field, value.strip().strip('"')


def aggregations(saved: SavedObject) -> list[dict[str, Any]]:
    aggs: list[dict[str, Any]] = json.loads(saved["attributes"]["visState"])["aggs"]
    return aggs


def panels(dashboard: SavedObject) -> list[dict[str, Any]]:
    parsed: list[dict[str, Any]] = json.loads(dashboard["attributes"]["panelsJSON"])
    return parsed


def referenced_fields(saved: SavedObject) -> Iterator[tuple[str, str]]:
    """(field, what uses it) for every field the saved object names."""
    attributes = saved["attributes"]
    if saved["type"] == "index-pattern":
        yield attributes["timeFieldName"], "time field"
        return
    for field in kql_fields(query_of(saved)):
        yield field, "query"
    for field in attributes.get("columns", []):
        yield field, "column"
    for field, _direction in attributes.get("sort", []):
        yield field, "sort"
    if saved["type"] == "visualization":
        for aggregation in aggregations(saved):
            if "field" in aggregation["params"]:
                yield aggregation["params"]["field"], "aggregation"


def test_every_line_is_a_saved_object_for_kibana_8() -> None:
    for saved in saved_objects():
        assert set(saved) >= {
            "attributes",
            "coreMigrationVersion",
            "id",
            "references",
            "type",
            "typeMigrationVersion",
        }
        assert saved["coreMigrationVersion"].startswith("8.")
        assert saved["attributes"]["title"]


def test_ids_are_unique_and_namespaced() -> None:
    ids = [saved["id"] for saved in saved_objects()]

    assert len(ids) == len(set(ids))
    assert all(object_id.startswith("kubeledger-") for object_id in ids)


def test_the_assets_a_security_team_needs_are_there() -> None:
    assert {(saved["type"], saved["id"]) for saved in saved_objects()} >= {
        ("index-pattern", "kubeledger-data-view"),
        ("search", "kubeledger-search-critical-rbac"),
        ("search", "kubeledger-search-changes-by-user"),
        ("search", "kubeledger-search-unverified-initiators"),
        ("search", "kubeledger-search-rollbacks-and-failed-rollouts"),
        ("search", "kubeledger-search-declared-mismatch"),
        ("dashboard", "kubeledger-dashboard-overview"),
        *DELIVERY_PANELS,
    }


def test_every_reference_resolves_inside_the_file() -> None:
    present = {(saved["type"], saved["id"]) for saved in saved_objects()}

    for saved in saved_objects():
        for reference in saved["references"]:
            assert (reference["type"], reference["id"]) in present, (saved["id"], reference)


def test_every_reference_name_used_in_attributes_is_declared() -> None:
    for saved in saved_objects():
        declared = {reference["name"] for reference in saved["references"]}
        attributes = saved["attributes"]
        if "kibanaSavedObjectMeta" in attributes:
            index_ref = search_source(saved).get("indexRefName")
            assert index_ref is None or index_ref in declared
        if "savedSearchRefName" in attributes:
            assert attributes["savedSearchRefName"] in declared
        if saved["type"] == "dashboard":
            for panel in panels(saved):
                assert f"{panel['panelIndex']}:{panel['panelRefName']}" in declared


def test_the_data_view_covers_the_indices_on_their_timestamp() -> None:
    (data_view,) = of_type("index-pattern")
    template = elasticsearch_setup.index_template(
        elasticsearch_setup.DEFAULT_INDEX_PREFIX, ilm_policy=None
    )

    assert [data_view["attributes"]["title"]] == template["index_patterns"]
    assert mapped_field_types()[data_view["attributes"]["timeFieldName"]] == "date"


def test_every_field_the_assets_reference_exists_in_the_index_template() -> None:
    mapped = mapped_field_types()
    missing = [
        (saved["id"], field, use)
        for saved in saved_objects()
        for field, use in referenced_fields(saved)
        if field not in mapped
    ]

    assert missing == []


def test_the_field_check_sees_the_fields_of_every_search_and_chart() -> None:
    # Guards the test above: a parser that found no fields would pass it vacuously.
    for saved in of_type("search") + of_type("visualization"):
        assert {use for _field, use in referenced_fields(saved)} >= (
            {"query", "column", "sort"} if saved["type"] == "search" else {"aggregation"}
        ), saved["id"]


def test_charts_and_sorts_use_aggregatable_fields() -> None:
    mapped = mapped_field_types()

    for saved in saved_objects():
        for field, use in referenced_fields(saved):
            if use in {"aggregation", "sort"}:
                assert mapped[field] in AGGREGATABLE_TYPES, (saved["id"], field)


@pytest.mark.parametrize(
    ("object_id", "fields"),
    [
        ("kubeledger-search-critical-rbac", {"kubeledger.severity", "event.category"}),
        ("kubeledger-search-changes-by-user", {"user.name"}),
        ("kubeledger-search-unverified-initiators", {"kubeledger.initiator.verified"}),
        ("kubeledger-search-rollbacks-and-failed-rollouts", {"event.action"}),
        ("kubeledger-search-declared-mismatch", {"kubeledger.initiator.declared_mismatch"}),
    ],
)
def test_each_search_asks_the_documented_question(object_id: str, fields: set[str]) -> None:
    assert kql_fields(query_of(by_id(object_id))) == fields


def test_queried_values_are_values_the_operator_writes() -> None:
    vocabulary = {
        "event.action": {action.value for action in model.Action},
        "kubeledger.severity": {severity.value for severity in model.Severity},
        "kubeledger.observation": {observation.value for observation in model.Observation},
        "event.category": {"configuration", "iam"},
        "kubeledger.initiator.verified": {"true", "false"},
        "kubeledger.initiator.declared_mismatch": {"true", "false"},
    }
    for saved in of_type("search") + of_type("visualization"):
        for field, value in kql_terms(query_of(saved)):
            if field in vocabulary:
                assert value in vocabulary[field], (saved["id"], field, value)


def test_the_changes_by_user_search_shows_who_did_what_where() -> None:
    attributes = by_id("kubeledger-search-changes-by-user")["attributes"]

    assert attributes["columns"][:4] == [
        "user.name",
        "event.action",
        "orchestrator.namespace",
        "orchestrator.resource.name",
    ]
    assert attributes["sort"][0] == ["user.name", "asc"]


def test_the_dashboard_embeds_the_searches_and_charts() -> None:
    (dashboard,) = of_type("dashboard")
    embedded = {(reference["type"], reference["id"]) for reference in dashboard["references"]}

    assert {("search", "kubeledger-search-critical-rbac")} <= embedded
    assert {saved_type for saved_type, _ in embedded} == {"search", "visualization"}
    assert {("visualization", saved["id"]) for saved in of_type("visualization")} <= embedded


@pytest.mark.parametrize(("key", "counted"), sorted(DELIVERY_PANELS.items()))
def test_each_delivery_panel_counts_its_actions_by_its_fields(
        key: tuple[str, str], counted: tuple[set[str], list[str]]) -> None:
    actions, fields = counted
    saved = by_id(key[1])

    assert {value for field, value in kql_terms(query_of(saved))} == actions
    assert kql_fields(query_of(saved)) == {"event.action"}
    assert [aggregation["params"]["field"] for aggregation in aggregations(saved)
            if "field" in aggregation["params"]] == fields
    assert aggregations(saved)[0]["type"] == "count"


def test_the_dashboard_lays_out_every_panel_without_overlap() -> None:
    (dashboard,) = of_type("dashboard")
    cells = [(column, row) for panel in panels(dashboard)
             for column in range(panel["gridData"]["x"],
                                 panel["gridData"]["x"] + panel["gridData"]["w"])
             for row in range(panel["gridData"]["y"],
                              panel["gridData"]["y"] + panel["gridData"]["h"])]

    assert len(cells) == len(set(cells))
    assert all(column < 48 for column, _ in cells)  # Kibana's grid is 48 columns wide
    assert {("visualization", panel["panelRefName"].removeprefix("panel_"))
            for panel in panels(dashboard)} >= {
        ("visualization", "rollouts-over-time"), ("visualization", "rollbacks-and-failures"),
        ("visualization", "delivery-by-namespace")}
