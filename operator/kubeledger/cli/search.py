"""Reaching Elasticsearch from the command line, to read the trail's full history.

Where and as whom come from the operator's own settings (``ELASTICSEARCH_URL``,
``ELASTICSEARCH_USERNAME``/``PASSWORD`` or ``API_KEY``, ``ELASTICSEARCH_CA_CERTS``, the
file of ``KUBELEDGER_CONFIG``), and ``--elasticsearch-url`` overrides the address. The
user needs only to read the indices. What goes wrong becomes one ``CommandError`` line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch, AuthenticationException

from kubeledger import config
from kubeledger.cli.exits import NO_ACCESS, NOT_FOUND, USAGE, CommandError
from kubeledger.config import ElasticsearchSettings
from kubeledger.core.checkpoints import Checkpoint
from kubeledger.sinks.elasticsearch import anchors, certificates, trail
from kubeledger.sinks.elasticsearch.sink import client_for

T = TypeVar("T")


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--elasticsearch-url", metavar="URL",
                        help="Elasticsearch (default: ELASTICSEARCH_URL; credentials from "
                             "ELASTICSEARCH_USERNAME/PASSWORD or ELASTICSEARCH_API_KEY)")
    parser.add_argument("--cluster-name", metavar="NAME",
                        help="whose records, where Elasticsearch holds several clusters' "
                             "(default: KUBELEDGER_CLUSTER_NAME, else the only one there)")


def configured(args: argparse.Namespace) -> bool:
    """Whether the command line or the settings name an Elasticsearch to read."""
    return bool(_settings_given(args).urls)


def settings(args: argparse.Namespace) -> ElasticsearchSettings:
    found = _settings_given(args)
    if not found.urls:
        raise CommandError("reading Elasticsearch needs its address: set ELASTICSEARCH_URL "
                           "or pass --elasticsearch-url", USAGE)
    return found


def _settings_given(args: argparse.Namespace) -> ElasticsearchSettings:
    try:
        found = config.load_elasticsearch()
    except config.ConfigError as error:
        raise CommandError(str(error), USAGE) from None
    if args.elasticsearch_url:
        found = found.model_copy(update={"urls": [args.elasticsearch_url]})
    return found


@asynccontextmanager
async def connected(chosen: ElasticsearchSettings) -> AsyncIterator[AsyncElasticsearch]:
    client = client_for(chosen)
    try:
        yield client
    finally:
        await client.close()


async def reading(chosen: ElasticsearchSettings, read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, with its failure said in one line."""
    where = ", ".join(chosen.urls)
    try:
        return await read()
    except AuthenticationException:
        raise CommandError(f"Elasticsearch at {where} rejected the credentials (401): check "
                           "ELASTICSEARCH_USERNAME/PASSWORD or ELASTICSEARCH_API_KEY",
                           NO_ACCESS) from None
    except (ApiError, TransportError) as error:
        refused = certificates.refusal_reason(error)
        if refused is not None:
            raise CommandError(certificates.untrusted(where, chosen.ca_certs, refused),
                               NO_ACCESS) from None
        raise CommandError(f"cannot read Elasticsearch at {where}: {error}", NO_ACCESS) from None


async def cluster_name(client: AsyncElasticsearch, chosen: ElasticsearchSettings,
                       args: argparse.Namespace, default: str | None) -> str:
    """The cluster to read: the flag's, the setting's, or the only one in the indices."""
    if args.cluster_name or default:
        return str(args.cluster_name or default)
    present = await trail.clusters(client, chosen.index_prefix)
    if len(present) == 1:
        return present[0]
    if not present:
        raise CommandError(f"no records in Elasticsearch ({chosen.index_prefix}-*)", NOT_FOUND)
    raise CommandError(f"Elasticsearch holds the records of clusters {', '.join(present)}: "
                       "choose one with --cluster-name", USAGE)


async def documents(args: argparse.Namespace, *, subject: Mapping[str, str] | None = None,
                    ) -> tuple[str, list[trail.Document]]:
    """The cluster read and its chained documents (one ``subject``'s, when given)."""
    return await _gathered(args, None, lambda client, prefix, name: trail.documents(
        client, prefix, name, subject=subject))


async def checked_specs(args: argparse.Namespace, *,
                        subject: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The records the documents carry (one ``subject``'s, when given), each as its name
    and spec; a document that fails its check is left out, and said so on stderr."""
    _, found = await documents(args, subject=subject)
    failed = [each.name for each in found if each.problem]
    if failed:
        print(f"left out {len(failed)} documents that fail their check (e.g. {failed[0]}): "
              "see kubeledger verify --source elasticsearch", file=sys.stderr)
    return [{"metadata": {"name": each.name}, "spec": each.spec}
            for each in found if each.spec is not None and not each.problem]


async def checkpoints(args: argparse.Namespace, cluster: str | None,
                      ) -> tuple[str, list[Checkpoint | str]]:
    """The cluster read (``cluster`` when known) and its checkpoints; the id of each
    document that is no checkpoint."""
    return await _gathered(args, cluster, anchors.read)


async def _gathered(args: argparse.Namespace, cluster: str | None,
                    query: Callable[[AsyncElasticsearch, str, str], AsyncIterator[T]],
                    ) -> tuple[str, list[T]]:
    """Everything ``query`` yields for the cluster to read, which is ``cluster``, else
    the one the flags, the settings or the indices name."""
    chosen = settings(args)
    async with connected(chosen) as client:
        name = await reading(chosen, lambda: cluster_name(
            client, chosen, args, cluster or os.environ.get("KUBELEDGER_CLUSTER_NAME")))

        async def read() -> list[T]:
            return [found async for found in query(client, chosen.index_prefix, name)]

        return name, await reading(chosen, read)
