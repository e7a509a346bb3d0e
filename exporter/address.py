"""Listen addresses as the flags take them: ``host:port``, ``:port`` (all interfaces) or ``[::1]:port``."""

from __future__ import annotations


def parse_listen_address(address: str) -> tuple[str, int]:
    """(host, port); the host is empty for all interfaces. ``ValueError`` if it is no address."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must look like 127.0.0.1:9878, got {address!r}")
    return host.strip("[]"), int(port)
