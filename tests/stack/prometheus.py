"""A real Prometheus that scrapes pods of the stack's cluster, for tests of what they expose.

A test that checks the operator's metrics should see them the way a user's Prometheus
does: found through the Kubernetes API, scraped at the pod's IP, queried with PromQL. So
this is a real Prometheus 3, built by ``install`` (``prometheus_build``: Debian's package
has no Kubernetes discovery), not a parser of the text format. Like users' Prometheus 3 it
refuses a target without a valid Content-Type (no ``fallback_scrape_protocol``), so a test
catches that too. Unlike the stack's servers it is not part of ``Stack.up``: the test that
needs one starts it (``with Prometheus(endpoints, namespace) as prometheus: ...``) and
stops it by its PID, so ``down`` and ``purge`` need not know about it. What it writes
lives in the stack directory: config and a fresh TSDB in ``<name>/``, its PID and log in
the stack's ``run/`` and ``logs/``; ``purge`` removes them with the rest.

Discovery is ``kubernetes_sd_configs`` with role ``endpointslice`` against the stack's
apiserver, limited to one namespace, as the stack's admin: its client certificate named in
``tls_config`` (``kubeconfig_file`` works too, but would follow whatever context the
kubeconfig's current one is). Relabeling
keeps the endpoints of Service ports named ``port_name`` (``metrics`` by default) and
labels each series with its ``namespace``, ``service`` and ``pod``. EndpointSlices rather
than Endpoints: the v1 Endpoints API is deprecated since Kubernetes 1.33, and the
apiserver answers every list and watch of it with a warning. The host reaches pod IPs
through the node's veth (see ``network``), so Prometheus on 127.0.0.1 scrapes them
directly. Scrape and evaluation intervals are short, so a test waits seconds, not minutes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stack import cluster, install
from stack.local_server import LocalServer
from stack.shell import say

SCRAPE_INTERVAL_SECONDS = 2
TARGETS_TIMEOUT_SECONDS = 60.0


class Prometheus(LocalServer):
    """One Prometheus scraping ``metrics_path`` on the ``port_name`` ports of Services in
    ``namespace``."""

    title = "Prometheus"

    def __init__(
        self, endpoints: cluster.Endpoints, namespace: str, *, port_name: str = "metrics",
        metrics_path: str = "/metrics", name: str = "prometheus",
        static_target: str | None = None, rule_files: Sequence[Path] = (),
        alertmanager_url: str | None = None,
    ) -> None:
        # ``static_target`` (``host:port``) replaces discovery: a process on the host (the
        # integration tests' operator) has no EndpointSlice. ``rule_files`` are plain
        # Prometheus rule files, evaluated at the short interval; firing alerts go to
        # ``alertmanager_url``.
        self.static_target = static_target
        self.rule_files = tuple(rule_files)
        self.alertmanager_url = alertmanager_url
        self.endpoints = endpoints
        self.namespace = namespace
        self.port_name = port_name
        self.metrics_path = metrics_path
        super().__init__(endpoints, name)

    def start(self) -> None:
        """Writes the config, starts Prometheus with an empty TSDB and waits until it is ready.

        A process of the same name left by an earlier run of this stack is stopped first.
        """
        if self.port is not None and self.processes.running(self.name):
            return
        config, data = self._prepare("prometheus.yml", self.config())
        say(f"starting Prometheus on {self.url}, scraping Service ports {self.port_name!r} "
            f"in namespace {self.namespace}")
        self._launch([
            str(install.prometheus_build().binary("prometheus")), f"--config.file={config}",
            f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{self.port}",
        ])

    def config(self) -> dict[str, Any]:
        """prometheus.yml: discovery through the apiserver, relabeling as the module says."""
        stack_pki = self.endpoints.pki
        interval = f"{SCRAPE_INTERVAL_SECONDS}s"
        meta = "__meta_kubernetes_"
        if self.static_target is not None:
            return {**self._global(interval), "scrape_configs": [{
                "job_name": self.name, "metrics_path": self.metrics_path,
                "static_configs": [{"targets": [self.static_target]}]}]}
        return {
            **self._global(interval),
            "scrape_configs": [{
                "job_name": self.name,
                "metrics_path": self.metrics_path,
                "kubernetes_sd_configs": [{
                    "role": "endpointslice",
                    "api_server": self.endpoints.apiserver_url,
                    "tls_config": {
                        "ca_file": str(stack_pki.ca_cert),
                        "cert_file": str(stack_pki.path("admin.crt")),
                        "key_file": str(stack_pki.path("admin.key")),
                    },
                    "namespaces": {"names": [self.namespace]},
                }],
                "relabel_configs": [
                    {"action": "keep", "source_labels": [f"{meta}endpointslice_port_name"],
                     "regex": self.port_name},
                    *({"source_labels": [f"{meta}{source}"], "target_label": target}
                      for source, target in (("namespace", "namespace"),
                                             ("service_name", "service"),
                                             ("pod_name", "pod"))),
                ],
            }],
        }

    def _global(self, interval: str) -> dict[str, Any]:
        # The default scrape timeout (10 s) must not exceed the interval.
        return {"global": {"scrape_interval": interval, "scrape_timeout": interval,
                           "evaluation_interval": interval}, **self._alerting()}

    def _alerting(self) -> dict[str, Any]:
        """Rule files and the Alertmanager, when given."""
        found: dict[str, Any] = {}
        if self.rule_files:
            found["rule_files"] = [str(path) for path in self.rule_files]
        if self.alertmanager_url is not None:
            host = self.alertmanager_url.removeprefix("http://")
            found["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        return found

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of its rules, pending and firing (``labels``, ``state``, ...)."""
        return list(self._get("alerts")["alerts"])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query (``data.result``: one dict per series)."""
        data = self._get("query", query=expr)
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active targets: ``labels``, ``health`` (up, down, unknown), ``lastError``, ..."""
        return list(self._get("targets", state="active")["activeTargets"])

    def wait_for_targets(
        self, count: int = 1, timeout: float = TARGETS_TIMEOUT_SECONDS,
    ) -> list[dict[str, Any]]:
        """Waits until at least ``count`` targets are up; raises with each one's last error."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            if sum(target["health"] == "up" for target in targets) >= count:
                return targets
            if time.monotonic() > deadline:
                found = "; ".join(f"{t['scrapeUrl']} {t['health']}: {t['lastError'] or '-'}"
                                  for t in targets) or "none discovered"
                raise RuntimeError(f"{self.name}: fewer than {count} targets up after "
                                   f"{timeout:.0f} s; targets: {found}")
            time.sleep(0.5)

    def _get(self, endpoint: str, **parameters: str) -> Any:
        """``data`` of an HTTP API answer; an error answer raises with Prometheus's message."""
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(parameters)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
                body = response.read()
        except urllib.error.HTTPError as error:  # a bad query: 400 with an error answer
            body = error.read()
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"error": body.decode(errors="replace")}
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus {endpoint} {parameters}: "
                               f"{answer.get('errorType', 'error')}: {answer.get('error')}")
        return answer["data"]
