"""Settings: environment over file, and bad input stopped with a message naming the setting."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest

from kubeledger import config
from unit.certificates import serving_directory

SALT = "salt-from-the-secret"
ENV = {"KUBELEDGER_REDACTION_SALT": SALT}


def with_file(tmp_path: Path, text: str, **environ: str) -> dict[str, str]:
    """An environment whose config file holds ``text``."""
    path = tmp_path / "kubeledger.yaml"
    path.write_text(text)
    return {**ENV, config.CONFIG_FILE_ENV: str(path), **environ}


def refused(environ: dict[str, str], *fragments: str) -> None:
    """Asserts that loading fails with a message holding each fragment."""
    with pytest.raises(config.ConfigError) as raised:
        config.load(environ)
    for fragment in fragments:
        assert re.search(fragment, str(raised.value)), str(raised.value)


def test_the_salt_is_the_one_required_setting() -> None:
    refused({}, "redaction_salt", "Field required")
    refused({"KUBELEDGER_REDACTION_SALT": ""}, "redaction_salt")


def test_defaults_apply_to_everything_else() -> None:
    settings = config.load(ENV)

    assert settings.redaction_salt.get_secret_value() == SALT
    assert settings.cluster_name == "default"
    assert settings.watch_extra_kinds == []
    assert not settings.elasticsearch.enabled


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    environ = with_file(
        tmp_path,
        "cluster_name: from-file\nretention_days: 30\nelasticsearch:\n  index_prefix: audit\n",
        KUBELEDGER_CLUSTER_NAME="from-env",
        ELASTICSEARCH_INDEX_PREFIX="audit-env",
    )

    settings = config.load(environ)

    assert settings.cluster_name == "from-env"
    assert settings.retention_days == 30.0
    assert settings.elasticsearch.index_prefix == "audit-env"


def test_elasticsearch_url_takes_a_comma_separated_list() -> None:
    settings = config.load(
        {**ENV, "ELASTICSEARCH_URL": " https://es-1:9200, https://es-2:9200 ,"}
    )

    assert settings.elasticsearch.urls == ["https://es-1:9200", "https://es-2:9200"]
    assert settings.elasticsearch.enabled


def test_elasticsearch_env_fills_a_section_left_empty_in_the_file(tmp_path: Path) -> None:
    environ = with_file(tmp_path, "elasticsearch:\n  # urls: [https://es:9200]\n",
                        ELASTICSEARCH_URL="https://es:9200")

    assert config.load(environ).elasticsearch.urls == ["https://es:9200"]


def test_elasticsearch_section_must_be_a_mapping(tmp_path: Path) -> None:
    environ = with_file(tmp_path, "elasticsearch: https://es:9200\n",
                        ELASTICSEARCH_URL="https://es:9200")

    refused(environ, "elasticsearch", "mapping")


def test_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    refused(with_file(tmp_path, "clustr_name: prod\n"), "clustr_name", "Extra inputs")
    refused(with_file(tmp_path, "elasticsearch:\n  url_list: []\n"), r"elasticsearch\.url_list")


def test_unrelated_variables_with_our_prefixes_are_ignored() -> None:
    settings = config.load(
        {
            **ENV,
            "KUBELEDGER_CACHE": "/home/dev/.cache/kubeledger",
            # A Kubernetes service link for a Service called elasticsearch.
            "ELASTICSEARCH_SERVICE_HOST": "10.96.0.12",
        }
    )

    assert settings.elasticsearch.urls == []


def test_extra_workload_kinds_are_a_comma_separated_list() -> None:
    settings = config.load({**ENV, "KUBELEDGER_WATCH_EXTRA_KINDS": "statefulsets,daemonsets"})

    assert settings.watch_extra_kinds == ["statefulsets", "daemonsets"]


def test_an_unsupported_kind_is_refused() -> None:
    refused({**ENV, "KUBELEDGER_WATCH_EXTRA_KINDS": "statefulsets,cronjobs"},
            "watch_extra_kinds", "cronjobs")


def test_redaction_patterns_come_from_the_file(tmp_path: Path) -> None:
    settings = config.load(with_file(tmp_path, "redaction:\n  name_patterns: ['^LICENSE$']\n"))

    assert settings.redaction.name_patterns == ("^LICENSE$",)


def test_an_invalid_redaction_pattern_is_refused(tmp_path: Path) -> None:
    environ = with_file(tmp_path, "redaction:\n  name_patterns: ['(unclosed']\n")

    refused(environ, r"redaction\.name_patterns", "not a valid regular expression")


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    assert config.load(with_file(tmp_path, "")).cluster_name == "default"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cluster_name: [unclosed\n", "cannot read config file"),
        ("- cluster_name\n- prod\n", "must hold a mapping at the top level"),
    ],
)
def test_a_file_without_a_yaml_mapping_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    refused(with_file(tmp_path, text), problem)


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    refused({**ENV, config.CONFIG_FILE_ENV: str(tmp_path / "absent.yaml")},
            "cannot read config file", "absent.yaml")
    refused({**ENV, config.CONFIG_FILE_ENV: str(tmp_path)}, "cannot read config file")


def test_the_api_timeout_has_a_default_and_must_be_positive() -> None:
    assert config.load(ENV).api_timeout_seconds == config.DEFAULT_API_TIMEOUT_SECONDS
    assert config.load({**ENV, "KUBELEDGER_API_TIMEOUT_SECONDS": "5"}).api_timeout_seconds == 5
    refused({**ENV, "KUBELEDGER_API_TIMEOUT_SECONDS": "0"}, "api_timeout_seconds")


def test_the_apiserver_s_audit_backoff_has_its_default_and_must_be_positive() -> None:
    assert config.load(ENV).audit_initial_backoff_seconds == 10
    backoff = config.load({**ENV, "KUBELEDGER_AUDIT_INITIAL_BACKOFF_SECONDS": "2.5"})
    assert backoff.audit_initial_backoff_seconds == 2.5
    refused({**ENV, "KUBELEDGER_AUDIT_INITIAL_BACKOFF_SECONDS": "0"},
            "audit_initial_backoff_seconds")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real serving certificate directory and a CA bundle, as the pod mounts them."""
    directory = serving_directory(tmp_path_factory.mktemp("webhook"))
    return {"KUBELEDGER_WEBHOOK_CERT_DIR": str(directory),
            "KUBELEDGER_AUDIT_CLIENT_CA": str(directory / "ca.crt")}


