"""Operator settings: environment variables over an optional YAML file, validated at start-up.

Every setting has an environment variable (``KUBELEDGER_*``, and the conventional
``ELASTICSEARCH_*`` for the sink) and a key in the YAML file named by
``KUBELEDGER_CONFIG`` (the same names in snake_case, Elasticsearch settings under
``elasticsearch:``). The environment wins over the file. Bad values stop the operator
with one message naming the setting, before it touches the cluster.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kubeledger import tls_files
from kubeledger.core import checkpoints, kinds
from kubeledger.core.anomalies import cron
from kubeledger.core.anomalies.policy import Policy, Threshold
from kubeledger.core.model import AnomalyKind
from kubeledger.core.redaction import RedactionPolicy
from kubeledger.identity.commit import DEFAULT_COMMIT_ANNOTATIONS
from kubeledger.recording import ledger, recorder, replay
from kubeledger.sinks.elasticsearch import ecs

ENV_PREFIX = "KUBELEDGER_"
CONFIG_FILE_ENV = "KUBELEDGER_CONFIG"
# Also what ``kubeledger verify`` uses, which reads no settings.
DEFAULT_API_TIMEOUT_SECONDS = 30.0


# Kubernetes object names (RFC 1123): a label for namespaces, a subdomain for most others.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL.pattern}(\.{_DNS_LABEL.pattern})*")


def _object_name(name: str, *, pattern: re.Pattern[str], longest: int, what: str) -> str:
    if len(name) > longest or not pattern.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid {what}: lower-case letters, digits and "
                         f"'-'{', dots between parts' if pattern is _DNS_SUBDOMAIN else ''}, "
                         f"at most {longest} characters (a DNS-1123 name)")
    return name


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which setting and why."""


