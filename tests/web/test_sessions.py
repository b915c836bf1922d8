"""Issue 21 items 6 and 3 through the routes: browser login sessions (the form, the
cookie, CSRF, logout) and ``/+authcheck`` answering nginx's auth_request with the
read permission of the index the original URI names."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devpi_twisted.web.routes import FORM, JSON
from devpi_twisted.web.sessions import csrf_token, local_path
from devpi_twisted.web.site import JSON_BODY, MAX_FORM_BODY, body_kind
from tests.web.conftest import Server, make_server, pg_of

FORM_TYPE = {"Content-Type": ["application/x-www-form-urlencoded"]}


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    made = make_server(tmp_path, pg=pg_of(request))
    for name in ("alice", "bob"):
        assert made.client.request("PUT", f"/{name}", {"password": f"{name}-pw"}).code == 201
    yield made
    made.storage.close()


def basic(user: str, password: str) -> dict[str, Any]:
    return {"Authorization": ["Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()]}


def form_login(server: Server, username: str, password: str, next_path: str = "/alice/",
               headers: dict[str, Any] | None = None) -> Any:
    body = urllib.parse.urlencode({"username": username, "password": password,
                                   "next": next_path}).encode()
    reply = server.client.request("POST", "/+login", raw=body, headers={
        **FORM_TYPE, "Accept": ["text/html"], **(headers or {})})
    # treq's client would send the cookies on: these tests send them explicitly
    server.client._http._cookiejar.clear()
    return reply


def cookies_of(reply: Any) -> dict[str, str]:
    """Name -> the whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in reply.headers.getRawHeaders("Set-Cookie", [])}


def session(server: Server, user: str = "alice") -> tuple[dict[str, Any], str]:
    """(the Cookie header of a form login, its CSRF token)."""
    reply = form_login(server, user, f"{user}-pw")
    assert reply.code == 303, reply.body
    set_cookies = cookies_of(reply)
    pairs = [set_cookies[name].split(";", 1)[0] for name in ("devpi_session", "devpi_csrf")]
    return {"Cookie": ["; ".join(pairs)]}, pairs[1].split("=", 1)[1]


# -- the form and the cookie --------------------------------------------------------


def test_the_login_page_is_a_form_posting_to_login(server: Server) -> None:
    reply = server.client.get("/+login?next=/alice/dev/", headers={"Accept": ["text/html"]})
    assert reply.code == 200 and reply.header("Content-Type") == "text/html; charset=utf-8"
    page = reply.body.decode()
    assert 'action="http://testserver/+login"' in page and 'method="post"' in page
    assert 'name="username"' in page and 'name="password"' in page
    assert 'name="next" value="/alice/dev/"' in page
    assert reply.header("X-Frame-Options") == "DENY"
    hostile = server.client.get("/+login?next=%22%3E%3Cscript%3E",
                                headers={"Accept": ["text/html"]})
    assert b"<script>" not in hostile.body


def test_form_login_sets_the_session_cookie_and_redirects_to_next(server: Server) -> None:
    reply = form_login(server, "alice", "alice-pw", "/alice/dev/+simple/")
    assert reply.code == 303, reply.body
    assert reply.header("Location") == "http://testserver/alice/dev/+simple/"
    cookies = cookies_of(reply)
    attributes = set(cookies["devpi_session"].split("; ")[1:])
    assert attributes == {"Path=/", "Max-Age=36000", "SameSite=Strict", "HttpOnly"}
    assert set(cookies["devpi_csrf"].split("; ")[1:]) == {"Path=/", "Max-Age=36000",
                                                         "SameSite=Strict"}
    assert reply.header("Cache-Control") == "no-store"


def test_the_cookie_is_secure_when_the_site_is_https(tmp_path: Path) -> None:
    server = make_server(tmp_path, outside_url="https://pypi.example.com")
    try:
        assert server.client.request("PUT", "/alice", {"password": "alice-pw"}).code == 201
        reply = form_login(server, "alice", "alice-pw",
                           headers={"Origin": ["https://pypi.example.com"]})
        assert reply.code == 303 and reply.header("Location") == "https://pypi.example.com/alice/"
        assert all("; Secure" in line for line in cookies_of(reply).values())
        proxied = form_login(server, "alice", "alice-pw",
                             headers={"X-Outside-Url": ["http://inside:3141"]})
        assert not any("Secure" in line for line in cookies_of(proxied).values())
    finally:
        server.storage.close()


@pytest.mark.parametrize("given", ["//evil.example/x", "https://evil.example/", "/\\evil.example",
                                   "evil", "/%0d%0aSet-Cookie:x", "/a\r\nb", "javascript:alert(1)"])
def test_next_never_leads_off_the_server(server: Server, given: str) -> None:
    reply = form_login(server, "alice", "alice-pw", given)
    assert reply.code == 303
    location = reply.header("Location") or ""
    assert location in ("http://testserver/", "http://testserver" + given), location
    assert urllib.parse.urlsplit(location).netloc == "testserver"
    assert local_path(given) in ("/", given) and "\n" not in location


