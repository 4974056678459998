"""A single-node Elasticsearch with security on, run from the Maven Central distribution.

Elasticsearch refuses to run as root, and our machines and CI run as root: the server
then runs as the unprivileged system user ``kubeledger-es``, which owns this stack's
Elasticsearch config, data and log directories. Its HTTP port listens on 127.0.0.1 for
the host and on the host's node-network address for pods (``also_on``); the transport
port stays on 127.0.0.1, so with ``discovery.type: single-node`` it skips the production
bootstrap checks. The HTTP port serves HTTPS only, with a certificate the stack's CA
signed (``pki``): every client (the operator, the chart's pods, the tests, the command
line) verifies it with that CA. The ``elastic`` user's password comes from the keystore
(``bootstrap.password``), generated per stack; the operator writes as ``WRITER_USER``, a
file-realm user that may create documents and nothing more. ``elasticsearch.yml`` is
rewritten at every start, so a stack directory made by an older version gains new
settings.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import shutil
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path

from stack import cache, pki
from stack.processes import ProcessTable
from stack.readiness import http_ok, wait_until
from stack.shell import run, say

SERVICE_USER = "kubeledger-es"
# Where a stack's Elasticsearch lives when the service user cannot reach the stack's own
# directory (a checkout under root's home, mode 0700): one directory per stack path.
UNREACHABLE_STACKS_HOME = Path("/var/lib/kubeledger/elasticsearch")
HEAP = "-Xms512m -Xmx512m -XX:-UsePerfData"
TLS_DIRECTORY = "tls"  # inside the config directory
# The operator's own user: the least the README's "Write-once credentials" asks for, in
# the file realm (this distribution has no security index to keep native users in).
WRITER_USER = "kubeledger-writer"
WRITER_ROLE = "kubeledger_writer"
WRITER_ROLES_YML = f"""\
{WRITER_ROLE}:
  cluster: ["manage_index_templates", "read_ilm"]
  indices:
    - names: ["kubeledger-*"]
      privileges: ["create_doc", "create_index"]
