"""Credentials from ``X-Devpi-Auth`` (preferred), ``Authorization: Basic`` or
``Authorization: Bearer`` (an API token: user name ""), and the client address failed
logins are counted for. What the secret is (password, login or API token) is decided
in ServerOps.authenticate; an API token may also come as the user name with an empty
password, or as the password of ``__token__``."""

from __future__ import annotations

import base64
import binascii
import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address

from devpi_twisted.web.deps import HttpRequest

MAX_BEARER = 8192  # an API token with derived caveats stays far below


def _decode_pair(encoded: bytes) -> tuple[str, str] | None:
    try:
        raw = base64.b64decode(encoded.strip(), validate=False)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, sep, secret = text.partition(":")
    if not sep or not user:
        return None
    return user, secret


def credentials(request: HttpRequest) -> tuple[str, str] | None:
    """(username, secret) the request carries, or None. If ``X-Devpi-Auth`` is present
    it alone counts, even when it cannot be decoded (spec/api.md 1.6)."""
    devpi_auth = request.getHeader(b"X-Devpi-Auth")
    if devpi_auth is not None:
        return _decode_pair(devpi_auth)
    authorization = request.getHeader(b"Authorization")
    if authorization:
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() == b"basic":
            return _decode_pair(value)
        if scheme.lower() == b"bearer":
            token = value.strip()
            if token and len(token) <= MAX_BEARER and token.isascii():
                return "", token.decode("ascii")
    return None


def client_address(request: HttpRequest) -> str:
    """The address of the client, for throttling failed logins.

    ``X-Real-IP`` counts only when the connection comes from a proxy we trust: loopback
    or a Unix socket, where nginx (gen-config's site sets the header) talks to us.
    From anywhere else the header is ignored, so a client cannot pick its own address
    to escape the throttle. A header that is not one IP address is ignored too.
    """
    peer = request.getClientAddress()
    if isinstance(peer, (IPv4Address, IPv6Address)):
        try:
            trusted = ipaddress.ip_address(peer.host.split("%")[0]).is_loopback
        except ValueError:
            trusted = False
        host = peer.host
    else:  # a Unix socket: only local processes (nginx) can connect
        trusted, host = True, "unix"
    if trusted:
        real_ip = request.getHeader(b"X-Real-IP")
        if real_ip:
            try:
                return str(ipaddress.ip_address(real_ip.decode("ascii").strip()))
            except (UnicodeDecodeError, ValueError):
                pass
    return host