def test_a_wrong_password_shows_the_form_again_and_sets_no_cookie(server: Server) -> None:
    reply = form_login(server, "alice", "wrong")
    assert reply.code == 401 and b"wrong user name or password" in reply.body
    assert not cookies_of(reply)


def test_form_logins_are_throttled_like_json_logins(server: Server) -> None:
    codes = [form_login(server, "alice", f"guess{n}").code for n in range(7)]
    assert codes[:5] == [401] * 5 and codes[-1] == 429, codes
    json_login = server.client.request("POST", "/+login", {"user": "alice", "password": "x"})
    assert json_login.code == 429


def test_a_cross_site_login_form_is_refused(server: Server) -> None:
    reply = form_login(server, "alice", "alice-pw", headers={"Origin": ["https://evil.example"]})
    assert reply.code == 403 and not cookies_of(reply)


def test_json_login_is_unchanged_and_sets_no_cookie(server: Server) -> None:
    reply = server.client.request("POST", "/+login", {"user": "alice", "password": "alice-pw"})
    assert reply.code == 200 and reply.json["result"]["expiration"] == 36000
    assert not cookies_of(reply)
    # JSON sent as urlencoded (Python's urllib does, without a type of its own): still JSON
    reply = server.client.request("POST", "/+login", {"user": "alice", "password": "alice-pw"},
                                  headers=FORM_TYPE)
    assert reply.code == 200 and reply.json["result"]["expiration"] == 36000
    assert not cookies_of(reply)


def test_a_form_body_over_its_limit_is_refused_413(server: Server) -> None:
    body = b"username=alice&password=" + b"x" * MAX_FORM_BODY
    reply = server.client.request("POST", "/+login", raw=body, headers=FORM_TYPE)
    assert reply.code == 413
    assert body_kind(b"POST", b"/+login", b"application/x-www-form-urlencoded") == FORM
    assert body_kind(b"POST", b"/+login", b"application/json") == JSON == JSON_BODY
    assert body_kind(b"POST", b"/alice/dev", b"application/x-www-form-urlencoded") == JSON_BODY


# -- what the cookie authenticates ----------------------------------------------------


def test_the_cookie_authenticates_reads(server: Server) -> None:
    cookie, _ = session(server)
    reply = server.client.get("/+api", headers=cookie)
    assert reply.json["result"]["authstatus"][:2] == ["ok", "alice"]


def test_header_credentials_win_over_the_cookie(server: Server) -> None:
    cookie, _ = session(server)
    reply = server.client.get("/+api", headers={**cookie, **basic("bob", "bob-pw")})
    assert reply.json["result"]["authstatus"][:2] == ["ok", "bob"]
    made = server.client.request("PUT", "/bob/dev", {},
                                 headers={**cookie, **basic("bob", "bob-pw")})
    assert made.code == 200, made.body  # header credentials need no CSRF token
    for unreadable in ({"X-Devpi-Auth": ["!!"]}, {"Authorization": ["Digest x"]}):
        reply = server.client.get("/+api", headers={**cookie, **unreadable})
        assert reply.json["result"]["authstatus"][0] == "noauth", unreadable


def test_writes_with_the_cookie_need_the_csrf_token(server: Server) -> None:
    cookie, token = session(server)
    refused = server.client.request("PUT", "/alice/dev", {}, headers=cookie)
    assert refused.code == 403 and "CSRF token" in refused.json["message"]
    wrong = server.client.request("PUT", "/alice/dev", {}, headers={**cookie,
                                                                 "X-CSRF-Token": ["x" * 43]})
    assert wrong.code == 403
    assert server.client.get("/alice/dev").code == 404  # nothing written
    done = server.client.request("PUT", "/alice/dev", {}, headers={**cookie,
                                                                "X-CSRF-Token": [token]})
    assert done.code == 200, done.body
    assert done.json["result"]["type"] == "stage"


def test_writes_with_the_cookie_from_another_origin_are_refused(server: Server) -> None:
    cookie, token = session(server)
    for header in ({"Origin": ["https://evil.example"]}, {"Origin": ["null"]},
                   {"Referer": ["http://evil.example/page"]}):
        reply = server.client.request("PUT", "/alice/dev", {},
                                      headers={**cookie, "X-CSRF-Token": [token], **header})
        assert reply.code == 403 and "cross-site" in reply.json["message"], header
    same = server.client.request("PUT", "/alice/dev", {}, headers={
        **cookie, "X-CSRF-Token": [token], "Origin": ["http://testserver"]})
    assert same.code == 200, same.body


def test_the_csrf_token_is_bound_to_the_session(server: Server) -> None:
    alice, alice_token = session(server, "alice")
    _, bob_token = session(server, "bob")
    assert alice_token != bob_token
    reply = server.client.request("PUT", "/alice/dev", {}, headers={**alice,
                                                                 "X-CSRF-Token": [bob_token]})
    assert reply.code == 403
    assert csrf_token("a") != csrf_token("b") and len(csrf_token("a")) == 43


