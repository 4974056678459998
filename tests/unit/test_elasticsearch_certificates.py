"""A server certificate the configured CA bundle does not verify is one clear line, in
the operator's sink and in the command line alike; the right bundle connects.

The server is a real HTTPS server on 127.0.0.1 with a self-signed certificate made by
openssl here, so the refusal is the TLS stack's own, not a made-up exception.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeledger import cli
from kubeledger.cli import exits
from kubeledger.config import ElasticsearchSettings
from kubeledger.sinks.elasticsearch import sink as elasticsearch_sink
from unit.certificates import self_signed


class AnswersLikeElasticsearch(http.server.BaseHTTPRequestHandler):
    """Answers every request with 200 and the header the client insists on."""

    def _answer(self) -> None:
        body = json.dumps({"acknowledged": True}).encode()
        self.send_response(200)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # The names http.server dispatches to.
    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def log_message(self, *_: object) -> None:
        pass  # quiet: pytest shows what matters


@pytest.fixture(scope="module")
def https_elasticsearch(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """An HTTPS server answering like Elasticsearch, in a thread of its own (the command
    line runs an event loop of its own): (its URL, its CA, another CA)."""
    directory = tmp_path_factory.mktemp("certificates")
    certificate, key = self_signed(directory, "server")
    other, _ = self_signed(directory, "other")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnswersLikeElasticsearch)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", certificate, other
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refusal(url: str, bundle: Path) -> str:
    return (f"Elasticsearch at {url} presented a certificate that the CA bundle {bundle} "
            "(ELASTICSEARCH_CA_CERTS) does not verify (self-signed certificate); set "
            "ELASTICSEARCH_CA_CERTS to the CA that signed it")


async def test_the_sink_names_the_bundle_that_refused_the_certificate(
        https_elasticsearch: tuple[str, Path, Path]) -> None:
    url, right, wrong = https_elasticsearch
    refused = elasticsearch_sink.ElasticsearchSink(
        ElasticsearchSettings(urls=[url], ca_certs=wrong), "prod")
    trusted = elasticsearch_sink.ElasticsearchSink(
        ElasticsearchSettings(urls=[url], ca_certs=right, retention_days=None), "prod")
    try:
        with pytest.raises(elasticsearch_sink.SinkUnavailableError) as raised:
            await refused.prepare()
        assert str(raised.value) == refusal(url, wrong)
        await trusted.prepare()  # the template is installed: no error
    finally:
        await refused.close()
        await trusted.close()


async def test_the_system_trust_store_is_named_when_no_bundle_is_set(
        https_elasticsearch: tuple[str, Path, Path]) -> None:
    url, _, _ = https_elasticsearch
    sink = elasticsearch_sink.ElasticsearchSink(ElasticsearchSettings(urls=[url]), "prod")
    try:
        with pytest.raises(elasticsearch_sink.SinkUnavailableError,
                           match=r"the system's trust store \(ELASTICSEARCH_CA_CERTS is not "
                                 r"set\) does not verify \(self-signed certificate\)"):
            await sink.prepare()
    finally:
        await sink.close()


def test_the_command_line_says_it_in_one_line(
        https_elasticsearch: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, _, wrong = https_elasticsearch
    monkeypatch.delenv("KUBELEDGER_CONFIG", raising=False)
    monkeypatch.setenv("ELASTICSEARCH_URL", url)
    monkeypatch.setenv("ELASTICSEARCH_CA_CERTS", str(wrong))

    assert cli.main(["verify", "--source", "elasticsearch"]) == exits.NO_ACCESS
    assert capsys.readouterr().err == f"kubeledger: {refusal(url, wrong)}\n"
