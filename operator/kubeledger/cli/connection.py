"""Reaching the cluster the way kubectl does: ``--kubeconfig``, ``--context``, ``-n``.

Every command that reads the cluster takes these flags, with kubectl's meaning and
defaults, so ``kubectl ledger ...`` behaves like any other kubectl command. What goes
wrong on the way (no kubeconfig, an unreachable apiserver, a refusal, no CRD) becomes
one ``CommandError`` line with the ``NO_ACCESS`` status.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from kubeledger import config
from kubeledger.cli.exits import NO_ACCESS, CommandError
from kubeledger.kube import errors
from kubeledger.kube.api import Kubernetes
from kubeledger.kube.client import KubeClient, kubeconfig_client

T = TypeVar("T")


def add_flags(parser: argparse.ArgumentParser, *, namespace_help: str) -> None:
    parser.add_argument("--kubeconfig", metavar="PATH",
                        help="the kubeconfig file (default: KUBECONFIG, else ~/.kube/config; "
                             "in a pod without either, its service account)")
    parser.add_argument("--context", help="the kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", help=namespace_help)


@dataclass(frozen=True)
class Connection:
    api: Kubernetes
    # The context's namespace, as kubectl would use it when -n is not given.
    context_namespace: str


def connect(args: argparse.Namespace) -> Connection:
    try:
        api_client, namespace = kubeconfig_client(args.kubeconfig, args.context)
    except errors.NotConfigured as error:
        raise CommandError(str(error), NO_ACCESS) from None
    return Connection(KubeClient(api_client, timeout_seconds=config.DEFAULT_API_TIMEOUT_SECONDS),
                      namespace)


async def reading(what: str, read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, with its failure said in one line: ``cannot read <what>: <why>``."""
    try:
        return await read()
    except errors.NotFound as error:
        raise CommandError(f"cannot read {what}: the AuditRecord CRD is not installed here "
                           f"({error.summary})", NO_ACCESS) from None
    except errors.Refused as error:
        raise CommandError(f"not allowed to read {what}: {error}", NO_ACCESS) from None
    except errors.KubeError as error:
        raise CommandError(f"cannot read {what}: {error}", NO_ACCESS) from None


def context_namespace(args: argparse.Namespace) -> str:
    """The kubeconfig context's namespace, without reaching the cluster; else ``default``."""
    try:
        return connect(args).context_namespace
    except CommandError:
        return "default"
