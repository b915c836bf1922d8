"""Use cases of webhooks: create, list and delete the hooks of an index (``user/index``)
or of the server (scope ``""``), list a hook's deliveries and replay one. Rules are
model/hooks.py's; the outbox is written by the writes themselves (``hooks.event``)."""

from __future__ import annotations

import builtins
from typing import Any

from devpi_twisted.model import hooks
from devpi_twisted.model.acl import Identity
from devpi_twisted.model.errors import InvalidInput, NotFound
from devpi_twisted.storage.hooktypes import SERVER, Delivery, Hook, HookStorage
from devpi_twisted.storage.interface import Storage

MAX_LISTED = 1000


def shown_delivery(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "hook": d.hook, "serial": d.serial, "event": d.event,
            "status": d.status, "tries": d.tries, "created": d.created,
            "next_attempt": d.next_at if d.status == "pending" else None,
            "first_attempt": d.first_at, "last_attempt": d.last_at, "last_error": d.last_error}


class HookOps:
    """Hooks' management (index look-ups and hooks from one storage)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._hooks: HookStorage = storage

    async def _scope(self, identity: Identity, user: str | None, index: str | None) -> str:
        scope = SERVER if user is None or index is None else f"{user}/{index}"
        hooks.check_manage(identity, scope)
        if scope != SERVER and await self._storage.get_index(user or "", index or "") is None:
            raise NotFound(f"no index {scope}")
        return scope

    async def _hook(self, identity: Identity, user: str | None, index: str | None,
                    hook_id: str) -> Hook:
        scope = await self._scope(identity, user, index)
        found = await self._hooks.get_hook(int(hook_id)) if hook_id.isdigit() \
            and len(hook_id) < 19 else None
        if found is None or found.scope != scope:
            raise NotFound(f"no hook {hook_id[:20]} on {scope or 'the server'}")
        return found

    async def create(self, identity: Identity, user: str | None, index: str | None,
                     body: Any) -> dict[str, Any]:
        url, secret, events = hooks.parse_hook(body)
        scope = await self._scope(identity, user, index)
        if len(await self._hooks.list_hooks(scope)) >= hooks.MAX_HOOKS:
            raise InvalidInput(f"{scope or 'the server'} has {hooks.MAX_HOOKS} hooks already")
        hook = await self._hooks.create_hook(scope, url, secret, events, identity.username or "")
        return hooks.shown(hook)

    async def list(self, identity: Identity, user: str | None, index: str | None
                   ) -> list[dict[str, Any]]:
        scope = await self._scope(identity, user, index)
        return [hooks.shown(h) for h in await self._hooks.list_hooks(scope)]

    async def delete(self, identity: Identity, user: str | None, index: str | None,
                     hook_id: str) -> None:
        hook = await self._hook(identity, user, index, hook_id)
        await self._hooks.delete_hook(hook.id)

    async def deliveries(self, identity: Identity, user: str | None, index: str | None,
                         hook_id: str, limit: int = 100) -> builtins.list[dict[str, Any]]:
        hook = await self._hook(identity, user, index, hook_id)
        return [shown_delivery(d) for d in
                await self._hooks.list_deliveries(hook.id, min(max(limit, 1), MAX_LISTED))]

    async def replay(self, identity: Identity, user: str | None, index: str | None,
                     hook_id: str, delivery_id: str) -> None:
        hook = await self._hook(identity, user, index, hook_id)
        if not (delivery_id.isdigit() and len(delivery_id) < 19
                and await self._hooks.replay_delivery(hook.id, int(delivery_id))):
            raise NotFound(f"no delivery {delivery_id[:20]} of hook {hook.id}")
