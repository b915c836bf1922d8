"""The URL a mirror index fetches from (``mirror_url``), checked where index configs
are validated (model/indexes.py) and where dumps are read (dump/format.py)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from devpi_twisted.model.errors import InvalidInput

MAX_URL = 4096
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")  # an ASCII (IDNA-encoded) host name


def check_mirror_url(value: Any) -> str:
    """``value`` if it is a URL a mirror can fetch from: http or https, a host name
    or IP address, a port in 1-65535 if any, no whitespace or control characters; else
    InvalidInput (the first reason devpi gives, then ours with the reason)."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidInput("'mirror_url' option must be a URL.")
    reason = _url_problem(value)
    if reason is not None:
        raise InvalidInput(f"'mirror_url' option must be a URL: {reason}.")
    return value


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a non-numeric or out of range port, a broken [IPv6] host
        return "invalid host or port"  # not more: the parts might be of a password
    if port == 0:
        return "port 0 is not a port to connect to"
    host = parts.hostname or ""
    if not host:
        return "it names no host"
    if ":" in host or host.replace(".", "").isdigit():
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return "invalid IP address"
        return None
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        encoded = ""
    return None if _HOST.fullmatch(encoded) else "invalid host name"
