"""Webhooks' HTTP API (HookApp), for an index (``/USER/INDEX/+hooks...``, its owner or
root) and for the server (``/+hooks...``, root):

- ``POST .../+hooks`` JSON ``{"url", "secret", "events"}``: 201 with the hook (the
  secret shown by its first two characters only, as in every answer);
- ``GET .../+hooks``: the hooks; ``DELETE .../+hooks/ID``;
- ``GET .../+hooks/ID/deliveries`` (``?limit=N``): the newest deliveries first, with
  status, tries, last error and next attempt;
- ``POST .../+hooks/ID/deliveries/DID/replay``: queue a delivery again.

Decisions are model/hook_ops.py's; ``wake`` tells this process's delivery service (a
no-op where none runs: workers, replicas) that something is due.
"""

from __future__ import annotations

from collections.abc import Callable

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.hook_ops import HookOps
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, json_view, query_params

MAX_QUERY = 100  # bytes of query string (limit)


class HookApp:
    """Needs the hooks' operations, the request helpers (identity) and ``wake``."""

    def __init__(self, hooks: HookOps, helpers: RequestHelpers,
                 wake: Callable[[], None] = lambda: None) -> None:
        self._hooks = hooks
        self._helpers = helpers
        self._wake = wake

    async def _create(self, request: HttpRequest, user: str | None, index: str | None) -> bytes:
        body = render.read_json(request)
        identity = await self._helpers.identity(request)
        hook = await self._hooks.create(identity, user, index, body)
        return render.result(request, "hook", hook, status=201)

    async def _list(self, request: HttpRequest, user: str | None, index: str | None) -> bytes:
        json_view(request)
        identity = await self._helpers.identity(request)
        request.setHeader(b"Cache-Control", b"no-store")
        return render.result(request, "hooks", await self._hooks.list(identity, user, index))

    async def _delete(self, request: HttpRequest, user: str | None, index: str | None,
                      hook_id: str) -> bytes:
        identity = await self._helpers.identity(request)
        await self._hooks.delete(identity, user, index, hook_id)
        return render.message(request, f"hook {hook_id} deleted")

    async def _deliveries(self, request: HttpRequest, user: str | None, index: str | None,
                          hook_id: str) -> bytes:
        json_view(request)
        identity = await self._helpers.identity(request)
        params = query_params(request, MAX_QUERY, "deliveries")
        limit = params.get("limit", ["100"])[-1]
        if not (limit.isdigit() and len(limit) < 6):
            raise InvalidInput("'limit' must be a number")
        found = await self._hooks.deliveries(identity, user, index, hook_id, int(limit))
        request.setHeader(b"Cache-Control", b"no-store")
        return render.result(request, "deliveries", found)

    async def _replay(self, request: HttpRequest, user: str | None, index: str | None,
                      hook_id: str, delivery_id: str) -> bytes:
        identity = await self._helpers.identity(request)
        await self._hooks.replay(identity, user, index, hook_id, delivery_id)
        self._wake()
        return render.message(request, f"delivery {delivery_id} queued again")

    # -- the routes (web/routes.py) --------------------------------------------------

    async def create_server(self, request: HttpRequest) -> bytes:
        return await self._create(request, None, None)

    async def list_server(self, request: HttpRequest) -> bytes:
        return await self._list(request, None, None)

    async def delete_server(self, request: HttpRequest, hook_id: str) -> bytes:
        return await self._delete(request, None, None, hook_id)

    async def deliveries_server(self, request: HttpRequest, hook_id: str) -> bytes:
        return await self._deliveries(request, None, None, hook_id)

    async def replay_server(self, request: HttpRequest, hook_id: str, delivery_id: str) -> bytes:
        return await self._replay(request, None, None, hook_id, delivery_id)

    async def create_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        return await self._create(request, user, index)

    async def list_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        return await self._list(request, user, index)

    async def delete_index(self, request: HttpRequest, user: str, index: str, hook_id: str) -> bytes:
        return await self._delete(request, user, index, hook_id)

    async def deliveries_index(self, request: HttpRequest, user: str, index: str,
                               hook_id: str) -> bytes:
        return await self._deliveries(request, user, index, hook_id)

    async def replay_index(self, request: HttpRequest, user: str, index: str, hook_id: str,
                           delivery_id: str) -> bytes:
        return await self._replay(request, user, index, hook_id, delivery_id)
