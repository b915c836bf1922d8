"""devpi-tokens' HTTP API (TokenApp): ``POST /USER/+token-create``, ``GET /USER/+tokens``,
``DELETE /USER/+tokens/ID``. Decisions are model/token_ops.py's; a token is shown
once, in the answer to its creation, and never logged."""

from __future__ import annotations

from devpi_twisted.model.ops import ServerOps, Written
from devpi_twisted.web import render
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, json_view, written
from devpi_twisted.web.site import json_bytes


class TokenApp:
    """Needs the server's operations (their ``api_tokens``) and the request helpers."""

    def __init__(self, ops: ServerOps, helpers: RequestHelpers) -> None:
        self._tokens = ops.api_tokens
        self._helpers = helpers

    async def create(self, request: HttpRequest, user: str) -> bytes:
        body = render.read_json(request) if json_bytes(request).strip() else None
        identity = await self._helpers.identity(request)
        serial, token = await self._tokens.create(identity, user, body)
        written(request, Written(serial))
        request.setHeader(b"Cache-Control", b"no-store")
        return render.result(request, "token-info", {"token": token})

    async def list(self, request: HttpRequest, user: str) -> bytes:
        json_view(request)
        identity = await self._helpers.identity(request)
        return render.result(request, "tokens-info", await self._tokens.list(identity, user))

    async def delete(self, request: HttpRequest, user: str, token_id: str) -> bytes:
        identity = await self._helpers.identity(request)
        serial = await self._tokens.delete(identity, user, token_id)
        written(request, Written(serial))
        return render.message(request, f"token {token_id} deleted")