def test_logout_clears_the_cookie_and_needs_the_csrf_token(server: Server) -> None:
    cookie, token = session(server)
    refused = server.client.request("POST", "/+logout", raw=b"next=/", headers={**cookie,
                                                                               **FORM_TYPE})
    assert refused.code == 403 and not cookies_of(refused)
    done = server.client.request("POST", "/+logout",
                                 raw=f"csrf_token={token}&next=/alice/".encode(),
                                 headers={**cookie, **FORM_TYPE})
    assert done.code == 303 and done.header("Location") == "http://testserver/alice/"
    cleared = cookies_of(done)
    assert cleared["devpi_session"].startswith("devpi_session=; ")
    assert "Max-Age=0" in cleared["devpi_session"] and "Max-Age=0" in cleared["devpi_csrf"]
    plain = server.client.request("POST", "/+logout")  # no cookie: nothing to protect
    assert plain.code == 200 and "Max-Age=0" in cookies_of(plain)["devpi_session"]


def test_a_garbled_or_forged_cookie_is_anonymous(server: Server) -> None:
    for value in ("%%%", base64.urlsafe_b64encode(b"alice:not-a-token").decode(), "", "YQ"):
        reply = server.client.get("/+api", headers={"Cookie": [f"devpi_session={value}"]})
        assert reply.code == 200 and reply.json["result"]["authstatus"][0] == "noauth", value


# -- /+authcheck ------------------------------------------------------------------------


def authcheck(server: Server, uri: str, headers: dict[str, Any] | None = None) -> Any:
    return server.client.get("/+authcheck", headers={"X-Original-Uri": [uri], **(headers or {})})


def test_authcheck_answers_with_the_read_permission_of_the_index(server: Server) -> None:
    alice = basic("alice", "alice-pw")
    assert server.client.request("PUT", "/alice/private", {"acl_read": "alice"},
                                 headers=alice).code == 200
    assert server.client.request("PUT", "/alice/public", {}, headers=alice).code == 200
    for uri in ("/alice/private/+f/abc/def/pkg-1.0.tar.gz", "/alice/private/+simple/pkg/",
                "/alice/private/+simple/", "/alice/private/pkg/1.0", "/alice/private"):
        anonymous = authcheck(server, uri)
        assert anonymous.code == 401, uri
        assert anonymous.header("WWW-Authenticate") == 'Basic realm="devpi"'
        assert authcheck(server, uri, alice).code == 200, uri
        assert authcheck(server, uri, basic("bob", "bob-pw")).code == 403, uri
        assert authcheck(server, uri, basic("root", "")).code == 200, uri
        assert authcheck(server, uri, basic("alice", "wrong")).code == 401, uri
        assert authcheck(server, uri.replace("private", "public")).code == 200, uri
    cookie, _ = session(server)
    assert authcheck(server, "/alice/private/+simple/pkg/", cookie).code == 200
    assert authcheck(server, "/alice/private/+simple/pkg/?x=1", cookie).code == 200
    assert authcheck(server, "http://testserver/alice/private/+simple/pkg/").code == 401
    assert authcheck(server, "/alice/%70rivate/+simple/pkg/").code == 401  # decoded as routed
    # what names no index is the daemon's to answer; no route at all: refused
    assert authcheck(server, "/alice/nothing/+simple/pkg/").code == 200
    assert authcheck(server, "/+api").code == 200
    assert authcheck(server, "/+nothing/x/y/z/w").code == 403


def test_authcheck_follows_acl_changes_and_groups_of_principals(server: Server) -> None:
    alice = basic("alice", "alice-pw")
    assert server.client.request("PUT", "/alice/team", {"acl_read": ":AUTHENTICATED:"},
                                 headers=alice).code == 200
    uri = "/alice/team/+simple/"
    assert authcheck(server, uri).code == 401
    assert authcheck(server, uri, basic("bob", "bob-pw")).code == 200
    assert server.client.request("PATCH", "/alice/team", ["acl_read=alice"],
                                 headers=alice).code == 200
    assert authcheck(server, uri, basic("bob", "bob-pw")).code == 403


def test_authcheck_below_a_mount_path(tmp_path: Path) -> None:
    server = make_server(tmp_path, outside_url="https://pypi.example.com/devpi")
    try:
        assert server.client.request("PUT", "/alice", {"password": "alice-pw"}).code == 201
        assert server.client.request("PUT", "/alice/private", {"acl_read": "alice"},
                                     headers=basic("alice", "alice-pw")).code == 200
        uri = "/devpi/alice/private/+simple/pkg/"
        assert authcheck(server, uri).code == 401
        assert authcheck(server, uri, basic("alice", "alice-pw")).code == 200
        proxied = {"X-Outside-Url": ["http://127.0.0.1:8080/mnt"]}  # as nginx says it
        assert authcheck(server, "/mnt/alice/private/+f/a/b/pkg-1.0.tar.gz", proxied).code == 401
    finally:
        server.storage.close()
