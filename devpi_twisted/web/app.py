"""Klein routes of the management API: discovery, login, status, users, indexes.

Handlers parse, call one domain operation and render; errors are mapped in one
place (``handle_domain_error``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, unquote

from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as RouteNotFound

from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity
from devpi_twisted.model.errors import DomainError, NotFound
from devpi_twisted.model.ops import ServerOps, Written
from devpi_twisted.storage.interface import StorageUnavailable
from devpi_twisted.web import render
from devpi_twisted.web.auth import client_address, credentials
from devpi_twisted.web.site import ServerInfo, mount_path, outside_url

# what devpi-server 6.20 advertises in /+api (devpi-client asks for them before using them)
FEATURES = ["push-no-docs", "push-only-docs", "push-register-project", "server-keyvalue-parsing"]
# the devpi-server release whose HTTP API this server speaks (shown in /+status versioninfo,
# which `devpi --version` lists)
DEVPI_API_VERSION = "6.20.3"


def _route(app: Klein, path: str, methods: list[str]) -> Any:
    return app.route(path, methods=methods, strict_slashes=False)


def _flag(request: IRequest, name: bytes) -> bool:
    """A query key is present, with or without a value (``?no_projects``, ``?force=``)."""
    query = request.uri.partition(b"?")[2].decode("latin-1")  # bytes would fail on non-ASCII
    return name.decode("ascii") in parse_qs(query, keep_blank_values=True, errors="replace")


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
    app = Klein()

    def __init__(self, ops: ServerOps, info: ServerInfo) -> None:
        self._ops = ops
        self._info = info

    def resource(self) -> Any:
        return self.app.resource()

    # -- helpers ----------------------------------------------------------------

    async def _identity(self, request: IRequest) -> Identity:
        cached = getattr(request, "devpi_identity", None)
        if cached is not None:
            return cached
        creds = credentials(request)
        identity = ANONYMOUS_IDENTITY if creds is None else \
            await self._ops.authenticate(*creds, client=client_address(request))
        request.devpi_identity = identity  # type: ignore[attr-defined]
        return identity

    def _base(self, request: IRequest) -> str:
        return outside_url(request, self._info.outside_url)

    @staticmethod
    def _written(request: IRequest, written: Written) -> None:
        if written.serial is not None:
            request.devpi_serial = written.serial  # type: ignore[attr-defined]

    @staticmethod
    def _json_view(request: IRequest) -> None:
        """Management GET views are JSON only; HTML asks for a web UI we do not have."""
        if not render.json_acceptable(request):
            raise NotFound("no HTML view here; ask for application/json")

    @staticmethod
    def _check_segment(*segments: str) -> None:
        if any(s.startswith("+") for s in segments):
            raise NotFound("not found")

    # -- errors -----------------------------------------------------------------

    @app.handle_errors(DomainError)
    def handle_domain_error(self, request: IRequest, failure: Failure) -> bytes:
        return render.domain_error(request, failure.value)

    @app.handle_errors(StorageUnavailable)
    def handle_storage_unavailable(self, request: IRequest, failure: Failure) -> bytes:
        request.setHeader(b"Retry-After", b"5")
        return render.error(request, 503, "the database is unavailable right now, try again shortly")

    def error_body(self, request: IRequest, failure: Failure) -> bytes | None:
        """The answer to an error of a route dispatched without Klein (web/fast.py), as
        the handlers above give it; None for anything else (a 500 from twisted.web)."""
        if failure.check(DomainError):
            return self.handle_domain_error(request, failure)
        if failure.check(StorageUnavailable):
            return self.handle_storage_unavailable(request, failure)
        return None

    @staticmethod
    def unroutable(request: IRequest) -> bytes | None:
        """The 400 for a URL no route can take, None for others: a path or host that is
        not UTF-8 (Klein logs a traceback for it), a path with NUL (nothing stored has
        one, and PostgreSQL cannot even be asked for it)."""
        path = b"/".join(request.prepath + request.postpath)
        try:
            path.decode("utf-8")
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return render.error(request, 400, "Bad request: the URL is not valid UTF-8")
        if b"\x00" in path:
            return render.error(request, 400, "Bad request: the URL holds a NUL character")
        return None

    @app.handle_errors(RouteNotFound, MethodNotAllowed)
    def handle_no_route(self, request: IRequest, failure: Failure) -> bytes:
        return render.error(request, 404, "The resource could not be found.")

    # -- discovery, login, status -----------------------------------------------

    @_route(app, "/", ["GET"])
    async def list_users(self, request: IRequest) -> bytes:
        self._json_view(request)
        users = await self._ops.list_users()
        return render.result(request, "list:userconfig",
                             {name: _shown_user(user) for name, user in users.items()})

    async def _api(self, request: IRequest, user: str | None, index: str | None) -> bytes:
        self._json_view(request)
        base = self._base(request)
        identity = await self._identity(request)
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

    @_route(app, "/+api", ["GET"])
    def api_root(self, request: IRequest) -> Any:
        return self._api(request, None, None)

    @_route(app, "/<user>/+api", ["GET"])
    def api_user(self, request: IRequest, user: str) -> Any:
        self._check_segment(user)
        return self._api(request, None, None)

    @_route(app, "/<user>/<index>/+api", ["GET"])
    def api_index(self, request: IRequest, user: str, index: str) -> Any:
        self._check_segment(user, index)
        return self._api(request, user, index)

    @_route(app, "/+login", ["POST"])
    async def login(self, request: IRequest) -> bytes:
        token = await self._ops.login(render.read_json(request), client_address(request))
        return render.result(request, "proxyauth", token, "login successful")

    @_route(app, "/+status", ["GET"])
    async def status(self, request: IRequest) -> bytes:
        self._json_view(request)
        await self._ops.sync()
        info = self._info
        serial = self._ops.serial
        status = {
            "serverdir": info.serverdir, "uuid": info.uuid,
            "versioninfo": {"devpi-twisted": info.version, "devpi-server": DEVPI_API_VERSION},
            "server-code": "devpi-twisted", "host": info.host, "port": info.port,
            "outside-url": info.outside_url, "serial": serial,
            "last-commit-timestamp": self._ops.last_commit_time,
            "event-serial": serial, "event-serial-timestamp": self._ops.last_commit_time,
            "event-serial-in-sync-at": self._ops.last_commit_time,
            "metrics": self._status_metrics(), "role": "REPLICA" if info.role == "replica" else "MASTER",
            "polling_replicas": {},
            "process": {"pid": os.getpid(), "requests-only": info.requests_only},
            **self._more_status(),
        }
        return render.result(request, "status", status)

    def _more_status(self) -> dict[str, Any]:
        """Status of parts the management routes do not know (the mirror's)."""
        return {}

    def _status_metrics(self) -> list[Any]:
        """devpi's ``metrics`` list of /+status (web/ops_routes.py)."""
        return []

    @_route(app, "/+authcheck", ["GET"])
    def authcheck(self, request: IRequest) -> bytes:
        """For nginx ``auth_request``: 200 if the URL in X-Original-Uri is readable,
        403 if it names no route. Core rules grant read access to everything."""
        target = request.getHeader(b"X-Original-Uri") or request.uri
        path = unquote(target.partition(b"?")[0].decode("utf-8", "replace"))
        prefix = mount_path(request, self._info.outside_url)
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        try:
            self.app.url_map.bind("localhost").match(path, method="GET")
        except HTTPException:
            request.setResponseCode(403)
        return b""

    # -- users ------------------------------------------------------------------

    @_route(app, "/<user>", ["GET"])
    async def get_user(self, request: IRequest, user: str) -> bytes:
        self._check_segment(user)
        self._json_view(request)
        return render.result(request, "userconfig", _shown_user(await self._ops.get_user(user)))

    @_route(app, "/<user>", ["PUT"])
    async def create_user(self, request: IRequest, user: str) -> bytes:
        self._check_segment(user)
        body = render.read_json(request)
        written = await self._ops.create_user(await self._identity(request), user, body)
        self._written(request, written)
        return render.result(request, "userconfig", written.result, status=201)

    @_route(app, "/<user>", ["PATCH"])
    async def modify_user(self, request: IRequest, user: str) -> bytes:
        self._check_segment(user)
        body = render.read_json(request)
        written = await self._ops.modify_user(await self._identity(request), user, body)
        self._written(request, written)
        if written.result is not None:
            return render.result(request, "userpassword", written.result, written.message)
        return render.message(request, written.message or "user updated")

    @_route(app, "/<user>", ["DELETE"])
    async def delete_user(self, request: IRequest, user: str) -> bytes:
        self._check_segment(user)
        written = await self._ops.delete_user(await self._identity(request), user)
        self._written(request, written)
        return render.message(request, written.message or "")

    # -- indexes ----------------------------------------------------------------

    @_route(app, "/<user>/<index>", ["GET"])
    async def get_index(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        listing = await self._installer_listing(request, user, index)
        if listing is not None:
            return listing
        self._json_view(request)
        config = (await self._ops.get_index(user, index)).to_json()
        if not _flag(request, b"no_projects"):
            config["projects"] = await self._index_projects(user, index)
        return render.result(request, "indexconfig", _shown_index(config))

    async def _index_projects(self, user: str, index: str) -> list[str]:
        """The index's own project names (filled in by IndexApp)."""
        return []

    async def _installer_listing(self, request: IRequest, user: str, index: str) -> bytes | None:
        """The simple project list, for installers asking for the index URL (IndexApp)."""
        return None

    @_route(app, "/<user>/<index>", ["PUT"])
    async def create_index(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        body = render.read_json(request)
        written = await self._ops.create_index(await self._identity(request), user, index, body)
        self._written(request, written)
        return render.result(request, "indexconfig", _shown_index(written.result))

    @_route(app, "/<user>/<index>", ["PATCH"])
    async def modify_index(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        body = render.read_json(request)
        written = await self._ops.modify_index(
            await self._identity(request), user, index, body, _flag(request, b"error_on_noop"))
        self._written(request, written)
        return render.result(request, "indexconfig", _shown_index(written.result))

    @_route(app, "/<user>/<index>", ["DELETE"])
    async def delete_index(self, request: IRequest, user: str, index: str) -> bytes:
        self._check_segment(user, index)
        written = await self._ops.delete_index(await self._identity(request), user, index)
        self._written(request, written)
        return render.message(request, written.message or "", status=201)
