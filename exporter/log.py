"""Logging in the two formats Prometheus and its exporters write (``--log.format``): logfmt
(``ts=... level=... msg=... key=value``, the default) or one JSON object a line.

An unexpected error (a record with ``exc_info``) carries ``err`` (type and message) and ``trace``,
the whole traceback; in logfmt the traceback's line breaks are escaped, so a record stays one line.
Secrets the exporter holds (the API key) are registered with ``redact`` and replaced by
``<redacted>`` wherever they would appear in a line: a message, a field, an error or a traceback.
``log_uncaught_exceptions`` sends what Python would print raw on its own (an exception that ends a
thread or the process) through the same formatter, so it is scrubbed and in ``--log.format`` too.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
import types

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
FORMATS = ("logfmt", "json")
REDACTED = "<redacted>"
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}
# Shorter secrets could match ordinary words of a log line; a real API key is far longer.
_MIN_SECRET = 6


class _Secrets:
    """The secrets to keep out of the log. A reload may bring a new key: the old one stays listed
    (it may still be in flight in an error being logged)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < _MIN_SECRET:
            return
        with self._lock:
            if secret not in self._secrets:
                # Longest first: a secret that contains another is replaced whole.
                self._secrets = tuple(sorted({*self._secrets, secret}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


_SECRETS = _Secrets()


def redact(secret: str | None) -> None:
    """Never write ``secret`` to the log (from now on, in every format)."""
    _SECRETS.add(secret)


def _fields(record: logging.LogRecord) -> list[tuple[str, object]]:
    """What a record says, in order, secrets scrubbed: ts, level, msg, its fields, err, trace."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    pairs: list[tuple[str, object]] = [("ts", f"{stamp}.{int(record.msecs):03d}Z"),
                                       ("level", _LEVEL_NAMES.get(record.levelno, "info")),
                                       ("msg", record.getMessage())]
    pairs += list(getattr(record, "fields", {}).items())
    if record.exc_info and record.exc_info[1] is not None:
        err = record.exc_info[1]
        pairs.append(("err", f"{type(err).__name__}: {err}"))
        pairs.append(("trace", "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")))
    return [(key, _scrub(value)) for key, value in pairs if value is not None]


def _scrub(value: object) -> object:
    # Numbers and booleans stay themselves (JSON keeps their type); anything else is text.
    if isinstance(value, (bool, int, float)):
        return value
    return _SECRETS.scrub(str(value))


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_value(val)}" for key, val in _fields(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line, keys in logfmt's order; non-ASCII is escaped, so control and escape
    characters from the network reach the terminal only as ``\\u`` escapes."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(_fields(record)), ensure_ascii=True)


def _value(value: object) -> str:
    text = str(value)
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


class _Escapes(dict):
    """What a quoted logfmt value cannot hold raw: quotes, backslashes, and every character that is
    not printable (CR, LF, ESC and the rest): text from the network must not forge a log line or
    drive a terminal."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        # Not cached: the table would grow with every code point a client cares to send.
        if char.isprintable():
            return char
        return char.encode("unicode_escape", "backslashreplace").decode("ascii")


_ESCAPES = _Escapes({ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})

_FORMATTERS = {"logfmt": LogfmtFormatter, "json": JsonFormatter}


def setup_logging(level: str, fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FORMATTERS[fmt]())
    root = logging.getLogger("seekrflow_exporter")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False


def log_uncaught_exceptions() -> None:
    """Install ``threading.excepthook`` and ``sys.excepthook`` that log through the exporter's logger."""
    threading.excepthook = _thread_died
    sys.excepthook = _process_died


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # a thread may end itself that way; Python stays silent about it too
    thread = args.thread.name if args.thread is not None else None
    logging.getLogger("seekrflow_exporter").error("uncaught exception ended a thread", exc_info=args.exc_value,
                                                  extra={"fields": {"thread": thread}})


def _process_died(kind: type[BaseException], value: BaseException, trace: types.TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, trace)
        return
    logging.getLogger("seekrflow_exporter").error("uncaught exception", exc_info=(kind, value, trace))
