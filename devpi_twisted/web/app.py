"""The management API: discovery (``/``, ``+api``), login (JSON, and the browser's
form, session cookie and logout: web/sessions.py), ``+authcheck``, users and indexes
(ManagementApp).

Handlers parse, call one domain operation and render; errors are answered by
web/errors.py, URLs are in web/routes.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, listed_projects, read_refusal, shown_config
from devpi_twisted.model.devpi_api import FEATURES, index_view
from devpi_twisted.model.errors import (Forbidden, InvalidInput, NotFound, TooManyAttempts,
                                        Unauthenticated, Unavailable)
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.project_paging import paging_of
from devpi_twisted.model.releases import split_filename
from devpi_twisted.web import render, sessions
from devpi_twisted.web.auth import client_address
from devpi_twisted.web.deps import HttpRequest
from devpi_twisted.web.helpers import RequestHelpers, flag, json_view, written as written_at
from devpi_twisted.web.routes import MATCHER
from devpi_twisted.web.site import ServerInfo, mount_path
from devpi_twisted.web.ui.browse import WebPages

def _shown_index(config: Any, api: int) -> Any:
    """An index config as shown: a password in ``mirror_url`` masked, in the answer
    mode's spelling (model/devpi_api.py)."""
    if isinstance(config, dict) and isinstance(config.get("mirror_url"), str):
        config = {**config, "mirror_url": masked_url(config["mirror_url"])}
    return index_view(config, api) if isinstance(config, dict) else config


def _project_of(named: dict[str, str]) -> str | None:
    """The normalised project a route's variables name: ``project``, or the project of
    a release file's name (``rest`` of ``+f/...``); None if they name none."""
    if "project" in named:
        return normalize_project(named["project"])
    if "rest" in named:
        try:
            return normalize_project(split_filename(named["rest"].rsplit("/", 1)[-1])[0])
        except InvalidInput:
            return None
    return None


def _shown_user(user: Any, api: int) -> Any:
    if isinstance(user, dict) and isinstance(user.get("indexes"), dict):
        return {**user, "indexes": {n: _shown_index(c, api) for n, c in user["indexes"].items()}}
    return user


