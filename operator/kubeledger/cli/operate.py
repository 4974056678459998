"""``kubeledger run``: the operator itself, in the cluster of KUBECONFIG or the pod's.

Bad configuration, a missing CRD and missing rights end the start-up with one line that
says what to fix; losing the leadership ends it with ``LEADERSHIP_LOST``, so that the
process is started again as a standby.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from kubeledger import config, endpoint, logs
from kubeledger.cli.exits import LEADERSHIP_LOST, OK, PROBLEMS, USAGE


def add(commands: Any) -> None:
    run_parser = commands.add_parser(
        "run", help="run the operator (watches the cluster of KUBECONFIG or the pod's "
                    "service account)", description=__doc__)
    run_parser.add_argument(
        "--liveness", metavar="URL", type=_served_at("http://HOST:PORT/healthz"),
        help="serve liveness, e.g. http://0.0.0.0:8080/healthz: 503 when the event loop "
             "stalls or a background task keeps failing")
    run_parser.add_argument(
        "--readiness", metavar="URL", type=_served_at("http://HOST:PORT/readyz"),
        help="serve readiness, e.g. http://0.0.0.0:8081/readyz: 200 once the receivers "
             "serve and the CRD is in place (the writer: also once every watch has listed "
             "its kind, so changes are recorded live)")
    run_parser.add_argument("--metrics", metavar="URL",
                            type=_served_at("http://HOST:PORT/metrics"),
                            help="serve Prometheus metrics, e.g. http://0.0.0.0:8082/metrics")
    run_parser.add_argument("--log-format", choices=logs.LOG_FORMATS, default="auto",
                            help="json (one object per line), text, or auto: text on a "
                                 "terminal, else json (default)")
    run_parser.add_argument("--verbose", action="store_true", help="debug logging")
    run_parser.set_defaults(func=run)


def _served_at(expected: str) -> Callable[[str], str]:
    """An argument type refusing, before anything starts, a URL the server cannot serve."""
    def checked(url: str) -> str:
        try:
            endpoint.parse(url, expected=expected)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return url
    return checked


def run(args: argparse.Namespace) -> int:
    # kopf comes with the handlers: the reading commands must not pay for importing it,
    # nor for the servers every replica runs.
    from kubeledger import watching  # noqa: PLC0415
    from kubeledger.replica import Endpoints  # noqa: PLC0415

    try:
        settings = config.load()
    except config.ConfigError as error:
        print(f"kubeledger: {error}", file=sys.stderr)
        return USAGE
    try:
        ended = watching.run(settings, Endpoints(args.liveness, args.readiness, args.metrics),
                             log_format=args.log_format, verbose=args.verbose)
    except Exception as error:  # kopf's start-up failure wraps the cause we raised
        cause = error.__cause__ or error
        print(f"kubeledger: cannot start: {cause}", file=sys.stderr)
        return PROBLEMS
    if ended == watching.LEADERSHIP_LOST:
        print("kubeledger: lost the leadership and stopped writing; exiting, to start "
              "again as a standby", file=sys.stderr)
        return LEADERSHIP_LOST
    return OK
