"""``kubeledger run`` with a bad setting: one message naming it, a non-zero exit, and
nothing started: no call to the cluster, no probe or metrics port opened.

One case per group of settings. The cluster is a TCP listener on 127.0.0.1 that counts
connections (a kubeconfig points at it), so "nothing half-starts" is observed, not assumed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeledger import cli
from kubeledger.cli import exits
from unit.certificates import serving_directory

SALT = "salt-from-the-secret"


class CountingListener:
    """A TCP listener on 127.0.0.1 that only counts the connections made to it."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.setblocking(False)
        self.port = self._socket.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                accepted, _ = self._socket.accept()
            except BlockingIOError:
                return count
            accepted.close()
            count += 1

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def apiserver() -> Iterator[CountingListener]:
    listener = CountingListener()
    try:
        yield listener
    finally:
        listener.close()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
    return port


def kubeconfig(directory: Path, port: int) -> Path:
    path = directory / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{port}",
  insecure-skip-tls-verify: true}}}}]
users: [{{name: u, user: {{token: not-a-real-token}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
""")
    return path


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def cert_dir_without_key(directory: Path) -> str:
    served = directory / "served"
    served.mkdir()
    (served / "tls.crt").write_text("not a certificate\n")
    return str(served)


# (group, environment beyond the salt, fragments the one message must hold)
CASES = [
    ("core", {"KUBELEDGER_REDACTION_SALT": ""}, ["redaction_salt"]),
    ("core", {"KUBELEDGER_RETENTION_DAYS": "0"}, ["retention_days", "greater than 0"]),
    ("core", {"KUBELEDGER_NAMESPACE": "Not_A_Namespace"}, ["namespace", "DNS"]),
    ("core", {"KUBELEDGER_WATCH_EXTRA_KINDS": "cronjobs"}, ["watch_extra_kinds",
                                                            "unsupported kinds"]),
    ("file", {"KUBELEDGER_CONFIG": "{tmp}/absent.yaml"}, ["cannot read config file"]),
    ("file", {"KUBELEDGER_CONFIG": "file:retension_days: 3\n"}, ["retension_days",
                                                                 "Extra inputs"]),
    ("redaction", {"KUBELEDGER_CONFIG": "file:redaction: {name_patterns: ['(']}\n"},
     ["redaction.name_patterns", "not a valid regular expression"]),
    ("elasticsearch", {"ELASTICSEARCH_URL": "es.example:9200"},
     ["elasticsearch.urls", "http:// or https://"]),
    ("elasticsearch", {"ELASTICSEARCH_URL": "https://127.0.0.1:9", "ELASTICSEARCH_USERNAME":
                       "writer"}, ["elasticsearch", "password"]),
    ("elasticsearch", {"ELASTICSEARCH_URL": "https://127.0.0.1:9",
                       "ELASTICSEARCH_CA_CERTS": "{tmp}/absent-ca.crt"},
     ["elasticsearch.ca_certs", "cannot read the CA bundle"]),
    ("elasticsearch", {"ELASTICSEARCH_URL": "https://127.0.0.1:9",
                       "ELASTICSEARCH_CHECKPOINT_KEY_FILE": "file:short\n"},
     ["checkpoint_key_file", "needs at least 32"]),
    ("receivers", {"KUBELEDGER_WEBHOOK_PORT": "8443"}, ["webhook_cert_dir must be set"]),
    ("receivers", {"KUBELEDGER_WEBHOOK_PORT": "8443",
                   "KUBELEDGER_WEBHOOK_CERT_DIR": "dir:"},
     ["webhook_cert_dir", "not a certificate and its private key"]),
    ("receivers", {"KUBELEDGER_AUDIT_PORT": "9443", "KUBELEDGER_WEBHOOK_CERT_DIR": "served:",
                   "KUBELEDGER_AUDIT_CLIENT_CA": "file:plain text\n"},
     ["audit_client_ca", "holds no certificate TLS can load"]),
    ("leader election", {"KUBELEDGER_LEASE_RENEW_DEADLINE_SECONDS": "20"},
     ["lease_duration_seconds > lease_renew_deadline_seconds"]),
    ("leader election", {"KUBELEDGER_LEASE_NAME": "kube ledger"}, ["lease_name", "DNS"]),
    ("peers", {"KUBELEDGER_PEER_SERVICE": "kubeledger-webhook"}, ["peer_service needs"]),
    ("peers", {"KUBELEDGER_POD_IP": "10.0.0.300"}, ["pod_ip", "IP address"]),
    ("anomalies", {"KUBELEDGER_CHANGE_WINDOWS": "0 25 * * * 1h"}, ["change_windows"]),
    ("anomalies", {"KUBELEDGER_CHANGE_WINDOW_TIME_ZONE": "Mars/Olympus"},
     ["unknown time zone"]),
    ("anomalies", {"KUBELEDGER_ANOMALIES_DISABLED": "sneaky"}, ["anomalies_disabled"]),
]


def environment(tmp_path: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    """The case's variables, with ``file:TEXT`` written to a file, ``dir:`` a directory
    holding a certificate without its key, ``served:`` a good serving certificate
    directory; ``{tmp}`` is the test's directory."""
    environ = {"KUBECONFIG": str(kubeconfig(tmp_path, port)),
               "KUBELEDGER_REDACTION_SALT": SALT}
    for name, value in extra.items():
        environ[name] = materialized(name, value, tmp_path)
    return environ


def materialized(name: str, value: str, tmp_path: Path) -> str:
    if value.startswith("file:"):
        return write(tmp_path / f"{name.lower()}.txt", value.removeprefix("file:"))
    if value == "dir:":
        return cert_dir_without_key(tmp_path)
    if value == "served:":
        return str(serving_directory(tmp_path / "served"))
    return value.replace("{tmp}", str(tmp_path))


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without any operator setting; set the case's on it."""
    for name in [name for name in os.environ
                 if name.startswith(("KUBELEDGER_", "ELASTICSEARCH_"))]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize("case", CASES, ids=[f"{group}-{next(iter(extra))}"
                                               for group, extra, _ in CASES])
def test_a_bad_setting_stops_start_up_with_one_message_and_starts_nothing(
    case: tuple[str, dict[str, str], list[str]], tmp_path: Path,
    apiserver: CountingListener, environ: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, extra, fragments = case
    for name, value in environment(tmp_path, apiserver.port, extra).items():
        environ.setenv(name, value)
    liveness = free_port()

    status = cli.main(["run", "--liveness", f"http://127.0.0.1:{liveness}/healthz"])

    out, err = capsys.readouterr()
    assert status == exits.USAGE
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.match(r"kubeledger: (invalid configuration|cannot read config file)", lines[0])
    for fragment in fragments:
        assert re.search(fragment, lines[0]), (fragment, lines[0])
    assert SALT not in err and out == ""
    assert apiserver.connections() == 0  # the cluster was never called
    with socket.socket() as probe:  # nor a probe served
        assert probe.connect_ex(("127.0.0.1", liveness)) != 0


def test_the_process_exits_with_the_usage_status(tmp_path: Path,
                                                 apiserver: CountingListener) -> None:
    """The real entry point, as the container runs it: the status Kubernetes sees."""
    variables = environment(tmp_path, apiserver.port, {"KUBELEDGER_RETENTION_DAYS": "-1"})
    command = Path(sys.executable).parent / "kubeledger"  # the installed entry point

    ran = subprocess.run([str(command), "run"], env=variables,
                         capture_output=True, text=True, timeout=60, check=False)

    assert ran.returncode == exits.USAGE == 2
    assert ran.stderr.splitlines() == [
        "kubeledger: invalid configuration: retention_days: Input should be greater than 0"]
    assert apiserver.connections() == 0


@pytest.mark.parametrize("case", [
    ("--liveness", "ftp://127.0.0.1:8080/healthz", "the scheme is not http"),
    ("--readiness", "http://127.0.0.1/readyz", "the port is missing"),
    ("--metrics", "http://127.0.0.1:99999/metrics", "the port is not a number"),
])
def test_a_probe_or_metrics_url_it_cannot_serve_is_refused_before_start(
    case: tuple[str, str, str], tmp_path: Path, apiserver: CountingListener,
    environ: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    option, url, problem = case
    for name, value in environment(tmp_path, apiserver.port, {}).items():
        environ.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        cli.main(["run", option, url])

    assert exited.value.code == exits.USAGE
    assert f"argument {option}: URL {url!r}: {problem}" in capsys.readouterr().err
    assert apiserver.connections() == 0
