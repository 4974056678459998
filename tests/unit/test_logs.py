"""The process's log lines: JSON for collectors, text for people, kopf's lines included."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, cast

import kopf
import pytest

from kubeledger import logs

TOUCHED = ("kubeledger", "kopf", "py.warnings", *logs.QUIET_LOGGERS)


@contextlib.contextmanager
def configured(log_format: str, *, verbose: bool = False,
               stream: TextIO | None = None) -> Iterator[io.StringIO]:
    """Runs ``logs.configure`` into a string; puts every logger back as it was after."""
    output = io.StringIO()
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {name: (logger.level, logger.propagate, list(logger.handlers))
             for name in TOUCHED for logger in [logging.getLogger(name)]}
    try:
        logs.configure(log_format, verbose=verbose,
                       stream=output if stream is None else stream)
        yield output
    finally:
        logging.captureWarnings(False)
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        for name, (level, propagate, handlers) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers


def json_lines(output: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_a_json_line_carries_time_level_logger_message_record_and_subject() -> None:
    with configured("json") as output:
        logging.getLogger("kubeledger.recording.ledger").info(
            "appended %s", "deployment-1234-5", extra={
                "record": "deployment-1234-5", "subject": "apps/v1 deployments demo/web"})
    [line] = json_lines(output)
    assert line == {
        "time": line["time"], "level": "info", "logger": "kubeledger.recording.ledger",
        "message": "appended deployment-1234-5", "record": "deployment-1234-5",
        "subject": "apps/v1 deployments demo/web"}
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    written = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs(datetime.now(UTC) - written) < timedelta(seconds=5)


@pytest.mark.parametrize(("level", "name"), [
    (logging.DEBUG, "debug"), (logging.INFO, "info"), (logging.WARNING, "warning"),
    (logging.ERROR, "error"), (logging.CRITICAL, "critical"),
])
def test_json_levels_are_lower_case(level: int, name: str) -> None:
    with configured("json", verbose=True) as output:
        logging.getLogger("kubeledger").log(level, "x")
    assert json_lines(output)[0]["level"] == name


def test_an_exception_is_one_line_with_the_traceback_as_error() -> None:
    with configured("json") as output:
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            logging.getLogger("kubeledger.supervision").exception("shipper failed")
    assert len(output.getvalue().splitlines()) == 1
    [line] = json_lines(output)
    assert line["level"] == "error"
    assert line["message"] == "shipper failed"
    assert line["error"].startswith("Traceback (most recent call last):")
    assert line["error"].rstrip().endswith("ZeroDivisionError: division by zero")


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


class Printable:
    def __str__(self) -> str:
        return "printable"


def test_values_json_cannot_hold_become_strings_and_the_line_is_kept() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with configured("json") as output:
        log = logging.getLogger("kubeledger")
        log.info("objects", extra={"thing": Printable(), "broken": Unprintable(),
                                   "kinds": {"a": {1}}, "count": 3})
        log.info("a cycle", extra={"cycle": cycle})
        log.info("not a number", extra={"ratio": math.nan})
        log.info("%d records", "many")  # a bad format string
    objects, with_cycle, with_nan, bad = json_lines(output)
    assert objects["thing"] == "printable"
    assert objects["broken"] == "<unprintable Unprintable>"
    assert objects["kinds"] == {"a": "{1}"}
    assert objects["count"] == 3
    assert with_cycle["message"] == "a cycle"
    assert with_cycle["cycle"].startswith("{'self': ")
    assert with_nan["ratio"] == "nan"
    assert bad["message"] == "%d records (arguments that do not fit it: ('many',))"


def test_an_extra_cannot_replace_the_fixed_fields() -> None:
    with configured("json") as output:
        logging.getLogger("kubeledger").info("real", extra={"level": "fake", "time": "t"})
    [line] = json_lines(output)
    assert line["level"] == "info"
    assert line["time"] != "t"


def kopf_logger(**metadata: str) -> kopf.LocalObjectLogger:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # as the operator runs it: no Events
    raw: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}
    body = kopf.Body(cast(kopf.RawBody, raw))
    return kopf.LocalObjectLogger(body=body, settings=settings)


def test_kopfs_object_reference_becomes_the_subject() -> None:
    with configured("json") as output:
        kopf_logger(namespace="demo", name="web", uid="u-1").warning("Handler 'x' failed.")
        kopf_logger(name="admin", uid="u-2").warning("cluster-scoped")
    namespaced, cluster_scoped = json_lines(output)
    assert namespaced == {"time": namespaced["time"], "level": "warning",
                          "logger": "kopf.objects", "message": "Handler 'x' failed.",
                          "subject": "demo/web"}
    assert cluster_scoped["subject"] == "admin"


def test_an_explicit_subject_wins_over_kopfs_reference() -> None:
    with configured("json") as output:
        kopf_logger(namespace="demo", name="web").warning(
            "x", extra={"subject": "apps/v1 deployments demo/web"})
    assert json_lines(output)[0]["subject"] == "apps/v1 deployments demo/web"


TEXT_LINE = (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO kubeledger\.recording\.ledger: "
             r"appended deployment-1 \[record=deployment-1 "
             r'subject="apps/v1 deployments demo/web"\]')


def test_text_is_one_readable_line_with_the_extras_at_the_end() -> None:
    with configured("text") as output:
        logging.getLogger("kubeledger.recording.ledger").info(
            "appended %s", "deployment-1", extra={
                "subject": "apps/v1 deployments demo/web", "record": "deployment-1"})
        logging.getLogger("kubeledger").info("plain")
    first, second = output.getvalue().splitlines()
    assert re.fullmatch(TEXT_LINE, first)
    assert second.endswith(" INFO kubeledger: plain")


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is 9 hours ahead of UTC for the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_text_time_is_utc_whatever_the_local_zone() -> None:
    with configured("text") as output:
        logging.getLogger("kubeledger").info("now")
    stamp = output.getvalue()[:23]
    written = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - written) < timedelta(seconds=5)


def test_text_puts_the_traceback_under_the_line_and_kopfs_subject_in_it() -> None:
    with configured("text") as output:
        try:
            raise ValueError("bad object")
        except ValueError:
            kopf_logger(namespace="demo", name="web").exception("Handler failed")
    lines = output.getvalue().splitlines()
    assert lines[0].endswith(" ERROR kopf.objects: Handler failed [subject=demo/web]")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad object"


def test_auto_writes_json_where_stderr_is_not_a_terminal() -> None:
    with configured("auto") as output:
        logging.getLogger("kubeledger").info("to a collector")
    assert json_lines(output)[0]["message"] == "to a collector"


def test_auto_writes_text_to_a_terminal() -> None:
    controller, terminal_fd = os.openpty()
    try:
        with open(terminal_fd, "w", closefd=False) as terminal, \
                configured("auto", stream=terminal):
            logging.getLogger("kubeledger").info("to a person")
            terminal.flush()
        written = os.read(controller, 4096).decode()
    finally:
        os.close(terminal_fd)
        os.close(controller)
    assert written.rstrip().endswith(" INFO kubeledger: to a person")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'yaml': expected one of auto, json, text"):
        logs.configure("yaml", verbose=False)


def messages(output: io.StringIO) -> list[str]:
    return [f"{line['logger']} {line['message']}" for line in json_lines(output)]


def emit_at_every_level() -> None:
    logging.getLogger("kubeledger.runtime").debug("ours")
    logging.getLogger("kopf.reactor.running").debug("kopf's")
    logging.getLogger("kopf.reactor.running").info("kopf's info")
    logging.getLogger("aiohttp.access").info("GET /validate 200")
    logging.getLogger("elastic_transport.transport").info("POST /_bulk [status:200]")
    logging.getLogger("urllib3.connectionpool").warning("retrying")
    logging.getLogger("somelibrary").debug("library detail")
    logging.getLogger("somelibrary").info("library info")


def test_quiet_by_default_and_verbose_opens_ours_and_kopfs_debug_only() -> None:
    with configured("json") as output:
        emit_at_every_level()
    assert messages(output) == ["kopf.reactor.running kopf's info",
                                "urllib3.connectionpool retrying",
                                "somelibrary library info"]
    with configured("json", verbose=True) as output:
        emit_at_every_level()
    assert messages(output) == ["kubeledger.runtime ours",
                                "kopf.reactor.running kopf's",
                                "kopf.reactor.running kopf's info",
                                "urllib3.connectionpool retrying",
                                "somelibrary library info"]


def test_a_second_configure_lowers_verbose_again() -> None:
    with configured("json", verbose=True), configured("json") as output:
        logging.getLogger("kubeledger").debug("hidden")
        logging.getLogger("kopf").debug("hidden")
    assert output.getvalue() == ""


def test_it_replaces_what_kopf_configure_installed() -> None:
    with configured("json"):
        kopf.configure(verbose=False)  # its handler on the root, asyncio cut off
        with configured("json") as output:
            [handler] = logging.getLogger().handlers
            assert isinstance(handler, logging.StreamHandler)
            assert handler.stream is output
            logging.getLogger("asyncio").warning("Task exception was never retrieved")
    assert messages(output) == ["asyncio Task exception was never retrieved"]


def test_python_warnings_become_log_lines() -> None:
    with configured("json") as output, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    [line] = json_lines(output)
    assert line["logger"] == "py.warnings"
    assert line["level"] == "warning"
    assert "DeprecationWarning: an old API" in line["message"]


def test_kopfs_line_per_handled_event_is_left_out_unless_verbose() -> None:
    with configured("json") as output:
        kopf_logger(namespace="demo", name="web").info("Handler 'x' succeeded.")
    assert json_lines(output) == []
