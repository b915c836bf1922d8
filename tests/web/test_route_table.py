"""The route table's own matcher (web/routes.py: the fast dispatch, metrics labels, body
limits, /+authcheck) and Klein's URL map built from the same table agree on every
request path: the same route and arguments, or no route for both. Metrics labels and
body limits are those of the matched route."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import example, given, settings, strategies as st
from werkzeug.exceptions import HTTPException

from devpi_twisted.web.dispatch import build_klein
from devpi_twisted.web.metrics import route_of
from devpi_twisted.web.routes import MATCHER, ROUTES, Route, RouteMatcher
from devpi_twisted.web.site import JSON_BODY, UPLOAD, body_kind

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "PUSH", "OPTIONS"]
STATIC = ["+api", "+login", "+status", "+authcheck", "+health", "+metrics", "+changelog",
          "+simple", "+f", "+e", "+doc", "refresh", "+x", "+", "alice", "dev", "pkg", "1.0",
          "Pkg_Name", "x-1.0.tar.gz"]


async def _handler(*args: Any, **kwargs: Any) -> bytes:  # pragma: no cover - never called
    return b""


KLEIN_MAP = build_klein({route: _handler for route in ROUTES}).url_map


def klein_match(method: str, postpath: Sequence[bytes]) -> tuple[str, dict[str, str]] | None:
    """What Klein's resource matches for a request: its path info is the joined
    (percent-decoded) segments, given to the map bound as it binds it."""
    path = b"/".join(postpath)
    if not path.startswith(b"/"):
        path = b"/" + path
    try:
        path_info = path.decode("utf-8")
    except UnicodeDecodeError:  # Klein answers 400
        return None
    try:
        rule, args = KLEIN_MAP.bind("localhost", "", path_info=path_info,
                                    default_method=method).match(return_rule=True)
    except HTTPException:  # not found, method not allowed, a redirect
        return None
    return str(rule.endpoint), dict(args)


def table_match(method: str, postpath: Sequence[bytes]) -> tuple[str, dict[str, str]] | None:
    found = MATCHER.match_segments(method.encode(), postpath)
    if found is None:
        return None
    return found.route.handler, dict(zip(found.route.arguments, found.args))


def postpath_of(raw: str) -> list[bytes]:
    """twisted.web's ``postpath`` of a request path: split, then each segment decoded."""
    return [unquote_to_bytes(s) for s in raw.encode("utf-8").split(b"/")[1:]]


_escape = st.sampled_from(["%2F", "%2B", "%20", "%25", "%00", "%FF", "%C3%A9", "%0A", "%2f"])
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
                max_size=6)
_segment = st.one_of(
    st.sampled_from(STATIC), st.just(""), _text, _escape,
    st.builds(lambda a, b, c: a + b + c, st.sampled_from(["", "+", "a"]), _escape, _text),
)
_path = st.lists(_segment, min_size=0, max_size=8).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=3000, deadline=None)
@given(method=st.sampled_from(METHODS), raw=_path)
@example(method="GET", raw="/alice/dev/+f/abc//x.whl")
@example(method="GET", raw="//alice/dev/+simple/pkg/")
@example(method="POST", raw="/alice/dev/")
@example(method="GET", raw="/alice/dev/+f/a/b/")
@example(method="GET", raw="/alice/dev/+f/a%0Ab")
@example(method="HEAD", raw="/+status")
@example(method="GET", raw="/alice/dev/pkg/1.0/+doc")
@example(method="GET", raw="/0/0/+simple//")
@example(method="GET", raw="/alice/dev/+simple/pkg//")
@example(method="GET", raw="/alice/dev/+simple/pkg///")
def test_the_table_matches_as_kleins_map(method: str, raw: str) -> None:
    postpath = postpath_of(raw)
    assert table_match(method, postpath) == klein_match(method, postpath), raw


def _example_path(route: Route) -> str:
    values = {"user": "alice", "index": "dev", "project": "pkg", "version": "1.0",
              "spec": "12", "rest": "ab/cd/pkg-1.0.tar.gz", "member": "a/index.html",
              "token_id": "abcdefgh", "hook_id": "3", "delivery_id": "17"}
    return "/".join(values[p.strip("<>").split(":")[-1]] if p.startswith("<") else p
                    for p in route.pattern.split("/"))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.handler}")
def test_every_route_is_matched_by_both(route: Route) -> None:
    postpath = postpath_of(_example_path(route))
    for method in route.methods:
        found = table_match(method, postpath)
        assert found is not None and found[0] == route.handler
        assert found == klein_match(method, postpath)


def test_two_routes_for_one_url_and_method_are_refused() -> None:
    with pytest.raises(ValueError):
        RouteMatcher([*ROUTES, Route("x", "/<name:user>", frozenset({"GET"}), "x.y")])


def test_names_are_never_plus_prefixed_or_empty() -> None:
    for raw in ["/+x", "/+x/dev", "/alice/+dev", "/alice/dev/+pkg", "/alice/dev/+simple/+pkg/"]:
        found = MATCHER.match_segments(b"GET", postpath_of(raw))
        assert found is None or found.route.name == "api", raw


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.handler}")
def test_metrics_labels_and_body_limits_come_from_the_route(route: Route) -> None:
    path = _example_path(route)
    for method in sorted(route.methods):
        assert route_of(postpath_of(path), method.encode()) == route.name
        kind = body_kind(method.encode(), path.encode(), b"multipart/form-data; boundary=x")
        assert kind == (UPLOAD if route.body == UPLOAD and method == "POST" else JSON_BODY)
