"""The Elasticsearch sink: index setup at start-up, and idempotent batched delivery.

``prepare`` installs the ILM policy and the index template (``template``) before the
first delivery; the shipper calls it first and reports its failures as a setup problem.
Documents (``ecs``) are created (never overwritten) under the record's name as ``_id``
in the index chosen from the record's own time, so delivering a batch twice is harmless:
the second time each document answers 409, which means "already delivered". Checkpoints
of the chain (``anchors``) are created the same way, signed when a key is set. Every
failure surfaces as ``SinkUnavailableError`` with one sentence a person can act on; the
shipper retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    AuthenticationException,
    AuthorizationException,
    ConflictError,
)
from elasticsearch.helpers import async_streaming_bulk

from kubeledger.config import ElasticsearchSettings
from kubeledger.core.checkpoints import Checkpoint
from kubeledger.core.model import RecordSpec
from kubeledger.sinks.elasticsearch import anchors, certificates, ecs, template

logger = logging.getLogger(__name__)

CONFLICT = 409  # the document exists: delivered before
REQUEST_TIMEOUT_SECONDS = 10.0


class SinkUnavailableError(RuntimeError):
    """Delivery failed; nothing was lost (the records stay in the cluster) and it is retried."""


def client_for(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    """A client for ``settings``' cluster and credentials, without retries of its own: the
    shipper retries a failed request with backoff for as long as it takes (a 429 per
    document is retried by the bulk helper, see ``deliver``)."""
    credentials: dict[str, Any] = {}
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        credentials["basic_auth"] = (settings.username, password)
    if settings.api_key is not None:
        credentials["api_key"] = settings.api_key.get_secret_value()
    if settings.ca_certs is not None:
        credentials["ca_certs"] = str(settings.ca_certs)
    return AsyncElasticsearch(settings.urls, verify_certs=settings.verify_certs,
                              request_timeout=REQUEST_TIMEOUT_SECONDS, max_retries=0,
                              retry_on_timeout=False, **credentials)


class ElasticsearchSink:
    """Ships records to Elasticsearch as ECS documents."""

    name = "elasticsearch"

    def __init__(self, settings: ElasticsearchSettings, cluster_name: str) -> None:
        self._settings = settings
        self._cluster_name = cluster_name
        self._client = client_for(settings)
        self._checkpoint_key = settings.checkpoint_key()

    @property
    def where(self) -> str:
        return ", ".join(self._settings.urls)

    async def close(self) -> None:
        await self._client.close()

    async def deliver(self, records: Sequence[tuple[str, RecordSpec]]) -> None:
        """Creates one document per record; raises SinkUnavailableError unless all landed."""
        async with self._translated_errors():
            actions = [self._action(name, spec) for name, spec in records]
            failures: list[str] = []
            # Documents refused with 429 (a busy cluster) are sent again, up to three
            # times, by the helper itself; anything else fails the batch for the shipper.
            async for ok, item in async_streaming_bulk(
                self._client, actions, raise_on_error=False, raise_on_exception=True,
                max_retries=3, initial_backoff=1, chunk_size=len(actions) or 1,
            ):
                result = item.get("create", {})
                if not ok and result.get("status") != CONFLICT:
                    failures.append(f"{result.get('_id')}: {result.get('status')} "
                                    f"{result.get('error', {}).get('reason', '')}")
            if failures:
                raise SinkUnavailableError(
                    f"Elasticsearch refused {len(failures)} documents, e.g. {failures[0]}")

    async def anchor(self, sequence: int, digest: str, record: str) -> None:
        """Creates the checkpoint document of ``sequence``; one there already stands."""
        checkpoint = Checkpoint(self._cluster_name, sequence, digest, record, datetime.now(UTC))
        if self._checkpoint_key is not None:
            checkpoint = checkpoint.signed(self._checkpoint_key)
        async with self._translated_errors():
            with contextlib.suppress(ConflictError):
                await self._client.create(
                    index=anchors.index_for(self._settings.index_prefix, checkpoint),
                    id=anchors.document_id(checkpoint), document=anchors.to_document(checkpoint))

    async def prepare(self) -> None:
        """Installs the ILM policy (when the cluster has ILM) and the index template."""
        async with self._translated_errors():
            await self._install()

    async def _install(self) -> None:
        prefix = self._settings.index_prefix
        policy = None
        if self._settings.retention_days is not None and await self._has_ilm():
            policy = template.ILM_POLICY_NAME
            try:
                await self._client.ilm.put_lifecycle(
                    name=policy,
                    policy=template.ilm_policy_body(self._settings.retention_days)["policy"])
            except AuthorizationException:
                # Write-once credentials. ILM runs a policy's delete phase with the rights
                # of whoever put the policy last: an administrator must install it.
                logger.warning(
                    "may not manage the ILM policy %s (403): the index template names it, "
                    "and documents are kept until an administrator installs it (README: "
                    "Write-once credentials)", policy)
        body = template.index_template(prefix, ilm_policy=policy)
        await self._client.indices.put_index_template(name=template.TEMPLATE_NAME, **body)
        logger.info("Elasticsearch at %s ready: index template for %s-*%s", self.where, prefix,
                    f", ILM policy {policy}" if policy else " (no ILM on this cluster)")

    async def _has_ilm(self) -> bool:
        try:
            await self._client.ilm.get_status()
        except ApiError as error:
            if error.meta.status in (400, 404, 405):
                return False  # no ILM module here (e.g. a minimal distribution)
            raise
        return True

    def _action(self, name: str, spec: RecordSpec) -> dict[str, Any]:
        return {
            "_op_type": "create",
            "_index": ecs.index_name(self._settings.index_prefix, spec.observedAt),
            "_id": name,
            "_source": ecs.to_document(name, spec),
        }

    def _translated_errors(self) -> _ErrorTranslation:
        return _ErrorTranslation(self.where, self._settings)


class _ErrorTranslation:
    """Turns client exceptions into one actionable sentence."""

    def __init__(self, where: str, settings: ElasticsearchSettings) -> None:
        self._where = where
        self._username = settings.username
        self._ca_certs = settings.ca_certs

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        _trace: object) -> bool:
        if error is None or isinstance(error, SinkUnavailableError):
            return False
        if isinstance(error, AuthenticationException):
            who = f"user {self._username!r}" if self._username else "the configured API key"
            raise SinkUnavailableError(
                f"Elasticsearch at {self._where} rejected the credentials of {who} (401); "
                "check ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD or ELASTICSEARCH_API_KEY"
            ) from None
        refused = certificates.refusal_reason(error)
        if refused is not None:
            raise SinkUnavailableError(
                certificates.untrusted(self._where, self._ca_certs, refused)) from None
        if isinstance(error, TransportConnectionError):
            raise SinkUnavailableError(
                f"cannot reach Elasticsearch at {self._where}: {error.message}") from None
        if isinstance(error, ApiError | TransportError):
            raise SinkUnavailableError(f"Elasticsearch at {self._where} failed: {error}") from None
        return False
