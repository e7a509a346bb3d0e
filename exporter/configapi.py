"""The ``api`` section: the base URL, the endpoint generation, the API key and the team ID.

The key comes from ``api.api_key_file`` or SEEKR_API_KEY only, and no message here ever repeats it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping
from urllib.parse import urlsplit

from .configchecks import _has_space_or_control, _optional_str, _positive_int, _section, _show, _timeout
from .configtypes import DEFAULT_BASE_URL, ENDPOINTS, ApiConfig, ConfigError
from .files import FileProblem, read_text
from .model import DEFAULT_TERMINAL_RECORD_STATUSES, MAX_STATUS_LENGTH

_API_VERSION_SUFFIX = re.compile(r"/v\d+$")


def _api(raw: Any, environ: Mapping[str, str]) -> ApiConfig:
    keys = {"base_url", "endpoint", "api_key_file", "team_id", "timeout", "max_concurrency", "terminal_record_statuses"}
    section = _section(raw, "api", keys)
    base_url = _optional_str(section, "api.base_url") or environ.get("SEEKR_BASE_URL") or DEFAULT_BASE_URL
    where = "api.base_url" if "base_url" in section else "SEEKR_BASE_URL"
    _check_url(base_url, where)
    base_url = strip_api_version(base_url)
    endpoint = _optional_str(section, "api.endpoint") or "alignment"
    if endpoint not in ENDPOINTS:
        raise ConfigError("api.endpoint", f"must be one of {', '.join(ENDPOINTS)}, got {_show(endpoint)}")
    return ApiConfig(
        base_url=base_url.rstrip("/"),
        endpoint=endpoint,
        api_key=_api_key(section, environ),
        team_id=_team_id(section, environ),
        request_timeout=_timeout(section, "api.timeout", ApiConfig.request_timeout),
        max_concurrency=_positive_int(section, "api.max_concurrency", ApiConfig.max_concurrency, 256),
        terminal_record_statuses=_statuses(section, "api.terminal_record_statuses", DEFAULT_TERMINAL_RECORD_STATUSES),
    )


def _check_url(url: str, where: str) -> None:
    """Whatever would make every request fail is refused here, with the reason."""
    if _has_space_or_control(url):
        raise ConfigError(where, f"must not contain spaces or control characters, got {_show(url)}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        reason = "port out of range 1-65535" if "port" in str(err).lower() else "not a URL"
        raise ConfigError(where, f"{reason}, got {_show(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(where, f"must be an http(s) URL like {DEFAULT_BASE_URL}, got {_show(url)}")
    if port == 0:
        raise ConfigError(where, f"port out of range 1-65535, got {_show(url)}")


def _statuses(section: dict, path: str, default: frozenset[str]) -> frozenset[str]:
    value = section.get(path.rsplit(".", 1)[-1])
    if value is None:
        return default
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of record statuses, got {_show(value)}")
    for index, status in enumerate(value):
        # Compared with the status as the exporter keeps it: cut to MAX_STATUS_LENGTH characters.
        if not isinstance(status, str) or not status or len(status) > MAX_STATUS_LENGTH:
            raise ConfigError(f"{path}[{index}]", f"must be a status string of 1 to {MAX_STATUS_LENGTH} characters, "
                                                  f"got {_show(status)}")
    return frozenset(value)


def strip_api_version(url: str) -> str:
    """``https://flow.seekr.com/v1/`` -> ``https://flow.seekr.com``: the paths carry the version.

    The official SDK strips a trailing ``/vN`` the same way; older SDKs defaulted to the ``/v1``
    spelling, so SEEKR_BASE_URL may still hold it.
    """
    return _API_VERSION_SUFFIX.sub("", url.rstrip("/")).rstrip("/")


def _api_key(section: dict, environ: Mapping[str, str]) -> str:
    key_file = _optional_str(section, "api.api_key_file")
    if key_file:
        try:
            key = read_text(key_file).strip()
        except FileProblem as err:
            raise ConfigError("api.api_key_file", str(err)) from None
        if not key:
            raise ConfigError("api.api_key_file", f"{key_file} is empty")
        return _redactable(_header_safe(key, "api.api_key_file", "the API key"), "api.api_key_file")
    key = environ.get("SEEKR_API_KEY", "").strip()
    if not key:
        raise ConfigError("api.api_key_file", "no API key: set api.api_key_file or the SEEKR_API_KEY environment variable")
    return _redactable(_header_safe(key, "SEEKR_API_KEY", "the API key"), "SEEKR_API_KEY")


# The log redacts the key by finding it as is in a line (log.py), which a key fails when it is
# short enough to be an ordinary word, or when a traceback would show it only through repr(), which
# escapes a backslash, may escape a quote and escapes characters beyond ASCII (in bytes, all of them).
MIN_API_KEY_LENGTH = 8
_REPR_ESCAPED = frozenset("\\'")


def _redactable(key: str, path: str) -> str:
    """The key, if the log can always recognise it to redact it; the message never shows it."""
    if len(key) < MIN_API_KEY_LENGTH:
        raise ConfigError(path, f"the API key is shorter than {MIN_API_KEY_LENGTH} characters, "
                                "so it could not be told apart in the log to keep it out")
    if any(c in _REPR_ESCAPED or c > "~" for c in key):
        raise ConfigError(path, "the API key holds a backslash, a single quote or characters beyond ASCII, "
                                "which an error could show escaped, out of reach of redaction")
    return key


def _header_safe(value: str, path: str, what: str) -> str:
    """The value travels as an HTTP header; say so at startup rather than fail every scrape.

    The message never repeats the value: it may be the API key.
    """
    if not all(" " <= c <= "~" or "\xa0" <= c <= "\xff" for c in value):
        raise ConfigError(path, f"{what} holds characters that cannot be sent in an HTTP header")
    return value


def _team_id(section: dict, environ: Mapping[str, str]) -> str | None:
    team_id = _optional_str(section, "api.team_id")
    where = "api.team_id"
    if not team_id:
        team_id, where = environ.get("SEEKR_TEAM_ID", "").strip(), "SEEKR_TEAM_ID"
    if not team_id:
        return None
    _header_safe(team_id, where, "the team ID")
    if _has_space_or_control(team_id):
        # Sent as is in x-team-id: a stray space would make every request ask for another team.
        raise ConfigError(where, "the team ID must not contain spaces or control characters")
    return team_id