@pytest.mark.parametrize(
    ("environ", "kept", "missing"),
    [
        ({"KUBELEDGER_WEBHOOK_PORT": "8443"}, (), "webhook_cert_dir"),
        ({"KUBELEDGER_AUDIT_PORT": "9443"}, ("KUBELEDGER_AUDIT_CLIENT_CA",),
         "webhook_cert_dir"),
        ({"KUBELEDGER_AUDIT_PORT": "9443"}, ("KUBELEDGER_WEBHOOK_CERT_DIR",),
         "audit_client_ca"),
    ],
)
def test_a_server_without_its_certificates_is_refused_before_start(
    environ: dict[str, str], kept: tuple[str, ...], missing: str, served: dict[str, str],
) -> None:
    refused({**ENV, **environ, **{name: served[name] for name in kept}},
            f"{missing} must be set")


def test_servers_with_their_certificates_are_accepted(served: dict[str, str]) -> None:
    settings = config.load({**ENV, "KUBELEDGER_WEBHOOK_PORT": "8443",
                            "KUBELEDGER_AUDIT_PORT": "9443", **served})

    assert (settings.webhook_port, settings.audit_port) == (8443, 9443)


def test_checkpoints_are_unsigned_every_five_minutes_by_default() -> None:
    settings = config.load(ENV).elasticsearch

    assert settings.checkpoint_interval_seconds == 300
    assert settings.checkpoint_key() is None


def test_the_checkpoint_key_is_read_from_its_file_and_never_said(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("0123456789abcdef" * 4 + "\n")

    settings = config.load({**ENV, "ELASTICSEARCH_CHECKPOINT_KEY_FILE": str(key),
                            "ELASTICSEARCH_CHECKPOINT_INTERVAL_SECONDS": "2"}).elasticsearch

    assert settings.checkpoint_key() == b"0123456789abcdef" * 4
    assert settings.checkpoint_interval_seconds == 2


def test_an_unusable_checkpoint_key_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("not-secret-enough")

    refused({**ENV, "ELASTICSEARCH_CHECKPOINT_KEY_FILE": str(short)},
            "elasticsearch.checkpoint_key_file", "holds 17 bytes", "at least 32")
    refused({**ENV, "ELASTICSEARCH_CHECKPOINT_KEY_FILE": str(tmp_path / "absent")},
            "elasticsearch.checkpoint_key_file", "No such file or directory")
    with pytest.raises(config.ConfigError) as raised:
        config.load({**ENV, "ELASTICSEARCH_CHECKPOINT_KEY_FILE": str(short)})
    assert "not-secret-enough" not in str(raised.value)


def test_anomaly_settings_from_the_environment() -> None:
    settings = config.load({**ENV, "KUBELEDGER_PROTECTED_NAMESPACES": "prod, prod-*",
                            "KUBELEDGER_CHANGE_WINDOWS": "0 9 * * 1-5 8h; 0 10 * * 6 2h",
                            "KUBELEDGER_CHANGE_WINDOW_TIME_ZONE": "Europe/Berlin",
                            "KUBELEDGER_ANOMALIES_DISABLED": "burst,failure-spike",
                            "KUBELEDGER_BURST_CHANGES": "50"})
    policy = settings.anomaly_policy()

    assert policy.protected_namespaces == ("prod", "prod-*")
    assert [window.text for window in policy.change_windows] == ["0 9 * * 1-5 8h",
                                                                  "0 10 * * 6 2h"]
    assert policy.change_window_zone.key == "Europe/Berlin"
    assert sorted(policy.disabled) == ["burst", "failure-spike"]
    assert policy.burst.count == 50


def test_bad_anomaly_settings_are_refused_by_name() -> None:
    refused({**ENV, "KUBELEDGER_CHANGE_WINDOWS": "0 9 * *"},
            r"^invalid configuration: change_windows: .*five cron fields")
    refused({**ENV, "KUBELEDGER_CHANGE_WINDOW_TIME_ZONE": "Europe/Atlantis"},
            r"change_window_time_zone: .*unknown time zone 'Europe/Atlantis'")
    refused({**ENV, "KUBELEDGER_ANOMALIES_DISABLED": "bursts"},
            r"anomalies_disabled\.0: .*'burst'")
    refused({**ENV, "KUBELEDGER_SPIKE_MINUTES": "0"}, r"spike_minutes: .*greater than 0")


def test_a_ca_bundle_that_cannot_be_loaded_stops_start_up(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    refused({**ENV, "ELASTICSEARCH_CA_CERTS": str(tmp_path / "absent.crt")},
            "ca_certs", "cannot read the CA bundle .*absent.crt: No such file")
    refused({**ENV, "ELASTICSEARCH_CA_CERTS": str(not_pem)},
            "ca_certs", "holds no certificate TLS can load")
    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    assert config.load({**ENV, "ELASTICSEARCH_CA_CERTS": str(bundle)}).elasticsearch.ca_certs == (
        bundle)
