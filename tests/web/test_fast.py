"""Which requests the dispatcher (web/dispatch.py) answers with the handlers of the
table's fast routes, and which it leaves to Klein."""

from __future__ import annotations

import pytest

from devpi_twisted.web.routes import MATCHER


def match(method: bytes, path: str) -> tuple[str, tuple[str, ...]] | None:
    found = MATCHER.match_segments(method, path.encode("latin-1").split(b"/")[1:])
    if found is None or not found.route.fast:
        return None
    return found.route.handler.split(".")[1], found.args


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_release_files_and_simple_pages_are_matched(method: bytes) -> None:
    assert match(method, "/alice/dev/+f/abc/0123456789abc/pkg-1.0.tar.gz") == (
        "release_file", ("alice", "dev", "abc/0123456789abc/pkg-1.0.tar.gz"))
    assert match(method, "/alice/dev/+simple/pkg/") == ("simple_project", ("alice", "dev", "pkg"))
    # what Klein's map gives these too (the handler redirects to the slash form)
    assert match(method, "/alice/dev/+simple/pkg") == ("simple_project", ("alice", "dev", "pkg"))
    assert match(method, "/alice/dev/+f/abc//x.whl") == ("release_file", ("alice", "dev",
                                                                          "abc//x.whl"))


@pytest.mark.parametrize("method", [b"POST", b"PUSH"])
@pytest.mark.parametrize("path", ["/alice/dev/", "/alice/dev"])
def test_uploads_and_pushes_are_matched(method: bytes, path: str) -> None:
    assert match(method, path) == ("upload", ("alice", "dev"))


@pytest.mark.parametrize("method, path", [
    (b"POST", "/+login"),
    (b"POST", "/alice/+api"),
    (b"POST", "/alice/dev/pkg"),
    (b"POST", "/alice/dev/+simple/pkg/refresh"),
    (b"POST", "/alice/d\xffev/"),
    (b"PUT", "/alice/dev/"),
    (b"PATCH", "/alice/dev"),
    (b"GET", "/alice/dev/"),
    (b"POST", "/alice/dev/+f/abc/0123456789abc/pkg-1.0.tar.gz"),   # toxresults: Klein
    (b"DELETE", "/alice/dev/+f/abc/0123456789abc/pkg-1.0.tar.gz"),
    (b"GET", "/alice/dev/+simple/"),           # the project list
    (b"GET", "/alice/dev/+simple/pkg/extra"),
    (b"GET", "/alice/dev/+f/"),
    (b"GET", "/+api/dev/+simple/pkg/"),
    (b"GET", "/alice/+dev/+simple/pkg/"),
    (b"GET", "//dev/+simple/pkg/"),
    (b"GET", "/alice/dev/pkg/1.0"),
    (b"GET", "/alice/dev/+simple/p\xffkg/"),   # not UTF-8: Klein's 400
])
def test_everything_else_goes_to_klein(method: bytes, path: str) -> None:
    assert match(method, path) is None
