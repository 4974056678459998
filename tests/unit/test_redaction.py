"""Secret-looking values never leave redaction, yet their changes stay visible."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pydantic
import pytest

from kubeledger.core import diff, projection, redaction
from unit import objects

SALT = b"cluster-prod-salt"
RAW = "hunter2-plain-value"  # the secret value every test tries to leak
MARKER = re.compile(r"redacted:sha256:[0-9a-f]{32}")


def redacted_deployment(container: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    body = objects.deployment(template=objects.pod_template([container]), **kwargs)
    return redaction.Redactor(SALT).redact(projection.project(body))


def web_container(redacted: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = redacted["spec"]["template"]["spec"]["containers"][0]
    return container


def test_secret_env_value_is_replaced_by_a_marker() -> None:
    container = objects.container(env=[objects.env_var("DB_PASSWORD", RAW)])

    redacted = redacted_deployment(container)

    env = web_container(redacted)["env"]
    assert MARKER.fullmatch(env[0]["value"])
    assert RAW not in json.dumps(redacted)


def test_plain_env_values_and_secret_references_stay() -> None:
    reference = objects.env_from_secret("DB_PASSWORD", "db", "password")
    container = objects.container(env=[objects.env_var("DB_HOST", "db.shop.svc"), reference])

    env = web_container(redacted_deployment(container))["env"]

    assert env == [objects.env_var("DB_HOST", "db.shop.svc"), reference]


@pytest.mark.parametrize("field", ["initContainers", "ephemeralContainers"])
def test_env_of_init_and_ephemeral_containers_is_redacted(field: str) -> None:
    pod = {field: [objects.container("setup", env=[objects.env_var("API_TOKEN", RAW)])]}

    redacted = redaction.Redactor(SALT).redact({"spec": pod})

    assert MARKER.fullmatch(redacted["spec"][field][0]["env"][0]["value"])


@pytest.mark.parametrize(
    "args",
    [
        ["--db-password=" + RAW],
        ["--token", RAW],
        ["-secret-key=" + RAW],
        ["--secret-key", RAW, "--verbose"],
        ["sh", "-c", f"exec app --log-level info --secret-key {RAW} --port 8080"],
        ["sh", "-c", f'DB_PASSWORD="{RAW}" exec app'],
        ["--set=db.password=" + RAW],
        ["--set", "auth.apiKey=" + RAW],
    ],
)
def test_secret_values_in_args_are_redacted(args: list[str]) -> None:
    redacted = redacted_deployment(objects.container(args=args))

    assert RAW not in json.dumps(redacted)
    assert MARKER.search(json.dumps(web_container(redacted)["args"]))


def test_secret_values_in_command_are_redacted() -> None:
    command = ["/bin/app", "--api-key", RAW]

    redacted = redacted_deployment(objects.container(command=command))

    assert web_container(redacted)["command"][:2] == ["/bin/app", "--api-key"]
    assert MARKER.fullmatch(web_container(redacted)["command"][2])


def test_harmless_args_stay_as_written() -> None:
    args = ["--keycloak-url=https://sso.example.com", "--port", "8080", "--verbose"]

    redacted = redacted_deployment(objects.container(args=args))

    assert web_container(redacted)["args"] == args


def test_a_flag_value_is_never_taken_from_the_next_flag() -> None:
    args = ["--token", "--verbose"]

    assert web_container(redacted_deployment(objects.container(args=args)))["args"] == args


def test_secret_annotations_are_redacted_on_object_and_pod_template() -> None:
    template = objects.pod_template(annotations={"example.com/api-token": RAW})
    body = objects.deployment(
        template=template,
        annotations={"example.com/db-password": RAW, "example.com/team": "payments"},
    )

    redacted = redaction.Redactor(SALT).redact(projection.project(body))

    assert RAW not in json.dumps(redacted)
    assert redacted["metadata"]["annotations"]["example.com/team"] == "payments"
    template_annotations = redacted["spec"]["template"]["metadata"]["annotations"]
    assert MARKER.fullmatch(template_annotations["example.com/api-token"])


def test_same_value_and_salt_give_the_same_marker_wherever_it_appears() -> None:
    container = objects.container(
        env=[objects.env_var("DB_PASSWORD", RAW)], args=["--password=" + RAW]
    )

    first = web_container(redacted_deployment(container))
    again = web_container(redacted_deployment(copy.deepcopy(container)))

    assert first["env"][0]["value"] == again["env"][0]["value"]
    assert first["args"][0] == "--password=" + first["env"][0]["value"]


def test_different_values_give_different_markers() -> None:
    redactor = redaction.Redactor(SALT)

    assert redactor.marker(RAW) != redactor.marker(RAW + "!")


def test_different_salts_give_different_markers() -> None:
    assert redaction.Redactor(b"salt-a").marker(RAW) != redaction.Redactor(b"salt-b").marker(RAW)


def test_redaction_is_idempotent() -> None:
    container = objects.container(env=[objects.env_var("DB_PASSWORD", RAW)], args=["--token", RAW])
    once = redacted_deployment(container)

    assert redaction.Redactor(SALT).redact(once) == once


def test_redaction_leaves_its_argument_unchanged_and_shares_untouched_parts() -> None:
    body = objects.deployment(
        template=objects.pod_template(
            [objects.container(env=[objects.env_var("DB_PASSWORD", RAW)])]
        )
    )
    projected = projection.project(body)
    before = copy.deepcopy(projected)

    redacted = redaction.Redactor(SALT).redact(projected)

    assert projected == before
    assert redacted["spec"]["strategy"] is projected["spec"]["strategy"]
    assert redacted["spec"]["template"] is not projected["spec"]["template"]


def test_a_changed_secret_shows_in_the_diff_as_a_changed_marker_only() -> None:
    def redacted_with(value: str) -> dict[str, Any]:
        return redacted_deployment(objects.container(env=[objects.env_var("DB_PASSWORD", value)]))

    changes, _ = diff.diff(redacted_with(RAW), redacted_with(RAW + "-rotated"))

    assert [change.path for change in changes] == [
        "spec.template.spec.containers[name=web].env[name=DB_PASSWORD].value"
    ]
    assert MARKER.fullmatch(changes[0].old)
    assert MARKER.fullmatch(changes[0].new)
    assert RAW not in json.dumps([change.model_dump() for change in changes])


@pytest.mark.parametrize(
    "name",
    [
        "DB_PASSWORD",
        "MYSQL_ROOT_PASSWD",
        "DB_PASS",
        "MYSQL_PWD",
        "CLIENT_SECRET",
        "GITHUB_TOKEN",
        "accessToken",
        "API_KEY",
        "apiKey",
        "PRIVATEKEY",
        "AWS_ACCESS_KEY_ID",
        "tls.key",
        "DB_CREDENTIALS",
        "REDIS_AUTH",
        "SENTRY_DSN",
        "AZURE_CONNECTION_STRING",
        "example.com/api-token",
    ],
)
def test_default_policy_treats_as_secret(name: str) -> None:
    assert redaction.Redactor(SALT).is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "keycloak-url",
        "KEYCLOAK_URL",
        "KEYSPACE",
        "BYPASS_CACHE",
        "OAUTH_CLIENT_ID",
        "TLS_CERT",
        "DB_HOST",
        "example.com/team",
    ],
)
def test_default_policy_leaves_alone(name: str) -> None:
    assert not redaction.Redactor(SALT).is_secret_name(name)


def test_a_configured_policy_replaces_the_default_patterns() -> None:
    policy = redaction.RedactionPolicy(name_patterns=(r"^LICENSE$",))
    redactor = redaction.Redactor(SALT, policy)

    assert redactor.is_secret_name("license")
    assert not redactor.is_secret_name("DB_PASSWORD")


def test_an_empty_policy_redacts_nothing() -> None:
    redactor = redaction.Redactor(SALT, redaction.RedactionPolicy(name_patterns=()))

    assert not redactor.is_secret_name("DB_PASSWORD")


def test_an_invalid_pattern_is_refused_when_the_policy_is_built() -> None:
    with pytest.raises(pydantic.ValidationError, match="regular expression"):
        redaction.RedactionPolicy(name_patterns=("PASS(",))


def test_an_empty_salt_is_refused() -> None:
    with pytest.raises(ValueError, match="salt"):
        redaction.Redactor(b"")
