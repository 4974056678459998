"""Logging for the operator process: one stderr handler, JSON lines or readable text.

``configure`` is called once at start-up, before kopf runs (``watching``). It replaces
every handler on the root logger with one that writes to stderr, so each log line of the
process (ours, kopf's, the libraries') has the same shape:

- JSON, for log collectors: one object per line with ``time`` (RFC 3339, UTC,
  milliseconds), ``level``, ``logger``, ``message``; ``record`` and ``subject`` when the
  call passed them with ``extra=`` (or kopf's object reference, as ``subject``); any
  other ``extra=`` value under its own key; ``error`` with the traceback of an exception.
- text, for people at a terminal: ``2026-12-02 07:31:05,123 INFO kubeledger.x: message
  [record=... subject=...]``, UTC as well, so both formats agree on the time.

kopf: ``kopf.operator()`` installs no handler of its own; only kopf's command line calls
``kopf.configure``, which does two things: it puts its own stream handler on the root
logger and sets the root level (DEBUG when verbose, which also lets every library speak),
and it cuts ``asyncio`` off (no propagation, a NullHandler) unless in debug mode. Here the
root handler is ours, the DEBUG level is given to ``kubeledger`` and ``kopf`` only, and
``asyncio`` keeps propagating at WARNING: "Task exception was never retrieved" is an
error worth seeing. What a previous ``kopf.configure`` did is undone. kopf's loggers
propagate to the root by default; kopf only adds its Event poster to ``kopf.objects``,
which stays (``watching`` disables posting in kopf's settings).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("auto", "json", "text")

# Libraries that speak too much at INFO: aiohttp logs every request to the webhook and
# audit receivers, elastic_transport every request to Elasticsearch.
QUIET_LOGGERS = ("aiohttp.access", "asyncio", "urllib3", "kubernetes", "elasticsearch",
                 "elastic_transport")

# What every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# kopf's object loggers add these: the reference becomes ``subject``, the others are
# kopf's own plumbing (its settings object and whether to post the line as an Event).
_KOPF_REFERENCE = "k8s_ref"
_KOPF_ATTRIBUTES = frozenset({_KOPF_REFERENCE, "k8s_skip", "settings"})
# The extras a reader looks for first, in this order.
_FIRST_EXTRAS = ("record", "subject")


def configure(log_format: str, *, verbose: bool, stream: TextIO | None = None) -> None:
    """Sends the whole process's logging to ``stream`` (stderr) in ``log_format``.

    ``verbose`` lowers ``kubeledger`` and ``kopf`` to DEBUG; everything else logs from
    INFO, kopf's per-object lines from WARNING unless verbose, and the chatty libraries
    (``QUIET_LOGGERS``) from WARNING, verbose or not.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    stream = sys.stderr if stream is None else stream
    if log_format == "auto":
        log_format = "text" if _is_terminal(stream) else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())

    root = logging.getLogger()
    # Replaces, not adds: also drops the handler of an earlier kopf.configure().
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("kubeledger", "kopf"):
        _set(name, logging.DEBUG if verbose else logging.INFO)
    # kopf logs a line per handled event ("Handler ... succeeded"): a burst of changes
    # would be a burst of lines. Its handler failures are errors, and still shown.
    _set("kopf.objects", logging.DEBUG if verbose else logging.WARNING)
    for name in QUIET_LOGGERS:
        _set(name, logging.WARNING)
    # Python's warnings would otherwise go to stderr raw and break the JSON lines.
    logging.captureWarnings(True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never fails on a value that JSON cannot hold."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)  # an extra cannot replace the four above
        error = _exception_text(self, record)
        if error:
            entry["error"] = error
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _dumps(entry)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE [key=value ...]``, then the traceback if any."""

    def __init__(self) -> None:
        super().__init__()
        # UTC like the JSON lines and the cluster's own timestamps. Set on the instance:
        # on the class, the function would become a method.
        self.converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {_message(record)}"
        extras = _extras(record)
        if extras:
            line += " [" + " ".join(f"{key}={_quoted(_text(value))}"
                                    for key, value in extras.items()) + "]"
        error = _exception_text(self, record)
        if error:
            line += "\n" + error
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _set(name: str, level: int) -> None:
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = True  # to our root handler, whoever turned it off


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _rfc3339(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string must not lose the line
        return f"{_text(record.msg)} (arguments that do not fit it: {_text(record.args)})"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    found = {key: value for key, value in vars(record).items()
             if key not in _RECORD_ATTRIBUTES and key not in _KOPF_ATTRIBUTES
             and not key.startswith("_")}
    reference = getattr(record, _KOPF_REFERENCE, None)
    if "subject" not in found and isinstance(reference, Mapping):
        subject = _kopf_subject(reference)
        if subject:
            found["subject"] = subject
    first = {key: found.pop(key) for key in _FIRST_EXTRAS if key in found}
    return first | found


def _kopf_subject(reference: Mapping[str, Any]) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (kopf's ``k8s_ref``)."""
    namespace, name = reference.get("namespace"), reference.get("name")
    if not name:
        return ""
    return f"{namespace}/{name}" if namespace else str(name)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    # Cached on the record as the standard Formatter does, for the next handler.
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


def _dumps(entry: dict[str, Any]) -> str:
    try:
        return json.dumps(entry, default=_text, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # a cycle, a NaN, a key JSON cannot have
        flat = {key: value if isinstance(value, str) else _text(value)
                for key, value in entry.items()}
        return json.dumps(flat, ensure_ascii=False)


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not lose the line
        return f"<unprintable {type(value).__name__}>"


def _quoted(text: str) -> str:
    """Quotes a value only where it could not be told apart from the next one."""
    if text and not any(char.isspace() or char in '"[]=' for char in text):
        return text
    return json.dumps(text, ensure_ascii=False)
