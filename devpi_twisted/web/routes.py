"""The route table: every URL of the server, declared once (name, pattern, methods,
handler, body kind), and the compiled matcher derived from it.

Klein's URL map is built from ``ROUTES`` (web/dispatch.py); so are the hot-path
dispatch, the ``/+metrics`` route label (the matched route's name), the body limit of
a request (site.body_kind) and ``/+authcheck``. ``RouteMatcher`` is a segment trie
that matches as werkzeug's state machine does for the patterns used here (static
segments, ``<name:x>``, ``<x>`` and a final ``<path:x>``; rules without strict slashes;
GET implies HEAD) at a fraction of its cost; tests/web/test_route_table.py holds the
two to agreement on generated paths.

A handler is named ``"app.method"``: ``app`` is a key of the apps composed in
web/compose.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import attrs
from werkzeug.routing import BaseConverter

# What a request's body may be: nothing, JSON (the JSON limit), the upload form, JSON or
# an urlencoded HTML form (a form gets the small form limit: web/sessions.py).
NONE, JSON, UPLOAD, FORM = "none", "json", "upload", "form"
# The only converter of user, index and project segments: not empty, no leading "+"
# (what starts with "+" is ours: +api, +simple, +f ...).
NAME = "name"
# werkzeug's final <path:...> part of a pattern (the rest of the path: not starting
# with a slash, no newline in it, as werkzeug's "." takes none)
_PATH = re.compile(r"[^/].*?\Z")
_VARIABLE = re.compile(r"<(?:(\w+):)?(\w+)>\Z")


class NameConverter(BaseConverter):
    """A user, index or project name in a URL: never empty, never ``+``-prefixed."""

    regex = r"(?!\+)[^/]+"
    part_isolating = True
    weight = 100


def _with_head(methods: Iterable[str]) -> frozenset[str]:
    """werkzeug's rule: a GET route answers HEAD too."""
    methods = frozenset(methods)
    return methods | {"HEAD"} if "GET" in methods else methods


@attrs.frozen
class Route:
    """One URL pattern and methods, the handler answering them, what the body may be.
    ``name`` labels the request (metrics); several rows may share one. ``fast``: the
    dispatcher calls the handler itself instead of going through Klein."""

    name: str
    pattern: str
    methods: frozenset[str] = attrs.field(converter=_with_head)
    handler: str
    body: str = NONE
    fast: bool = False

    @property
    def arguments(self) -> tuple[str, ...]:
        """The names of the pattern's variables, in order (the handler's arguments)."""
        found = (_VARIABLE.match(p) for p in self.pattern.split("/"))
        return tuple(f.group(2) for f in found if f is not None)


def _r(name: str, pattern: str, methods: Sequence[str], handler: str, body: str = NONE,
       fast: bool = False) -> Route:
    return Route(name, pattern, frozenset(methods), handler, body, fast)


_UI = "/<name:user>/<name:index>"
_PROJECT = _UI + "/<name:project>"
_VERSION = _PROJECT + "/<version>"
_WRITE = ("PUT", "PATCH", "DELETE")

