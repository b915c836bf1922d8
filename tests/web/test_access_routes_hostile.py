"""Hostile input to every route issue 21 added (API tokens, the login form, logout, the
audit log): no body, a 50 MB body, JSON nested 1000 deep, a name of 10,000 characters,
no credentials, someone else's credentials and a revoked token each get a 4xx with a
message, and nothing is written (the serial and alice's tokens stay as they were)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Server, make_server
from tests.web.test_tokens import _basic, _create, _id_of

BIG = b'{"expires": "' + b"x" * (50 * 1024 * 1024) + b'"}'
NESTED = b"[" * 1000 + b"]" * 1000
LONG = "a" * 10_000


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Server, dict[str, Any], str]]:
    """alice and bob; alice's login and one token of alice's, revoked."""
    server = make_server(tmp_path)
    auth = {}
    for user in ("alice", "bob"):
        assert server.client.request("PUT", f"/{user}", {"password": "secret"}).code == 201
        auth[user] = server.devpi_auth(user, server.login(user, "secret"))
    revoked = _create(server, "alice", auth["alice"])
    reply = server.client.request("DELETE", f"/alice/+tokens/{_id_of(revoked)}",
                                  headers=auth["alice"])
    assert reply.code == 200, reply.body
    auth["revoked"] = _basic("alice", revoked)
    yield server, auth, _id_of(_create(server, "alice", auth["alice"]))
    server.storage.close()


def _unchanged(server: Server, auth: dict[str, Any], serial: int) -> None:
    assert server.storage.serial == serial
    listed = server.client.get("/alice/+tokens", headers=auth["alice"]).json["result"]["tokens"]
    assert len(listed) == 1


ROUTES = [("POST", "/alice/+token-create"), ("GET", "/alice/+tokens"),
          ("DELETE", "/alice/+tokens/{id}"), ("GET", "/+audit")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("who", [None, "bob", "revoked"])
def test_without_the_right_credentials_nothing_is_done(
        world: tuple[Server, dict[str, Any], str], method: str, path: str, who: str | None) -> None:
    server, auth, token_id = world
    serial = server.storage.serial
    reply = server.client.request(method, path.format(id=token_id), {},
                                  headers=auth[who] if who else {})
    assert reply.code == (403 if who == "bob" else 401), (who, reply.body)
    assert reply.json["message"]
    _unchanged(server, auth, serial)


@pytest.mark.parametrize("body, code", [(BIG, 413), (NESTED, 400), (b"", 200)])
def test_token_create_bodies(world: tuple[Server, dict[str, Any], str], body: bytes,
                             code: int) -> None:
    """No body is devpi-tokens' defaults (a token); too big and too deep are refused."""
    server, auth, _ = world
    serial = server.storage.serial
    reply = server.client.request("POST", "/alice/+token-create", raw=body,
                                  headers=auth["alice"])
    assert reply.code == code, reply.body[:300]
    if code != 200:
        assert reply.json["message"]
        _unchanged(server, auth, serial)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", f"/{LONG}/+token-create"), ("GET", f"/{LONG}/+tokens"),
    ("DELETE", f"/alice/+tokens/{LONG}"), ("GET", f"/+audit?user={LONG}")])
def test_a_name_of_10000_characters_is_a_4xx(world: tuple[Server, dict[str, Any], str],
                                            method: str, path: str) -> None:
    server, auth, _ = world
    serial = server.storage.serial
    root = server.devpi_auth("root", server.login("root", ""))
    reply = server.client.request(method, path, {}, headers=root)
    assert 400 <= reply.code < 500 and reply.json["message"], (path[:40], reply.code)
    _unchanged(server, auth, serial)


@pytest.mark.parametrize("body, content_type, code", [
    (b"", "application/json", 400), (BIG, "application/json", 413),
    (NESTED, "application/json", 400), (b"x=" + b"y" * (50 * 1024 * 1024),
                                        "application/x-www-form-urlencoded", 413),
    (b"username=" + LONG.encode() + b"&password=x", "application/x-www-form-urlencoded", 401),
    (b'{"user": "' + LONG.encode() + b'", "password": "x"}', "application/json", 401)])
def test_login_refuses_bodies_it_cannot_use(world: tuple[Server, dict[str, Any], str],
                                            body: bytes, content_type: str, code: int) -> None:
    server, auth, _ = world
    serial = server.storage.serial
    reply = server.client.request("POST", "/+login", raw=body,
                                  headers={"Content-Type": [content_type]})
    assert reply.code == code, reply.body[:300]
    assert reply.header("Set-Cookie") is None
    _unchanged(server, auth, serial)