class ManagementApp:
    """``/``, ``+api``, ``+login``, ``+authcheck``, users and indexes. Needs the server's
    operations, its info, the request helpers, the index's own project names (sorted:
    model/project_paging.SortedNames) and the
    simple project list (installers asking for an index URL get it), and the web pages
    browsers get (``web``; None: JSON only)."""

    def __init__(self, ops: ServerOps, info: ServerInfo, helpers: RequestHelpers,
                 project_names: Callable[[str, str], Awaitable[list[str]]],
                 listing: Callable[[HttpRequest, str, str], Awaitable[bytes | None]],
                 web: WebPages | None = None) -> None:
        self._ops = ops
        self._info = info
        self._helpers = helpers
        self._project_names = project_names
        self._listing = listing
        self._web = web

    def _browser(self, request: HttpRequest) -> WebPages | None:
        """The web pages, for a browser (HTML asked for, JSON not, no installer)."""
        return self._web if self._web is not None and render.browser(request) else None

    # -- discovery and login -----------------------------------------------------

    async def list_users(self, request: HttpRequest) -> bytes:
        web = self._browser(request)
        if web is not None:
            return await web.root(request)
        json_view(request)
        users = await self._ops.list_users(await self._helpers.identity(request))
        return render.result(request, "list:userconfig",
                             {name: _shown_user(user, self._info.devpi_api)
                              for name, user in users.items()})

    async def _api(self, request: HttpRequest, user: str | None, index: str | None) -> bytes:
        json_view(request)
        base = self._helpers.base(request)
        identity = await self._helpers.identity(request)
        if identity.authenticated:
            authstatus = ["ok", identity.username, sorted(identity.groups)]
        else:
            authstatus = ["noauth", "", []]
        api: dict[str, Any] = {"login": f"{base}/+login", "authstatus": authstatus,
                               "features": FEATURES[self._info.devpi_api]}
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
        """JSON: a login token (devpi-client). An HTML form: the session cookie and a
        redirect to ``next`` (web/sessions.py); the same throttle of failed logins. An
        urlencoded body without a ``username`` field is no login form: a client that
        left the content type to its library gets JSON's answers (400 for non-JSON)."""
        if sessions.is_form(request) and "username" in sessions.read_form(request):
            return await self._form_login(request)
        token = await self._ops.login(render.read_json(request), client_address(request))
        return render.result(request, "proxyauth", token, "login successful")

    async def _form_login(self, request: HttpRequest) -> bytes:
        base = self._helpers.base(request)
        if not sessions.same_origin(request, base):
            raise Forbidden("cross-site login refused: Origin/Referer is not this server")
        form = sessions.read_form(request)
        next_path = sessions.local_path(form.get("next", "/"))
        user = form.get("username", "")
        body = {"user": user, "password": form.get("password", "")}
        try:
            token = await self._ops.login(body, client_address(request))
        except Unauthenticated:
            if self._web is not None:
                return self._web.login(request, next_path, "wrong user name or password", 401)
            request.setResponseCode(401)
            return self._page(request, sessions.login_page(
                base, next_path, "wrong user name or password"))
        sessions.set_session(request, user, token["password"], int(token["expiration"]),
                             base.startswith("https:"))
        request.setResponseCode(303)
        request.setHeader(b"Location", (base + next_path).encode("utf-8"))
        return b""

    def _page(self, request: HttpRequest, page: bytes) -> bytes:
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Frame-Options", b"DENY")  # no login form in others' frames
        request.setHeader(b"Content-Security-Policy", b"frame-ancestors 'none'")
        return page

    async def login_page(self, request: HttpRequest) -> bytes:
        """The HTML login form (GET ``+login?next=/path``)."""
        query = parse_qs(request.uri.partition(b"?")[2].decode("latin-1"), errors="replace")
        next_path = sessions.local_path(query.get("next", ["/"])[0])
        if self._web is not None:
            return self._web.login(request, next_path)
        return self._page(request, sessions.login_page(self._helpers.base(request), next_path))

    async def logout(self, request: HttpRequest) -> bytes:
        """Clears the session cookies; with a session cookie, only with its CSRF token."""
        base = self._helpers.base(request)
        session = sessions.session_credentials(request)
        if session is not None:
            sessions.check_csrf(request, session[1], base)
        sessions.clear_session(request, base.startswith("https:"))
        if sessions.is_form(request):
            request.setResponseCode(303)
            next_path = sessions.local_path(sessions.read_form(request).get("next", "/"))
            request.setHeader(b"Location", (base + next_path).encode("utf-8"))
            return b""
        return render.message(request, "logged out")

    async def authcheck(self, request: HttpRequest) -> bytes:
        """For nginx ``auth_request``: may the request for X-Original-Uri (else this
        request's own URI) be served to these credentials? The permission of every
        read path, model/acl.py read_refusal, on the index (and project) the URI names:
        200 yes (also for what names no index, or an index that does not exist: the
        daemon answers that itself), 401 for anonymous callers (invalid and throttled
        credentials count as none), 403 for others and for paths no route takes."""
        target = (request.getHeader(b"X-Original-Uri") or request.uri).partition(b"?")[0]
        if target[:1] != b"/":  # absolute form: http://host/path
            target = b"/" + target.split(b"://", 1)[-1].partition(b"/")[2]
        path = unquote(target.decode("utf-8", "replace"))
        prefix = mount_path(request, self._info.outside_url)
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        found = MATCHER.match("GET", path)
        if found is None:
            request.setResponseCode(403)
            return b""
        named = dict(zip(found.route.arguments, found.args))
        user, index = named.get("user"), named.get("index")
        if user is None or index is None:
            return b""
        try:
            config = await self._ops.get_index(user, index)
        except NotFound:
            return b""
        try:
            identity = await self._helpers.identity(request)
        except (TooManyAttempts, Unavailable):  # nginx takes only 2xx, 401 and 403
            identity = ANONYMOUS_IDENTITY  # credentials not accepted now: 401
        refused = read_refusal(identity, user, index, config.acl_read, _project_of(named))
        if isinstance(refused, Unauthenticated):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", f'Basic realm="{refused.realm}"'.encode())
        elif refused is not None:
            request.setResponseCode(403)
        return b""

    # -- users ------------------------------------------------------------------

    async def get_user(self, request: HttpRequest, user: str) -> bytes:
        web = self._browser(request)
        if web is not None:
            return await web.user(request, user)
        json_view(request)
        identity = await self._helpers.identity(request)
        return render.result(request, "userconfig",
                             _shown_user(await self._ops.get_user(user, identity),
                                        self._info.devpi_api))

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
        readable = await self._helpers.readable(request, user, index)
        identity = await self._helpers.identity(request)
        config = shown_config(readable.to_json(), await self._ops.hidden_indexes(identity))
        listing = await self._listing(request, user, index)
        if listing is not None:
            return listing
        web = self._browser(request)
        if web is not None:
            return await web.index(request, user, index, readable, config)
        json_view(request)
        paging = paging_of(request.args)  # refused before anything is read
        if not flag(request, b"no_projects"):
            names = listed_projects(identity, await self._project_names(user, index))
            if paging is None:
                config["projects"] = names
            else:
                config["projects"], config["total"] = paging.page(names)
        return render.result(request, "indexconfig", self._index_view(config))

    def _index_view(self, config: Any) -> Any:
        return _shown_index(config, self._info.devpi_api)

    async def create_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        body = render.read_json(request)
        identity = await self._helpers.identity(request)
        written = await self._ops.create_index(identity, user, index, body)
        written_at(request, written)
        return render.result(request, "indexconfig", self._index_view(written.result))

    async def modify_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        body = render.read_json(request)
        identity = await self._helpers.identity(request)
        written = await self._ops.modify_index(identity, user, index, body,
                                               flag(request, b"error_on_noop"))
        written_at(request, written)
        return render.result(request, "indexconfig", self._index_view(written.result))

    async def delete_index(self, request: HttpRequest, user: str, index: str) -> bytes:
        written = await self._ops.delete_index(await self._helpers.identity(request), user, index)
        written_at(request, written)
        return render.message(request, written.message or "", status=201)
