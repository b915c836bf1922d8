"""Credentials from ``X-Devpi-Auth`` (preferred) or ``Authorization: Basic``."""

from __future__ import annotations

import base64
import binascii

from twisted.web.iweb import IRequest


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


def credentials(request: IRequest) -> tuple[str, str] | None:
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
    return None
