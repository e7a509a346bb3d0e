"""``--web.config.file``: TLS, basic auth and response headers in the Prometheus exporter-toolkit format.

The same YAML that Prometheus, node_exporter and every toolkit-based exporter read::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file's directory
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (default), VerifyClientCertIfGiven
      client_ca_file: clients-ca.crt
      min_version: TLS12             # TLS10, TLS11, TLS12 (default), TLS13; max_version likewise
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

As in the toolkit, the file is read again for every new connection (and request), so certificates
rotate and users change without a restart; whether TLS is on is decided at start-up. Unchanged
files are not parsed again. A file that became unusable is logged and its connections refused,
while the last start-up check guarantees it was usable once.

Checking bcrypt hashes needs the ``bcrypt`` package, only when ``basic_auth_users`` is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .files import FileProblem, parse_yaml, read_small_file

log = logging.getLogger("seekrflow_exporter.webconfig")

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# The toolkit's other two ask for a certificate without verifying it; the ssl module cannot.
UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
# The headers the toolkit lets a web config set.
ALLOWED_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                   "X-XSS-Protection", "Content-Security-Policy")
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_ERROR_LOG_INTERVAL = 60.0


class WebConfigError(ValueError):
    """One line: the key path in the file and the reason."""


@dataclass(frozen=True)
class TlsSettings:
    cert_file: str
    key_file: str
    client_auth: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    tls: TlsSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def parse_web_config(raw: Any, directory: str) -> WebConfig:
    """Validate the decoded YAML; relative file names are taken from ``directory``."""
    root = _mapping(raw, "", {"tls_server_config", "http_server_config", "basic_auth_users"})
    return WebConfig(tls=_tls(root.get("tls_server_config"), directory),
                     users=_users(root.get("basic_auth_users")),
                     headers=_headers(root.get("http_server_config")))


def _tls(raw: Any, directory: str) -> TlsSettings | None:
    if raw is None:
        return None
    section = _mapping(raw, "tls_server_config", _TLS_KEYS | {"cipher_suites", "curve_preferences",
                                                              "prefer_server_cipher_suites", "client_allowed_sans",
                                                              "cert", "key"})
    for key in ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans",
                "cert", "key"):
        if key in section:
            raise WebConfigError(f"tls_server_config.{key}: not supported by this exporter")
    cert_file, key_file = _string(section, "cert_file"), _string(section, "key_file")
    if not cert_file or not key_file:
        raise WebConfigError("tls_server_config: cert_file and key_file are both required")
    client_auth = _string(section, "client_auth_type") or "NoClientCert"
    if client_auth in UNSUPPORTED_CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config.client_auth_type: {client_auth} is not supported "
                             f"(use {', '.join(CLIENT_AUTH)})")
    if client_auth not in CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config.client_auth_type: must be one of {', '.join(CLIENT_AUTH)}, "
                             f"got {client_auth[:40]!r}")
    client_ca = _string(section, "client_ca_file")
    if client_auth != "NoClientCert" and not client_ca:
        raise WebConfigError(f"tls_server_config.client_ca_file: required with client_auth_type {client_auth}")
    if client_ca and client_auth == "NoClientCert":
        raise WebConfigError("tls_server_config.client_auth_type: client_ca_file is set but no client "
                             "certificate is asked for")
    versions = {}
    for key in ("min_version", "max_version"):
        version = _string(section, key)
        if version is not None and version not in TLS_VERSIONS:
            raise WebConfigError(f"tls_server_config.{key}: must be one of {', '.join(TLS_VERSIONS)}, "
                                 f"got {version[:40]!r}")
        versions[key] = version
    return TlsSettings(cert_file=os.path.join(directory, cert_file), key_file=os.path.join(directory, key_file),
                       client_auth=client_auth,
                       client_ca_file=os.path.join(directory, client_ca) if client_ca else None,
                       min_version=versions["min_version"] or "TLS12", max_version=versions["max_version"])


def _users(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    users = _mapping(raw, "basic_auth_users", None)
    for user, hashed in users.items():
        if not isinstance(user, str) or not user or ":" in user:
            raise WebConfigError("basic_auth_users: user names must be non-empty strings without ':'")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
            raise WebConfigError(f"basic_auth_users.{user[:40]}: must be a bcrypt hash ($2y$...)")
    if users:
        _bcrypt()  # fail at start-up, not at the first request
    return dict(users)


def _headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    section = _mapping(raw, "http_server_config", {"headers", "http2"})
    http2 = section.get("http2")
    if http2 is not None and not isinstance(http2, bool):
        raise WebConfigError("http_server_config.http2: must be true or false")
    headers = _mapping(section.get("headers"), "http_server_config.headers", None)
    for name, value in headers.items():
        if name not in ALLOWED_HEADERS:
            raise WebConfigError(f"http_server_config.headers: {str(name)[:40]!r} cannot be set "
                                 f"(allowed: {', '.join(ALLOWED_HEADERS)})")
        if not isinstance(value, str) or not value.isprintable():
            raise WebConfigError(f"http_server_config.headers.{name}: must be a printable string")
    return dict(headers)


def _mapping(raw: Any, path: str, allowed: set[str] | None) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise WebConfigError(f"{path or 'the file'}: must be a mapping")
    for key in raw:
        if allowed is not None and key not in allowed:
            full = f"{path}.{key}" if path else str(key)
            raise WebConfigError(f"{full[:80]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return raw


def _string(section: dict, key: str) -> str | None:
    value = section.get(key)
    if value is not None and not isinstance(value, str):
        raise WebConfigError(f"tls_server_config.{key}: must be a string")
    return value or None


def _bcrypt():
    try:
        import bcrypt  # noqa: PLC0415 - needed only when basic_auth_users is used
    except ImportError:
        raise WebConfigError("basic_auth_users: checking bcrypt hashes needs the bcrypt package "
                             "(pip install 'seekrflow-exporter[basic-auth]')") from None
    return bcrypt


def build_tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """An SSLContext for the settings, or WebConfigError naming what is wrong with the files."""
    for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file), ("client_ca_file", tls.client_ca_file)):
        if path is not None:
            try:
                read_small_file(path)  # regular, small, readable: load_cert_chain would block on a FIFO
            except FileProblem as err:
                raise WebConfigError(f"tls_server_config.{key}: {err}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    if tls.max_version:
        context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (ssl.SSLError, OSError) as err:
        raise WebConfigError("tls_server_config: cannot use cert_file and key_file: "
                             + _ssl_reason(err, "not a PEM certificate and its private key")) from None
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as err:
            raise WebConfigError("tls_server_config.client_ca_file: "
                                 + _ssl_reason(err, "not a PEM CA certificate")) from None
    context.verify_mode = CLIENT_AUTH[tls.client_auth]
    return context


def _ssl_reason(err: Exception, otherwise: str) -> str:
    """OpenSSL's reason code (KEY_VALUES_MISMATCH...) when it gives one, else ``otherwise``."""
    return getattr(err, "reason", None) or otherwise


