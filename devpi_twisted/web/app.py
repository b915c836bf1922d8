"""The management API: discovery (``/``, ``+api``), login, ``+authcheck``, users and
indexes (ManagementApp).

Handlers parse, call one domain operation and render; errors are answered by
web/errors.py, URLs are in web/routes.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.model.acl import shown_config
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.web import render
from devpi_twisted.web.auth import client_address
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, flag, json_view, written as written_at
from devpi_twisted.web.routes import MATCHER
from devpi_twisted.web.site import ServerInfo, mount_path

# what devpi-server 6.20 advertises in /+api (devpi-client asks for them before using them)
FEATURES = ["push-no-docs", "push-only-docs", "push-register-project", "server-keyvalue-parsing"]
# the devpi-server release whose HTTP API this server speaks (shown in /+status versioninfo,
# which `devpi --version` lists)
DEVPI_API_VERSION = "6.20.3"


def _shown_index(config: Any) -> Any:
    """An index config as shown: a password in ``mirror_url`` masked."""
    if isinstance(config, dict) and isinstance(config.get("mirror_url"), str):
        return {**config, "mirror_url": masked_url(config["mirror_url"])}
    return config


def _shown_user(user: Any) -> Any:
    if isinstance(user, dict) and isinstance(user.get("indexes"), dict):
        return {**user, "indexes": {n: _shown_index(c) for n, c in user["indexes"].items()}}
    return user


class ManagementApp:
    """``/``, ``+api``, ``+login``, ``+authcheck``, users and indexes. Needs the server's
    operations, its info, the request helpers, the index's own project names and the
    simple project list (installers asking for an index URL get it)."""

    def __init__(self, ops: ServerOps, info: ServerInfo, helpers: RequestHelpers,
                 project_names: Callable[[str, str], Awaitable[list[str]]],
                 listing: Callable[[HttpRequest, str, str], Awaitable[bytes | None]]) -> None:
        self._ops = ops
        self._info = info
        self._helpers = helpers
        self._project_names = project_names
        self._listing = listing

    # -- discovery and login -----------------------------------------------------

    async def list_users(self, request: HttpRequest) -> bytes:
        json_view(request)
        users = await self._ops.list_users(await self._helpers.identity(request))
        return render.result(request, "list:userconfig",
                             {name: _shown_user(user) for name, user in users.items()})

    async def _api(self, request: HttpRequest, user: str | None, index: str | None) -> bytes:
        json_view(request)
        base = self._helpers.base(request)
        identity = await self._helpers.identity(request)
        if identity.authenticated:
            authstatus = ["ok", identity.username, sorted(identity.groups)]
        else:
            authstatus = ["noauth", "", []]
        api: dict[str, Any] = {"login": f"{base}/+login", "authstatus": authstatus,
                               "features": sorted(FEATURES)}
        if user is not None and index is not None:
            config = await self._ops.get_index(user, index)
            api["index"] = f"{base}/{user}/{index}"
            api["simpleindex"] = f"{base}/{user}/{index}/+simple/"
            if not config.is_mirror:
                api["pypisubmit"] = f"{base}/{user}/{index}/"
        return render.result(request, "apiconfig", api)

    async def api_root(self, request: HttpRequest) -> bytes:
        return await self._api(request, None, None)

    async def api_user(self, request: HttpRequest, user: str) -> bytes:
        return await self._api(request, None, None)

    async def api_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        return await self._api(request, user, index)

    async def login(self, request: HttpRequest) -> bytes:
        token = await self._ops.login(render.read_json(request), client_address(request))
        return render.result(request, "proxyauth", token, "login successful")

    def authcheck(self, request: HttpRequest) -> bytes:
        """For nginx ``auth_request``: 200 if the URL in X-Original-Uri is readable,
        403 if it names no route. Core rules grant read access to everything."""
        target = request.getHeader(b"X-Original-Uri") or request.uri
        path = unquote(target.partition(b"?")[0].decode("utf-8", "replace"))
        prefix = mount_path(request, self._info.outside_url)
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        if MATCHER.match("GET", path) is None:
            request.setResponseCode(403)
        return b""

    # -- users ------------------------------------------------------------------

    async def get_user(self, request: HttpRequest, user: str) -> bytes:
        json_view(request)
        identity = await self._helpers.identity(request)
        return render.result(request, "userconfig",
                             _shown_user(await self._ops.get_user(user, identity)))

    async def create_user(self, request: HttpRequest, user: str) -> bytes:
        body = render.read_json(request)
        written = await self._ops.create_user(await self._helpers.identity(request), user, body)
        written_at(request, written)
        return render.result(request, "userconfig", written.result, status=201)

    async def modify_user(self, request: HttpRequest, user: str) -> bytes:
        body = render.read_json(request)
        written = await self._ops.modify_user(await self._helpers.identity(request), user, body)
        written_at(request, written)
        if written.result is not None:
            return render.result(request, "userpassword", written.result, written.message)
        return render.message(request, written.message or "user updated")

    async def delete_user(self, request: HttpRequest, user: str) -> bytes:
        written = await self._ops.delete_user(await self._helpers.identity(request), user)
        written_at(request, written)
        return render.message(request, written.message or "")

    # -- indexes ----------------------------------------------------------------

    async def get_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        config = (await self._helpers.readable(request, user, index)).to_json()
        identity = await self._helpers.identity(request)
        config = shown_config(config, await self._ops.hidden_indexes(identity))
        listing = await self._listing(request, user, index)
        if listing is not None:
            return listing
        json_view(request)
        if not flag(request, b"no_projects"):
            config["projects"] = await self._project_names(user, index)
        return render.result(request, "indexconfig", _shown_index(config))

    async def create_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        body = render.read_json(request)
        identity = await self._helpers.identity(request)
        written = await self._ops.create_index(identity, user, index, body)
        written_at(request, written)
        return render.result(request, "indexconfig", _shown_index(written.result))

    async def modify_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        body = render.read_json(request)
        identity = await self._helpers.identity(request)
        written = await self._ops.modify_index(identity, user, index, body,
                                               flag(request, b"error_on_noop"))
        written_at(request, written)
        return render.result(request, "indexconfig", _shown_index(written.result))

    async def delete_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        written = await self._ops.delete_index(await self._helpers.identity(request), user, index)
        written_at(request, written)
        return render.message(request, written.message or "", status=201)
