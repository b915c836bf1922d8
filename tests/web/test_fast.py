"""Which requests web/fast.py takes past Klein, and which it leaves to it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devpi_twisted.web.fast import FastRoutes


class App:
    async def release_file(self, request, user, index, rest):  # pragma: no cover - not called
        return b""

    async def simple_project(self, request, user, index, project):  # pragma: no cover
        return b""

    async def upload(self, request, user, index):  # pragma: no cover
        return b""


def match(method: bytes, path: str):
    routes = FastRoutes(App(), fallback=None)
    request = SimpleNamespace(method=method, postpath=path.encode("latin-1").split(b"/")[1:])
    found = routes._match(request)
    return None if found is None else (found[0].__name__, found[1])


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_release_files_and_simple_pages_are_matched(method: bytes) -> None:
    assert match(method, "/alice/dev/+f/abc/0123456789abc/pkg-1.0.tar.gz") == (
        "release_file", ("alice", "dev", "abc/0123456789abc/pkg-1.0.tar.gz"))
    assert match(method, "/alice/dev/+simple/pkg/") == ("simple_project", ("alice", "dev", "pkg"))


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
    (b"GET", "/alice/dev/+simple/pkg"),        # the redirect to the slash form
    (b"GET", "/alice/dev/+simple/"),           # the project list
    (b"GET", "/alice/dev/+simple/pkg/extra"),
    (b"GET", "/alice/dev/+f/"),
    (b"GET", "/alice/dev/+f/abc//x.whl"),
    (b"GET", "/+api/dev/+simple/pkg/"),
    (b"GET", "/alice/+dev/+simple/pkg/"),
    (b"GET", "//dev/+simple/pkg/"),
    (b"GET", "/alice/dev/pkg/1.0"),
    (b"GET", "/alice/dev/+simple/p\xffkg/"),   # not UTF-8: Klein's 400
])
def test_everything_else_goes_to_klein(method: bytes, path: str) -> None:
    assert match(method, path) is None