class WebConfigSource:
    """The web configuration as the file says now: read per connection, parsed only when changed."""

    def __init__(self, path: str, monotonic: Callable[[], float] = time.monotonic):
        self._path = path
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._seen: tuple[bytes, ...] | None = None
        self._config: WebConfig | None = None
        self._context: ssl.SSLContext | None = None
        self._auth_cache: dict[bytes, bool] = {}
        self._last_error_log: float | None = None
        self._config, self._context = self._load()  # start-up: errors propagate, one line

    @property
    def tls_enabled(self) -> bool:
        return self._config is not None and self._config.tls is not None

    def config(self) -> WebConfig | None:
        """The current configuration; None (and a log line) when the file is unusable now."""
        try:
            return self._load()[0]
        except WebConfigError as err:
            self._log_error(err)
            return None

    def tls_context(self) -> ssl.SSLContext | None:
        """For each new TLS connection; None refuses it (the reason is logged)."""
        try:
            config, context = self._load()
        except WebConfigError as err:
            self._log_error(err)
            return None
        if context is None:
            self._log_error(WebConfigError("tls_server_config: removed while serving TLS; restart to serve HTTP"))
        return context

    def check_password(self, users: Mapping[str, str], user: str, password: str) -> bool:
        hashed = users.get(user)
        key = hashlib.sha256(b"\0".join(s.encode("utf-8", "surrogateescape")
                                        for s in (user, password, hashed or ""))).digest()
        with self._lock:
            known = self._auth_cache.get(key)
        if known is not None:
            return known
        # An unknown user costs a bcrypt round too, so timing does not tell which users exist.
        ok = _bcrypt().checkpw(password.encode("utf-8", "surrogateescape"), (hashed or _DUMMY_HASH).encode())
        ok = ok and hashed is not None
        with self._lock:
            if len(self._auth_cache) >= 256:
                self._auth_cache.clear()
            self._auth_cache[key] = ok
        return ok

    def _load(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        try:
            text = read_small_file(self._path, what="web config file")
        except FileProblem as err:
            raise WebConfigError(str(err)) from None
        with self._lock:
            config, context, seen = self._config, self._context, self._seen
        if config is not None and seen is not None and seen[0] == text and self._same_tls_files(config, seen):
            return config, context
        try:
            raw = parse_yaml(_decode(text, self._path), self._path)
        except FileProblem as err:
            raise WebConfigError(str(err)) from None
        config = parse_web_config(raw, os.path.dirname(os.path.abspath(self._path)))
        context = None if config.tls is None else build_tls_context(config.tls)
        with self._lock:
            self._config, self._context, self._seen = config, context, (text, *self._tls_bytes(config))
        return config, context

    def _same_tls_files(self, config: WebConfig, seen: tuple[bytes, ...]) -> bool:
        try:
            return seen[1:] == self._tls_bytes(config)
        except WebConfigError:
            return False

    @staticmethod
    def _tls_bytes(config: WebConfig) -> tuple[bytes, ...]:
        if config.tls is None:
            return ()
        files = [config.tls.cert_file, config.tls.key_file] + ([config.tls.client_ca_file] if config.tls.client_ca_file else [])
        try:
            return tuple(read_small_file(path) for path in files)
        except FileProblem as err:
            raise WebConfigError(f"tls_server_config: {err}") from None

    def _log_error(self, err: WebConfigError) -> None:
        now = self._monotonic()
        if self._last_error_log is None or now - self._last_error_log >= _ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error("web configuration unusable, refusing connections",
                      extra={"fields": {"file": self._path, "err": str(err)}})


# A valid bcrypt hash of a random password, checked against when the user is unknown.
_DUMMY_HASH = "$2b$10$U9yEUAfaiwmTGt1pnsPgXewgs3dAklJApHiOWZXrOSAvxYMoPzMjG"


def protect(app: Callable, source: WebConfigSource) -> Callable:
    """The WSGI app behind the file's basic auth, with its headers on every answer."""

    def guarded(environ, start_response):
        config = source.config()
        if config is None:
            return _answer(start_response, "503 Service Unavailable", "Web configuration unusable\n", [])
        extra = list(config.headers.items())
        if config.users:
            user, password = _basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
            if user is None or not source.check_password(config.users, user, password):
                # What the toolkit answers, to the byte of the body.
                return _answer(start_response, "401 Unauthorized", "Unauthorized\n",
                               extra + [("WWW-Authenticate", "Basic"), ("X-Content-Type-Options", "nosniff")])

        def start_with_headers(status, headers, exc_info=None):
            return start_response(status, list(headers) + extra, exc_info)

        return app(environ, start_with_headers)

    return guarded


def _answer(start_response, status: str, text: str, headers: list[tuple[str, str]]):
    body = text.encode()
    unique = {name.lower(): (name, value) for name, value in headers}
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
                   + list(unique.values()))
    return [body]


def _basic_credentials(header: str) -> tuple[str | None, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, ""
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, ""
    return (user, password) if sep else (None, "")


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem(f"{path} is not UTF-8 text") from None
