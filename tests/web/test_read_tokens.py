"""Read permission meets API tokens (issue 21): bob (a reader of alice/private) reads it
with a devpi-tokens token only while the token's scope allows pkg_read on that index;
out of scope -> 403, revoked or expired -> 401 saying so; an inheriting index read with
a token scoped to it alone shows nothing of its private base. In memory, both adapters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Reply
from tests.web.test_read_access import Private, private  # noqa: F401 (the fixture)
from tests.web.test_tokens import _basic, _create, _id_of

HTML = {"Accept": ["text/html"]}
JSON = {"Accept": ["application/json"]}


def _reads(p: Private) -> list[tuple[str, dict[str, Any]]]:
    """The simple page, the project's JSON, a release file."""
    return [("/alice/private/+simple/pkg/", HTML), ("/alice/private/pkg", JSON),
            (p.sdist, {"Accept": ["*/*"]})]


def _token(p: Private, body: Any = None) -> str:
    return _create(p.server, "bob", p.auth["bob"], body)


def _read_all(p: Private, token: str, how: str = "user") -> list[Reply]:
    auth = _basic("bob" if how == "user" else "__token__", token)
    return [p.server.client.get(path, headers={**headers, **auth}) for path, headers in _reads(p)]


@pytest.mark.parametrize("how", ["user", "__token__"])
def test_a_token_scoped_to_the_private_index_reads_it(private: Private, how: str) -> None:
    token = _token(private, {"indexes": ["alice/private"]})
    for reply in _read_all(private, token, how):
        assert reply.code == 200, (reply.code, reply.body[:200])
    assert all(r.code == 200 for r in _read_all(private, _token(private), how))


@pytest.mark.parametrize("scope", [{"indexes": ["alice/other"]}, {"allowed": ["upload"]},
                                   {"indexes": ["alice/private"], "allowed": ["upload"]},
                                   {"projects": ["other"]}])
def test_a_token_out_of_scope_is_403_naming_the_permission(private: Private,
                                                           scope: dict[str, Any]) -> None:
    token = _token(private, scope)
    for reply in _read_all(private, token):
        assert reply.code == 403, (scope, reply.code, reply.body[:200])
        assert b"pkg_read" in reply.body and b"alice/private" in reply.body
        assert token.encode() not in reply.body


def test_a_revoked_token_is_401_saying_so(private: Private) -> None:
    token = _token(private, {"indexes": ["alice/private"]})
    assert all(r.code == 200 for r in _read_all(private, token))
    reply = private.server.client.request("DELETE", f"/bob/+tokens/{_id_of(token)}",
                                          headers=private.auth["bob"])
    assert reply.code == 200, reply.body
    for reply in _read_all(private, token):
        assert reply.code == 401, (reply.code, reply.body[:200])
        assert b"revoked" in reply.body
        assert reply.header("WWW-Authenticate") == 'Basic realm="devpi"'


def test_an_expired_token_is_401_saying_so(private: Private) -> None:
    now = int(private.server.clock.seconds())
    token = _token(private, {"indexes": ["alice/private"], "expires": now + 100})
    assert all(r.code == 200 for r in _read_all(private, token))
    private.server.clock.advance(200)
    for reply in _read_all(private, token):
        assert reply.code == 401, (reply.code, reply.body[:200])
        assert b"expired" in reply.body


def test_a_token_scoped_to_the_inheriting_index_shows_nothing_of_the_private_base(
        private: Private) -> None:
    client = private.server.client
    for scope in ({"indexes": ["alice/public"]}, {"indexes": ["alice/public"],
                                                  "allowed": ["pkg_read"]}):
        auth = _basic("bob", _token(private, scope))
        listing = client.get("/alice/public/+simple/", headers={**HTML, **auth})
        assert listing.code == 200 and b"pub" in listing.body and b"pkg" not in listing.body
        assert client.get("/alice/public/+simple/pkg/", headers={**HTML, **auth}).code == 404
        assert client.get("/alice/public/pkg", headers={**JSON, **auth}).code == 404
        config = client.get("/alice/public", headers={**JSON, **auth}).json["result"]
        assert config["projects"] == ["pub"] and "alice/private" not in str(config)
        assert client.get(private.sdist, headers={"Accept": ["*/*"], **auth}).code == 403
    # bob's own login (no token) still sees the base through the inheriting index
    page = client.get("/alice/public/+simple/pkg/", headers={**HTML, **private.auth["bob"]})
    assert page.code == 200 and b"pkg-1.0.tar.gz" in page.body


def test_authcheck_applies_the_tokens_scope(private: Private) -> None:
    """nginx's auth_request (/+authcheck) answers for a token as the routes do."""
    client = private.server.client

    def check(uri: str, token: str) -> int:
        return client.get("/+authcheck", headers={"X-Original-Uri": [uri],
                                                  **_basic("__token__", token)}).code

    uris = ["/alice/private/+simple/pkg/", private.sdist.split("#")[0]]
    scoped = _token(private, {"indexes": ["alice/private"]})
    for scope in ({"indexes": ["alice/other"]}, {"allowed": ["upload"]}, {"projects": ["other"]}):
        elsewhere = _token(private, scope)
        assert [check(uri, elsewhere) for uri in uris] == [403, 403], scope
    assert [check(uri, scoped) for uri in uris] == [200, 200]
    assert client.request("DELETE", f"/bob/+tokens/{_id_of(scoped)}",
                          headers=private.auth["bob"]).code == 200
    assert [check(uri, scoped) for uri in uris] == [401, 401]


def test_a_project_scoped_token_lists_only_its_projects(private: Private) -> None:
    client = private.server.client
    bob_own = _basic("bob", _token(private, {"projects": ["pkg"]}))
    other = _basic("bob", _token(private, {"projects": ["other"]}))
    listing = client.get("/alice/private/+simple/", headers={**HTML, **other})
    assert listing.code == 200 and b">pkg<" not in listing.body
    assert client.get("/alice/private", headers={**JSON, **other}).json["result"]["projects"] == []
    listing = client.get("/alice/public/+simple/", headers={**HTML, **other})
    assert b">pkg<" not in listing.body and b">pub<" not in listing.body
    listing = client.get("/alice/private/+simple/", headers={**HTML, **bob_own})
    assert b">pkg<" in listing.body
    assert client.get("/alice/private", headers={**JSON, **bob_own}).json["result"]["projects"] == [
        "pkg"]
