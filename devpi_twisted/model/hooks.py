"""Webhooks' rules: what a hook is (validated URL, secret, events), who may manage the
hooks of an index (its owner or root) and of the server (root), the event values the
domain hands to a write (``event``), how a delivery is signed and when it is retried.

Signature (README.rst, "Webhooks"): ``X-Devpi-Timestamp`` holds the Unix time of the
attempt (whole seconds); ``X-Devpi-Signature`` is ``sha256=`` and the hex HMAC-SHA256,
keyed with the hook's secret (UTF-8), of the bytes ``TIMESTAMP.BODY`` (the timestamp as
sent, a dot, the exact request body).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from devpi_twisted.model.acl import INDEX_MODIFY, ROOT, Identity
from devpi_twisted.model.errors import Forbidden, InvalidInput, Unauthenticated
from devpi_twisted.storage.hooktypes import SERVER, Hook, HookEvent

UPLOAD, PUSH, DELETE, YANK, UNYANK, BLOCK, INDEX = (
    "upload", "push", "delete", "yank", "unyank", "block", "index")
EVENTS = (UPLOAD, PUSH, DELETE, YANK, UNYANK, BLOCK, INDEX)
MAX_URL, MAX_SECRET, MIN_SECRET, MAX_HOOKS = 2000, 200, 8, 50
FIELDS = frozenset({"url", "secret", "events"})
SIGNATURE, TIMESTAMP = "X-Devpi-Signature", "X-Devpi-Timestamp"
EVENT_HEADER, DELIVERY_HEADER = "X-Devpi-Event", "X-Devpi-Delivery"
# retries: the n-th retry waits FIRST_DELAY * 2**n (at most MAX_DELAY), times a random
# factor in [0.5, 1); a delivery not through GIVE_UP seconds after its first attempt
# (a hook's later events wait behind it meanwhile) is marked failed
FIRST_DELAY, MAX_DELAY, GIVE_UP = 2.0, 1800.0, 86400.0


def parse_hook(body: Any) -> tuple[str, str, tuple[str, ...]]:
    """(url, secret, events) of a JSON body ``{"url", "secret", "events"}``; InvalidInput
    naming the field that is wrong."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a hook is a JSON object with url, secret and events")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidInput("'url' must be an http or https URL")
    if len(url) > MAX_URL:
        raise InvalidInput(f"'url' is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises ValueError)
    except ValueError:
        raise InvalidInput("'url' is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable() \
            or " " in url:
        raise InvalidInput("'url' must be an http or https URL")
    secret = body.get("secret")
    if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET \
            or not secret.isprintable():
        raise InvalidInput(f"'secret' must be text of {MIN_SECRET} to {MAX_SECRET} characters")
    events = body.get("events")
    if not isinstance(events, list) or not events or len(events) > len(EVENTS):
        raise InvalidInput(f"'events' must be a list of some of: {', '.join(EVENTS)}")
    for name in events:
        if name not in EVENTS:
            shown = name[:50] if isinstance(name, str) else name
            raise InvalidInput(f"'events': unknown event {shown!r} (known: {', '.join(EVENTS)})")
    return url, secret, tuple(e for e in EVENTS if e in events)


def may_manage(identity: Identity, scope: str) -> bool:
    """Root manages every hook; an index's owner those of its index (``user/index``), also
    with an API token that allows ``index_modify`` there. Server-wide hooks: root only."""
    if identity.username is None:
        return False
    if scope == SERVER:
        return identity.username == ROOT and identity.scoped(INDEX_MODIFY)
    owner = scope.split("/", 1)[0]
    return identity.username in (ROOT, owner) and identity.scoped(INDEX_MODIFY, scope)


def check_manage(identity: Identity, scope: str) -> None:
    if identity.username is None:
        raise Unauthenticated("authentication required to manage hooks", challenge=True)
    if not may_manage(identity, scope):
        raise Forbidden(f"no permission to manage the hooks of {scope or 'the server'}")


def shown(hook: Hook) -> dict[str, Any]:
    """A hook as the API shows it: the secret's first two characters only."""
    return {"id": hook.id, "index": hook.scope or None, "url": hook.url,
            "secret": hook.secret[:2] + "…", "events": list(hook.events),
            "creator": hook.creator, "created": hook.created}


def event(kind: str, identity: Identity, index: str, project: str | None = None,
          version: str | None = None, filename: str | None = None,
          **details: Any) -> HookEvent:
    """The event the domain hands to the write that causes it (same transaction)."""
    return HookEvent(kind, index, identity.username, project, version, filename, details)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Devpi-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, presented: str) -> bool:
    """What a receiver checks (tests use it): the signature matches, in constant time."""
    return hmac.compare_digest(signature(secret, timestamp, body), presented)


def retry_delay(tries: int, random: Callable[[], float]) -> float:
    """Seconds before the next attempt after ``tries`` failed ones (exponential, capped,
    jittered by ``random()`` in [0, 1))."""
    base: float = min(FIRST_DELAY * 2.0 ** min(max(tries - 1, 0), 30), MAX_DELAY)
    return base * (0.5 + random() / 2)