class ElasticsearchSettings(BaseModel):
    """Where and how records are shipped; absent ``urls`` means no Elasticsearch sink."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str] = Field(default_factory=list)
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    index_prefix: str = "kubeledger"
    # How long Elasticsearch keeps records, through an ILM policy where ILM exists;
    # None installs no policy.
    retention_days: int | None = Field(default=365, ge=1)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    flush_interval_seconds: float = Field(default=1.0, gt=0)
    # How often the chain's delivered head is written down as a checkpoint (see
    # core/checkpoints.py), and the file of the key that signs checkpoints (none: unsigned).
    checkpoint_interval_seconds: float = Field(default=300.0, gt=0)
    checkpoint_key_file: Path | None = None

    @field_validator("index_prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str) -> str:
        return ecs.check_index_prefix(prefix)

    @field_validator("ca_certs")
    @classmethod
    def _loadable_bundle(cls, path: Path | None) -> Path | None:
        return None if path is None else tls_files.check_bundle(path)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not a URL starting with http:// or https:// "
                                 "and naming a host")
        return urls

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> ElasticsearchSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        if self.api_key is not None and self.username is not None:
            raise ValueError("set either api_key or username and password, not both")
        return self

    @field_validator("checkpoint_key_file")
    @classmethod
    def _usable_key(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_checkpoint_key(path)
        return path

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def checkpoint_key(self) -> bytes | None:
        """The key that signs checkpoints, or None to leave them unsigned."""
        return None if self.checkpoint_key_file is None else read_checkpoint_key(
            self.checkpoint_key_file)


def read_checkpoint_key(path: Path) -> bytes:
    """The key in ``path``, without surrounding whitespace; ValueError says what is wrong."""
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise ValueError(f"cannot read the checkpoint key: {error.strerror} ({path})") from None
    problem = checkpoints.key_problem(key)
    if problem is not None:
        raise ValueError(f"the checkpoint key file {path} {problem}")
    return key


class Settings(BaseModel):
    """Everything the operator can be told. Units are in the names.

    Unknown keys are refused, so a typo in the file or an environment variable fails
    loudly instead of being ignored.
    """

    model_config = ConfigDict(extra="forbid")

    cluster_name: str = "default"
    # The operator's own namespace: where it keeps its delivery position and its
    # retention watermark (ConfigMaps).
    namespace: str = "kubeledger"
    # Keys the hashes that stand in for secret values; must stay the same across
    # restarts, or every secret-looking value would look changed.
    redaction_salt: SecretStr
    # Which env var, flag and annotation names count as secret (see redaction.py).
    redaction: RedactionPolicy = Field(default_factory=RedactionPolicy)
    retention_days: float = Field(default=7.0, gt=0)
    # Workload kinds (apps/v1 plural names) watched besides Deployments.
    watch_extra_kinds: list[str] = Field(default_factory=list)
    max_changes_per_record: int = Field(default=64, ge=1)
    reconcile_interval_seconds: float = Field(default=600.0, gt=0)
    # A first install records what it finds at most this fast (``inventoried`` records),
    # so that other clients of the apiserver keep their pace.
    inventory_records_per_second: float = Field(default=recorder.DEFAULT_INVENTORY_PER_SECOND,
                                                gt=0)
    # How many records may be on their way to the apiserver at once (sealed in order;
    # see recording/ledger.py). 1 writes one at a time.
    write_window: int = Field(default=ledger.DEFAULT_WINDOW, ge=1, le=256)
    # The longest any one call to the apiserver may take: past it the call fails and is
    # retried, so a connection that never answers cannot stop recording.
    api_timeout_seconds: float = Field(default=DEFAULT_API_TIMEOUT_SECONDS, gt=0)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    # The admission webhook server (identity of who made a change); off without a port.
    webhook_host: str = "0.0.0.0"  # noqa: S104 (in a pod, the Service reaches it on any address)
    webhook_port: int | None = Field(default=None, ge=1, le=65535)
    webhook_cert_dir: Path | None = None  # holds tls.crt, tls.key and ca.crt
    # The receiver of the apiserver's audit webhook backend; off without a port.
    audit_host: str = "0.0.0.0"  # noqa: S104 (as above)
    audit_port: int | None = Field(default=None, ge=1, le=65535)
    audit_client_ca: Path | None = None  # CA that signed the apiserver's client certificate
    # How long a live change waits for its audit event (the apiserver batches them).
    audit_wait_seconds: float = Field(default=3.0, ge=0)
    # The apiserver's --audit-webhook-initial-backoff: how long it retries an audit batch,
    # hence how long a downtime is recorded from the audit stream (recording/replay.py).
    audit_initial_backoff_seconds: float = Field(
        default=replay.DEFAULT_INITIAL_BACKOFF_SECONDS, gt=0)
    # Annotations naming the commit of a change, tried in order (see identity/commit.py).
    commit_annotations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMIT_ANNOTATIONS))
    # Leader election (see leadership.py): the Lease in ``namespace`` that names the one
    # replica writing records, and its timing.
    lease_name: str = "kubeledger"
    lease_duration_seconds: float = Field(default=15.0, gt=0)
    lease_renew_deadline_seconds: float = Field(default=10.0, gt=0)
    lease_retry_period_seconds: float = Field(default=2.0, gt=0)
    # This replica, as the Lease names its holder; empty: the host name and process id.
    pod_name: str | None = None
    # This replica's address, so it does not relay identities to itself.
    pod_ip: str | None = None
    # The Service whose ready endpoints are the other replicas (the webhook's): what one
    # replica's receivers learn is relayed to them (see peers.py). Empty: no relaying.
    peer_service: str | None = None
    # Anomaly detection (core/anomalies; the README's "Anomalies"). Kinds switched off:
    anomalies_disabled: list[AnomalyKind] = Field(default_factory=list)
    # Namespaces (names or patterns such as "prod-*") where initiators must be verified
    # and changes kept to the change windows.
    protected_namespaces: list[str] = Field(default_factory=list)
    # "<cron schedule> <duration>" each, read in change_window_time_zone; none: no rule.
    change_windows: list[str] = Field(default_factory=list)
    change_window_time_zone: str = "UTC"
    # Usernames or groups that may change protected namespaces outside the windows.
    change_window_exempt: list[str] = Field(default_factory=list)
    # Usernames or groups that may change GitOps-managed objects (an autoscaler's).
    gitops_exempt: list[str] = Field(default_factory=list)
    # burst: one identity changing more than burst_changes objects in burst_minutes.
    burst_changes: int = Field(default=20, ge=1)
    burst_minutes: float = Field(default=5.0, gt=0)
    # rollback-spike / failure-spike: more than this many in spike_minutes, per namespace.
    rollback_spike_count: int = Field(default=3, ge=1)
    failure_spike_count: int = Field(default=3, ge=1)
    spike_minutes: float = Field(default=30.0, gt=0)
    # Registries or registry paths images may come from; empty: any.
    approved_registries: list[str] = Field(default_factory=list)

    @field_validator("redaction_salt")
    @classmethod
    def _salt_given(cls, salt: SecretStr) -> SecretStr:
        if not salt.get_secret_value().strip():
            raise ValueError("the salt is empty; give it the value of the release's salt "
                             "Secret, the same at every start")
        return salt

    @field_validator("namespace")
    @classmethod
    def _namespace_name(cls, name: str) -> str:
        return _object_name(name, pattern=_DNS_LABEL, longest=63, what="namespace name")

    @field_validator("lease_name")
    @classmethod
    def _lease_name(cls, name: str) -> str:
        return _object_name(name, pattern=_DNS_SUBDOMAIN, longest=253, what="Lease name")

    @field_validator("pod_ip")
    @classmethod
    def _an_address(cls, address: str | None) -> str | None:
        if address is not None:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return address

    @field_validator("webhook_cert_dir")
    @classmethod
    def _serving_certificate(cls, directory: Path | None) -> Path | None:
        return None if directory is None else tls_files.check_serving_directory(directory)

    @field_validator("audit_client_ca")
    @classmethod
    def _client_ca(cls, path: Path | None) -> Path | None:
        return None if path is None else tls_files.check_bundle(path)

    @field_validator("change_windows")
    @classmethod
    def _readable_windows(cls, windows: list[str]) -> list[str]:
        for window in windows:
            cron.parse(window)
        return windows

    @field_validator("change_window_time_zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (an IANA name such as "
                             "'Europe/Berlin')") from None
        return zone

    def anomaly_policy(self) -> Policy:
        """What the anomaly detectors are told (see core/anomalies/policy.py)."""
        return Policy(
            disabled=frozenset(self.anomalies_disabled),
            protected_namespaces=tuple(self.protected_namespaces),
            change_windows=tuple(cron.parse(window) for window in self.change_windows),
            change_window_zone=ZoneInfo(self.change_window_time_zone),
            change_window_exempt=frozenset(self.change_window_exempt),
            gitops_exempt=frozenset(self.gitops_exempt),
            burst=Threshold(self.burst_changes, timedelta(minutes=self.burst_minutes)),
            rollback_spike=Threshold(self.rollback_spike_count,
                                     timedelta(minutes=self.spike_minutes)),
            failure_spike=Threshold(self.failure_spike_count,
                                    timedelta(minutes=self.spike_minutes)),
            approved_registries=tuple(self.approved_registries),
        )

    @model_validator(mode="after")
    def _servers_have_certificates(self) -> Settings:
        if self.webhook_port is not None and self.webhook_cert_dir is None:
            raise ValueError("webhook_cert_dir must be set to serve the admission webhook "
                             "(webhook_port)")
        if self.audit_port is not None:
            for name in ("webhook_cert_dir", "audit_client_ca"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name} must be set to serve the audit receiver "
                                     "(audit_port)")
        return self

    @model_validator(mode="after")
    def _lease_timing_in_order(self) -> Settings:
        # The fence (leadership.py) needs a renewal to end before the lease can expire,
        # and more than one try at renewing within the deadline.
        if not (self.lease_duration_seconds > self.lease_renew_deadline_seconds
                > self.lease_retry_period_seconds):
            raise ValueError(
                "lease timing must satisfy lease_duration_seconds > "
                "lease_renew_deadline_seconds > lease_retry_period_seconds, got "
                f"{self.lease_duration_seconds:g} > {self.lease_renew_deadline_seconds:g} > "
                f"{self.lease_retry_period_seconds:g}")
        return self

    @model_validator(mode="after")
    def _relaying_has_the_webhook(self) -> Settings:
        if self.peer_service is not None and self.webhook_port is None:
            raise ValueError("peer_service needs webhook_port: replicas relay identities "
                             "to each other's webhook server")
        return self

    @field_validator("watch_extra_kinds")
    @classmethod
    def _known_kinds(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(kinds.EXTRA_WORKLOADS))
        if unknown:
            raise ValueError(f"unsupported kinds {unknown}; choose from "
                             f"{', '.join(kinds.EXTRA_WORKLOADS)}")
        return names


def load(environ: dict[str, str] | None = None) -> Settings:
    """Reads the file (if any) and the environment into validated settings."""
    return _validated(Settings, _gathered(environ))


def load_elasticsearch(environ: dict[str, str] | None = None) -> ElasticsearchSettings:
    """Only the Elasticsearch settings (``ELASTICSEARCH_*`` and the file's section): what
    the command line needs to read the trail back, without the operator's own settings."""
    return _validated(ElasticsearchSettings, _gathered(environ).get("elasticsearch") or {},
                      within=("elasticsearch",))


ModelT = TypeVar("ModelT", bound=BaseModel)


def _gathered(environ: dict[str, str] | None) -> dict[str, Any]:
    """The file's settings with the environment's laid over them."""
    env = dict(os.environ if environ is None else environ)
    data = _read_file(env.get(CONFIG_FILE_ENV))
    _merge_environment(data, env)
    return data


def _validated(model: type[ModelT], data: dict[str, Any], *,
               within: tuple[str, ...] = ()) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_problem((*within, *issue["loc"]), issue["msg"])
                             for issue in error.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _problem(location: tuple[int | str, ...], message: str) -> str:
    """One problem, named by its setting; a rule over several settings names them itself."""
    # pydantic prefixes the messages our validators raise; the setting's name says enough.
    message = message.removeprefix("Value error, ")
    return f"{'.'.join(str(part) for part in location)}: {message}" if location else message


def _read_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


# Comma-separated in the environment.
_LIST_SETTINGS = {"watch_extra_kinds", "urls", "commit_annotations", "anomalies_disabled",
                  "protected_namespaces", "change_window_exempt", "gitops_exempt",
                  "approved_registries"}
# Lists whose items may hold commas: separated by ";" in the environment.
_SEMICOLON_LISTS = {"change_windows"}


def _merge_environment(data: dict[str, Any], env: dict[str, str]) -> None:
    """Overlays ``KUBELEDGER_<NAME>`` and ``ELASTICSEARCH_<NAME>`` onto the file's data.

    Only variables naming a setting are read: the environment also carries unrelated
    variables with these prefixes (tooling's, or Kubernetes service links).
    """
    es_fields = set(ElasticsearchSettings.model_fields) | {"url"}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX):
            name = key.removeprefix(ENV_PREFIX).lower()
            if name in Settings.model_fields and name != "elasticsearch":
                _set(data, name, value)
        elif key.startswith("ELASTICSEARCH_"):
            name = key.removeprefix("ELASTICSEARCH_").lower()
            if name in es_fields:
                _set(_elasticsearch_section(data), "urls" if name == "url" else name, value)


def _elasticsearch_section(data: dict[str, Any]) -> dict[str, Any]:
    """The file's ``elasticsearch:`` mapping, made when absent or left empty in the file.

    An ``elasticsearch:`` key whose settings are all commented out reads as None.
    """
    section = data.get("elasticsearch")
    if section is None:
        section = data["elasticsearch"] = {}
    if not isinstance(section, dict):
        raise ConfigError("elasticsearch: must be a mapping in the config file")
    return section


def _set(target: dict[str, Any], name: str, value: str) -> None:
    if name in _LIST_SETTINGS | _SEMICOLON_LISTS:
        separator = ";" if name in _SEMICOLON_LISTS else ","
        target[name] = [item.strip() for item in value.split(separator) if item.strip()]
    elif value != "":
        target[name] = value