ROUTES: tuple[Route, ...] = (
    _r("root", "/", ["GET"], "management.list_users"),
    _r("api", "/+api", ["GET"], "management.api_root"),
    _r("login", "/+login", ["POST"], "management.login", FORM),
    _r("login", "/+login", ["GET"], "management.login_page"),
    _r("logout", "/+logout", ["POST"], "management.logout", FORM),
    _r("status", "/+status", ["GET"], "ops.status"),
    _r("authcheck", "/+authcheck", ["GET"], "management.authcheck"),
    _r("health", "/+health", ["GET"], "ops.health"),
    _r("metrics", "/+metrics", ["GET"], "ops.metrics"),
    _r("audit", "/+audit", ["GET"], "audit.events"),
    _r("changelog", "/+changelog/<spec>", ["GET"], "replication.changelog"),
    _r("hooks", "/+hooks", ["POST"], "hooks.create_server", JSON),
    _r("hooks", "/+hooks", ["GET"], "hooks.list_server"),
    _r("hooks", "/+hooks/<name:hook_id>", ["DELETE"], "hooks.delete_server"),
    _r("hooks", "/+hooks/<name:hook_id>/deliveries", ["GET"], "hooks.deliveries_server"),
    _r("hooks", "/+hooks/<name:hook_id>/deliveries/<name:delivery_id>/replay", ["POST"],
       "hooks.replay_server"),
    _r("static", "/+static/<path:member>", ["GET"], "web.static"),
    _r("web", "/+web/metrics", ["GET"], "ops.metrics_page"),
    _r("search", "/+search", ["GET"], "search.search"),
    _r("user", "/<name:user>", ["GET"], "management.get_user"),
    _r("user", "/<name:user>", ["PUT"], "management.create_user", JSON),
    _r("user", "/<name:user>", ["PATCH"], "management.modify_user", JSON),
    _r("user", "/<name:user>", ["DELETE"], "management.delete_user"),
    _r("api", "/<name:user>/+api", ["GET"], "management.api_user"),
    _r("tokens", "/<name:user>/+token-create", ["POST"], "tokens.create", JSON),
    _r("tokens", "/<name:user>/+tokens", ["GET"], "tokens.list"),
    _r("tokens", "/<name:user>/+tokens/<name:token_id>", ["DELETE"], "tokens.delete"),
    _r("index", _UI, ["GET"], "management.get_index"),
    _r("index", _UI, ["PUT"], "management.create_index", JSON),
    _r("index", _UI, ["PATCH"], "management.modify_index", JSON),
    _r("index", _UI, ["DELETE"], "management.delete_index"),
    _r("upload", _UI, ["POST", "PUSH"], "uploads.upload", UPLOAD, fast=True),
    _r("api", _UI + "/+api", ["GET"], "management.api_index"),
    _r("hooks", _UI + "/+hooks", ["POST"], "hooks.create_index", JSON),
    _r("hooks", _UI + "/+hooks", ["GET"], "hooks.list_index"),
    _r("hooks", _UI + "/+hooks/<name:hook_id>", ["DELETE"], "hooks.delete_index"),
    _r("hooks", _UI + "/+hooks/<name:hook_id>/deliveries", ["GET"], "hooks.deliveries_index"),
    _r("hooks", _UI + "/+hooks/<name:hook_id>/deliveries/<name:delivery_id>/replay", ["POST"],
       "hooks.replay_index"),
    # root or the index's owner (ServerOps.modify_index); +blocks: who may read the index
    _r("block", _UI + "/+block", ["POST"], "policy.block", JSON),
    _r("block", _UI + "/+unblock", ["POST"], "policy.unblock", JSON),
    _r("block", _UI + "/+blocks", ["GET"], "policy.blocks"),
    _r("web", _UI + "/+web/edit", ["POST"], "web.edit_index", FORM),
    _r("simple_list", _UI + "/+simple/", ["GET"], "pages.simple_list"),
    _r("simple_project", _UI + "/+simple/<name:project>/", ["GET"], "pages.simple_project",
       fast=True),
    _r("simple_project", _UI + "/+simple/<name:project>/refresh", ["POST"],
       "pages.refresh_project"),
    _r("file", _UI + "/+f/<path:rest>", ["GET"], "files.release_file", fast=True),
    _r("file", _UI + "/+e/<path:rest>", ["GET"], "files.external_file", fast=True),
    _r("file", _UI + "/+f/<path:rest>", ["DELETE"], "projects.delete_file"),
    _r("file", _UI + "/+f/<path:rest>", ["POST"], "projects.toxresult", JSON),
    _r("project", _PROJECT, ["GET"], "projects.project_view"),
    _r("project", _PROJECT, ["PATCH"], "projects.modify_project", JSON),
    _r("project", _PROJECT, ["DELETE"], "projects.delete_project"),
    _r("project", _VERSION, ["GET"], "projects.version_view"),
    _r("project", _VERSION, ["PATCH"], "projects.yank_version", JSON),
    _r("project", _VERSION, ["DELETE"], "projects.delete_version"),
    _r("project", _VERSION + "/+doc/", ["GET"], "projects.docs_index"),
    _r("project", _VERSION + "/+doc/<path:member>", ["GET"], "projects.docs"),
    _r("project", _VERSION + "/+d/", ["GET"], "web.docs_frame_index"),
    _r("project", _VERSION + "/+d/<path:member>", ["GET"], "web.docs_frame"),
    _r("web", _VERSION + "/+web/yank", ["POST"], "web.yank", FORM),
    _r("web", _VERSION + "/+web/delete", ["POST"], "web.delete", FORM),
)


class RouteMatch(NamedTuple):
    """A request's route and the values of its pattern's variables, in order."""

    route: Route
    args: tuple[str, ...]


# answers of the matcher remembered: this many, for paths of at most this many bytes
RECENT, RECENT_PATH = 8192, 300
# kinds of a dynamic segment: one segment (any, or a name), or the rest of the path
_ANY, _NAMED, _REST = 0, 1, 2