"""


class Server:
    """The Elasticsearch of one stack, living in ``directory``."""

    name = "elasticsearch"

    def __init__(
        self, directory: Path, processes: ProcessTable, ports: Mapping[str, int], password: str,
        *, writer_password: str, tls: pki.Pki, also_on: str | None = None,
    ) -> None:
        self.directory = directory
        self.tls = tls
        self.http_hosts = ["127.0.0.1", *([also_on] if also_on else [])]
        self.processes = processes
        self.http_port = ports["elasticsearch"]
        self.transport_port = ports["elasticsearch_transport"]
        self.password = password
        self.writer_password = writer_password

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        """Starts the server unless it runs; does not wait (see ``wait_ready``)."""
        if self.processes.running(self.name):
            return
        config = self.directory / "config"
        if not (config / "elasticsearch.keystore").is_file():
            self._configure(config)
        self._write_settings(config)
        self._copy_certificate(config)
        self._add_writer(config)
        self._temporary_directory().mkdir(exist_ok=True)
        _give_to_service_user(self._temporary_directory())
        say(f"starting Elasticsearch on {', '.join(self.http_hosts)} port {self.http_port}")
        self.processes.start(
            self.name,
            [*_as_service_user(), str(cache.elasticsearch_home() / "bin" / "elasticsearch")],
            env=self._env(config),
        )

    def wait_ready(self) -> None:
        # The Maven distribution lacks the module serving ``GET /``; cluster health answers.
        credentials = base64.b64encode(f"elastic:{self.password}".encode()).decode()
        headers = {"Authorization": f"Basic {credentials}"}
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        wait_until(lambda: http_ok(f"{self.url}/_cluster/health", context, headers),
                   "Elasticsearch", self.processes, self.name)

    def _configure(self, config: Path) -> None:
        """Makes this stack's config directory and keystore, owned by the service user."""
        shutil.rmtree(config, ignore_errors=True)
        shutil.copytree(cache.elasticsearch_home() / "config", config)
        for sub in ("data", "logs"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        _give_to_service_user(self.directory)
        keystore = str(cache.elasticsearch_home() / "bin" / "elasticsearch-keystore")
        env = self._env(config)
        run([*_as_service_user(), keystore, "create"], env=env)
        run([*_as_service_user(), keystore, "add", "-x", "bootstrap.password"],
            env=env, stdin=self.password)

    def _write_settings(self, config: Path) -> None:
        """The distribution's elasticsearch.yml followed by this stack's settings."""
        settings = {
            "cluster.name": "kubeledger-local",
            "node.name": "local",
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.host": json.dumps(self.http_hosts),  # a JSON list is a YAML flow list
            "http.port": str(self.http_port),
            "transport.port": str(self.transport_port),
            "path.data": str(self.directory / "data"),
            "path.logs": str(self.directory / "logs"),
            "xpack.security.enabled": "true",
            # HTTPS only, as in production: clients verify the server with the stack's CA.
            # The paths are relative to the config directory, the only place it may read.
            "xpack.security.http.ssl.enabled": "true",
            "xpack.security.http.ssl.certificate": f"{TLS_DIRECTORY}/http.crt",
            "xpack.security.http.ssl.key": f"{TLS_DIRECTORY}/http.key",
            "xpack.security.transport.ssl.enabled": "false",
            # Shared CI disks fill up; the watermark must not block test indices.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.destructive_requires_name": "false",
        }
        defaults = (cache.elasticsearch_home() / "config" / "elasticsearch.yml").read_text()
        lines = [f"{key}: {value}\n" for key, value in settings.items()]
        (config / "elasticsearch.yml").write_text(
            defaults + "\n# written by kubeledger's local stack\n" + "".join(lines))

    def _copy_certificate(self, config: Path) -> None:
        """The HTTPS certificate and key, copied at every start (the stack may remake them)."""
        target = config / TLS_DIRECTORY
        target.mkdir(exist_ok=True)
        name = pki.ELASTICSEARCH_CERTIFICATE
        shutil.copyfile(self.tls.path(f"{name}.crt"), target / "http.crt")
        key = target / "http.key"
        key.touch(mode=0o600)
        shutil.copyfile(self.tls.path(f"{name}.key"), key)

    def _add_writer(self, config: Path) -> None:
        """The operator's write-once user and role, in the file realm (read at start)."""
        (config / "roles.yml").write_text(WRITER_ROLES_YML)
        users = config / "users"
        if not (users.is_file() and any(line.startswith(f"{WRITER_USER}:")
                                         for line in users.read_text().splitlines())):
            tool = str(cache.elasticsearch_home() / "bin" / "elasticsearch-users")
            run([*_as_service_user(), tool, "useradd", WRITER_USER, "--roles", WRITER_ROLE,
                 "--password", self.writer_password], env=self._env(config))
        _give_to_service_user(config)

    def _temporary_directory(self) -> Path:
        """Where its JVMs write temporary files: inside the stack, so they go with it."""
        return self.directory / "tmp"

    def _env(self, config: Path) -> dict[str, str]:
        tmp = self._temporary_directory()
        return {
            "ES_PATH_CONF": str(config),
            "ES_JAVA_HOME": _java_home(),
            "ES_JAVA_OPTS": HEAP,
            # The server's and its launcher's temporary files would otherwise pile up in /tmp.
            "ES_TMPDIR": str(tmp),
            "CLI_JAVA_OPTS": f"-Djava.io.tmpdir={tmp} -XX:-UsePerfData",
        }


def directory_for(stack_directory: Path) -> Path:
    """The directory of a stack's Elasticsearch: inside the stack when the service user
    can enter every directory on the way there, else one of its own outside it."""
    inside = stack_directory / "elasticsearch"
    if not _running_as_root() or _enterable_by_others(stack_directory):
        return inside
    digest = hashlib.sha256(str(stack_directory.resolve()).encode()).hexdigest()[:12]
    return UNREACHABLE_STACKS_HOME / digest


def remove_directory_of(stack_directory: Path) -> None:
    """Removes a stack's Elasticsearch data kept outside the stack (see ``directory_for``)."""
    outside = directory_for(stack_directory)
    if not outside.is_relative_to(stack_directory):
        shutil.rmtree(outside, ignore_errors=True)


def _enterable_by_others(directory: Path) -> bool:
    return all(path.stat().st_mode & stat.S_IXOTH
               for path in [directory.resolve(), *directory.resolve().parents] if path.exists())


def _java_home() -> str:
    """The JDK of the ``java`` on PATH (Elasticsearch 8 runs on Java 17 or newer)."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("Elasticsearch needs Java 17+: install openjdk-17-jre-headless")
    return str(Path(java).resolve().parent.parent)


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_service_user() -> list[str]:
    """The argv prefix that drops root for the service user (nothing when not root)."""
    if not _running_as_root():
        return []
    _ensure_service_user()
    user = pwd.getpwnam(SERVICE_USER)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]


def _ensure_service_user() -> None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        say(f"creating system user {SERVICE_USER} (Elasticsearch refuses to run as root)")
        run(["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER])


def _give_to_service_user(directory: Path) -> None:
    if not _running_as_root():
        return
    _ensure_service_user()
    user = pwd.getpwnam(SERVICE_USER)
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
