"""Webhooks in our dump format: ``devpi_twisted_hooks`` in dataindex.json, a list of
``{"index": "user/index" or null (server-wide), "url", "secret", "events", "creator"}``
(the secrets included: a dump holds password hashes too and is kept as private).
devpi-server ignores the key; a dump without it imports no hooks."""

from __future__ import annotations

from typing import Any

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.hooks import parse_hook
from devpi_twisted.storage.hooktypes import SERVER, HookStorage

HOOKS_KEY = "devpi_twisted_hooks"
Dumped = tuple[str, str, str, tuple[str, ...], str]  # scope, url, secret, events, creator


async def export_hooks(storage: HookStorage) -> list[dict[str, Any]]:
    return [{"index": h.scope or None, "url": h.url, "secret": h.secret, "events": list(h.events),
             "creator": h.creator} for h in await storage.list_hooks(None)]


def read_hooks(found: Any, indexes: set[str], problems: list[str]) -> tuple[Dumped, ...]:
    """The hooks of a dump, each checked as the API checks a new one; its index must be
    imported too."""
    if found is None:
        return ()
    if not isinstance(found, list):
        problems.append(f"{HOOKS_KEY} is not a list")
        return ()
    hooks: list[Dumped] = []
    for n, item in enumerate(found):
        if not isinstance(item, dict):
            problems.append(f"{HOOKS_KEY}[{n}] is not a JSON object")
            continue
        scope = item.get("index") or SERVER
        if scope != SERVER and scope not in indexes:
            problems.append(f"{HOOKS_KEY}[{n}]: index {str(scope)[:100]!r} is not imported")
            continue
        try:
            url, secret, events = parse_hook({k: item.get(k) for k in ("url", "secret", "events")})
        except InvalidInput as e:
            problems.append(f"{HOOKS_KEY}[{n}]: {e.message}")
            continue
        hooks.append((scope, url, secret, events, str(item.get("creator") or "")[:200]))
    return tuple(hooks)
