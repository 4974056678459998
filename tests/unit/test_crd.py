"""The AuditRecord CRD: a valid Kubernetes object whose schema mirrors ``model.RecordSpec``.

The apiserver silently prunes fields a structural schema does not declare, so a model field
missing from ``crds/auditrecords.yaml`` would vanish from every stored record without an
error. These tests compare the schema with the model field by field and validate a fully
populated record against it, with pruning turned into a validation error.
"""

from __future__ import annotations

import copy
import enum
import typing
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # ships no type information
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from kubeledger.core import model
from unit import records

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "auditrecords.yaml"
CHART_COPY = ROOT / "helm" / "kubeledger" / "files" / "auditrecords.yaml"

Schema = dict[str, Any]


def load_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return crd


def spec_schema() -> Schema:
    (version,) = load_crd()["spec"]["versions"]
    schema: Schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def closed(schema: Schema) -> Schema:
    """The schema with pruning made visible: undeclared fields become errors."""
    result = copy.deepcopy(schema)
    nodes = [result]
    while nodes:
        node = nodes.pop()
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        nodes.extend(node.get("properties", {}).values())
        if "items" in node:
            nodes.append(node["items"])
    return result


def validator() -> jsonschema.Validator:
    return jsonschema.Draft4Validator(closed(spec_schema()))


def test_chart_ships_the_same_crd() -> None:
    assert CHART_COPY.read_bytes() == CRD_FILE.read_bytes(), (
        "the chart's CRD copy differs from crds/auditrecords.yaml (the source); run "
        "`cp crds/auditrecords.yaml helm/kubeledger/files/auditrecords.yaml`"
    )


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(load_crd(), "1.30.0", strict=True)


def test_crd_identity() -> None:
    crd = load_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{model.PLURAL}.{model.GROUP}"
    assert (spec["group"], spec["scope"]) == (model.GROUP, "Cluster")
    assert spec["names"] == {
        "kind": model.KIND,
        "listKind": f"{model.KIND}List",
        "plural": model.PLURAL,
        "singular": "auditrecord",
        "shortNames": ["ar"],
        "categories": ["audit"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (
        model.VERSION,
        True,
        True,
    )
    assert "subresources" not in version


def test_spec_is_immutable() -> None:
    assert spec_schema()["x-kubernetes-validations"] == [
        {"rule": "self == oldSelf", "message": "spec is immutable"},
    ]


def test_printer_columns() -> None:
    (version,) = load_crd()["spec"]["versions"]
    columns = [
        (column["name"], column["jsonPath"], column.get("priority", 0))
        for column in version["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Time", ".spec.observedAt", 0),
        ("Action", ".spec.action", 0),
        ("Kind", ".spec.subject.kind", 0),
        ("Namespace", ".spec.subject.namespace", 0),
        ("Name", ".spec.subject.name", 0),
        ("Initiator", ".spec.initiator.username", 0),
        ("Commit", ".spec.commit.sha", 0),
        ("Severity", ".spec.severity", 1),
        ("Anomalies", ".spec.anomalies[*].kind", 1),
        ("Age", ".metadata.creationTimestamp", 0),
    ]


def _find(annotation: Any, kind: type) -> Any:
    """The first class of ``kind`` inside a type annotation such as ``list[X] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, kind):
        return annotation
    for argument in typing.get_args(annotation):
        found = _find(argument, kind)
        if found is not None:
            return found
    return None


def assert_mirrors(record_model: type[BaseModel], schema: Schema, where: str) -> None:
    """Same field names, same required fields and same enums, all the way down."""
    fields = record_model.model_fields
    assert set(schema["properties"]) == set(fields), where
    required = {name for name, field in fields.items() if field.is_required()}
    assert set(schema.get("required", [])) == required, where
    for name, field in fields.items():
        node = schema["properties"][name]
        nested = _find(field.annotation, BaseModel)
        if nested is not None:
            assert_mirrors(nested, node.get("items", node), f"{where}.{name}")
        choices = _find(field.annotation, enum.Enum)
        if choices is not None:
            assert node["enum"] == [member.value for member in choices], f"{where}.{name}"


def test_schema_mirrors_the_model() -> None:
    assert_mirrors(model.RecordSpec, spec_schema(), "spec")


def test_full_record_validates() -> None:
    validator().validate(records.full_spec().wire())


def test_changed_values_may_be_any_json() -> None:
    changes = [
        model.FieldChange(path="spec.template.spec.containers[web].args", old=["-v"]),
        model.FieldChange(path="metadata.annotations", new={"a": [1, 2.5, None, False]}),
    ]
    validator().validate(records.full_spec_with(changes=changes).wire())


def test_minimal_record_validates() -> None:
    minimal = model.RecordSpec(
        action=model.Action.DELETED,
        severity=model.Severity.INFO,
        observedAt=records.OBSERVED_AT,
        cluster="c",
        subject=records.cluster_role_binding(),
    )
    validator().validate(minimal.wire())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("action",), "exploded"),
        (("initiator", "source"), "guess"),
        (("commit", "unknownField"), "x"),
        (("chain", "sequence"), "forty-two"),
        (("changesTruncated",), "yes"),
    ],
)
def test_schema_rejects_what_the_model_rejects(path: tuple[str, ...], value: str) -> None:
    wire = records.full_spec().wire()
    target = wire
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not validator().is_valid(wire)
