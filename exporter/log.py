"""logfmt logging, the format Prometheus and its exporters write: ts=... level=... msg=... key=value."""

from __future__ import annotations

import logging
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
                logging.ERROR: "error", logging.CRITICAL: "error"}


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        pairs = [("ts", f"{stamp}.{int(record.msecs):03d}Z"),
                 ("level", _LEVEL_NAMES.get(record.levelno, "info")),
                 ("msg", record.getMessage())]
        pairs += list(getattr(record, "fields", {}).items())
        if record.exc_info:
            # Even an unexpected error stays on one line; the type and message are what matter.
            err = record.exc_info[1]
            pairs.append(("err", f"{type(err).__name__}: {err}"))
        return " ".join(f"{key}={_value(val)}" for key, val in pairs if val is not None)


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


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("seekrflow_exporter")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    root.propagate = False