class _State:
    __slots__ = ("static", "dynamic", "routes", "slash")

    def __init__(self) -> None:
        self.static: dict[str, _State] = {}
        self.dynamic: list[tuple[int, _State]] = []
        self.routes: list[Route] = []  # routes ending here
        self.slash: list[Route] = []  # routes ending here with a trailing slash


def _kind(segment: str) -> int | None:
    found = _VARIABLE.match(segment)
    if found is None:
        return None
    converter = found.group(1) or "default"
    return {"default": _ANY, NAME: _NAMED, "path": _REST}[converter]


class RouteMatcher:
    """The routes as a trie of path segments: static segments first, then variable
    ones (names before paths), as werkzeug tries them. ``match`` is None where
    werkzeug's map would raise (not found, method not allowed, a slash redirect)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)
        self._root = _State()
        self._recent: dict[tuple[bytes, bytes], RouteMatch | None] = {}
        for route in self.routes:
            self._add(route)

    def _add(self, route: Route) -> None:
        state = self._root
        segments = route.pattern[1:].split("/")
        trailing = len(segments) > 1 and segments[-1] == ""
        if trailing:
            segments = segments[:-1]
        for segment in segments:
            kind = _kind(segment)
            if kind is None:
                state = state.static.setdefault(segment, _State())
                continue
            for have, next_state in state.dynamic:
                if have == kind:
                    state = next_state
                    break
            else:
                next_state = _State()
                state.dynamic.append((kind, next_state))
                state.dynamic.sort(key=lambda entry: entry[0] == _REST)
                state = next_state
        ending = state.slash if trailing else state.routes
        if any(r.methods & route.methods for r in ending):
            raise ValueError(f"two routes for {route.pattern} {sorted(route.methods)}")
        ending.append(route)

    def match(self, method: str, path_info: str) -> RouteMatch | None:
        """The route of ``method`` and ``path_info`` (decoded, as Klein gives werkzeug
        the joined path segments), with the values of its variables in order."""
        parts = path_info.lstrip("/").split("/")
        return _match(self._root, parts, 0, method, [])

    def match_segments(self, method: bytes, segments: Sequence[bytes]) -> RouteMatch | None:
        """``match`` for a request's (percent-decoded) path segments; None if not UTF-8.
        Remembers the answers for recent short paths (the hot ones repeat)."""
        path = b"/".join(segments)
        key = (method, path)
        if key in self._recent:
            return self._recent[key]
        try:
            found = self.match(method.decode("latin-1"), path.decode("utf-8"))
        except UnicodeDecodeError:
            found = None
        if len(path) <= RECENT_PATH:
            if len(self._recent) >= RECENT:
                self._recent.clear()
            self._recent[key] = found
        return found


def _ending(routes: list[Route], method: str) -> Route | None:
    for route in routes:
        if method in route.methods:
            return route
    return None


def _match(state: _State, parts: list[str], at: int, method: str,
           values: list[str]) -> RouteMatch | None:
    """werkzeug's matching (routing/matcher.py StateMachineMatcher.match) on our trie:
    ``values`` grows and shrinks with the variables of the path being tried."""
    if at == len(parts):
        route = _ending(state.routes, method) or _ending(state.slash, method)
        return None if route is None else RouteMatch(route, tuple(values))
    part = parts[at]
    last = at == len(parts) - 1
    # werkzeug's static "" step of "/x/" patterns; past it, one more empty part is
    # the trailing slash rules without strict slashes accept (so "/x//" matches too)
    if not part and state.slash and (last or (at == len(parts) - 2 and not parts[-1])):
        route = _ending(state.slash, method)
        if route is not None:
            return RouteMatch(route, tuple(values))
    following = state.static.get(part)
    if following is not None:
        found = _match(following, parts, at + 1, method, values)
        if found is not None:
            return found
    for kind, following in state.dynamic:
        if kind == _REST:
            rest = _PATH.match("/".join(parts[at:]))
            if rest is None:
                continue
            values.append(rest.group())
            found = _match(following, parts, len(parts), method, values)
        elif part and (kind == _ANY or part[0] != "+"):
            values.append(part)
            found = _match(following, parts, at + 1, method, values)
        else:
            continue
        if found is not None:
            return found
        values.pop()
    if last and not part:  # a trailing slash: rules without strict slashes
        route = _ending(state.routes, method)
        if route is not None:
            return RouteMatch(route, tuple(values))
    return None


MATCHER = RouteMatcher(ROUTES)
