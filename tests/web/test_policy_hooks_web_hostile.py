"""Hostile input to the routes issues 22 and 23 added (blocks, webhooks, the web
interface's action forms, search): no body, a 50 MB body, JSON nested 1000 deep, a
name of 10,000 characters, no credentials, someone else's credentials and a revoked
token each get a 4xx with a message, and nothing is written (the serial, alice's hooks
and the index's blocks stay as they were; hooks are no index state: no serial)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Reply, Server, make_server
from tests.web.test_access_routes_hostile import BIG, LONG, NESTED
from tests.web.test_tokens import _basic, _create, _id_of

HOOK = {"url": "http://127.0.0.1:9/hook", "secret": "a-long-secret", "events": ["upload"]}
BLOCK = {"project": "pkg", "reason": "CVE-1"}
FORM = {"Content-Type": ["application/x-www-form-urlencoded"]}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Server, dict[str, Any], str]]:
    """alice (owning alice/dev, with one hook, one block and pkg 1.0) and bob; a
    revoked token of alice's. Yields the server, the credentials and the hook's id."""
    server = make_server(tmp_path)
    auth = {}
    for user in ("alice", "bob"):
        assert server.client.request("PUT", f"/{user}", {"password": "secret"}).code == 201
        auth[user] = server.devpi_auth(user, server.login(user, "secret"))
    alice = auth["alice"]
    assert server.client.request("PUT", "/alice/dev", {"type": "stage", "bases": []},
                                 headers=alice).code == 200
    hook = server.client.request("POST", "/alice/dev/+hooks", HOOK, headers=alice)
    assert hook.code == 201, hook.body
    assert server.client.request("POST", "/alice/dev/+block", BLOCK, headers=alice).code == 200
    reply = server.client.request("POST", "/alice/dev/", raw=b":action=submit&name=pkg&version=1.0",
                                  headers={**alice, **FORM})
    assert reply.code == 200, reply.body
    revoked = _create(server, "alice", alice)
    assert server.client.request("DELETE", f"/alice/+tokens/{_id_of(revoked)}",
                                 headers=alice).code == 200
    auth["revoked"] = _basic("alice", revoked)
    yield server, auth, str(hook.json["result"]["id"])
    server.storage.close()


def _state(server: Server, auth: dict[str, Any]) -> tuple[Any, ...]:
    alice = auth["alice"]
    hooks = server.client.get("/alice/dev/+hooks", headers=alice).json["result"]
    blocks = server.client.get("/alice/dev/+blocks").json["result"]
    version = server.client.get("/alice/dev/pkg/1.0", headers={"Accept": ["application/json"]})
    return server.storage.serial, hooks, blocks, version.json["result"]


def _refused(reply: Reply, *codes: int) -> None:
    assert reply.code in codes, (reply.code, reply.body[:300])
    assert reply.body.strip(), "a refusal says why"


def _refusals(who: str | None) -> tuple[int, ...]:
    """Someone else: 403; a revoked token: 401; nobody: 401, or 403 where the route
    shares the index changes' refusal (PATCH of an index answers the anonymous 403, as
    devpi does)."""
    return {"bob": (403,), "revoked": (401,)}.get(who or "", (401, 403))


WRITES = [("POST", "/alice/dev/+block", BLOCK), ("POST", "/alice/dev/+unblock", BLOCK),
          ("POST", "/alice/dev/+hooks", HOOK), ("DELETE", "/alice/dev/+hooks/{id}", None),
          ("GET", "/alice/dev/+hooks", None), ("GET", "/alice/dev/+hooks/{id}/deliveries", None),
          ("POST", "/alice/dev/+hooks/{id}/deliveries/1/replay", None),
          ("POST", "/+hooks", HOOK)]
FORMS = ["/alice/dev/+web/edit", "/alice/dev/pkg/1.0/+web/yank", "/alice/dev/pkg/1.0/+web/delete"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize("who", [None, "bob", "revoked"])
def test_without_the_right_credentials_nothing_is_done(
        world: tuple[Server, dict[str, Any], str], method: str, path: str, body: Any,
        who: str | None) -> None:
    server, auth, hook_id = world
    before = _state(server, auth)
    reply = server.client.request(method, path.format(id=hook_id), body,
                                  headers=auth[who] if who else {})
    _refused(reply, *_refusals(who))
    assert reply.json["message"]
    assert _state(server, auth) == before


@pytest.mark.parametrize("path", FORMS)
@pytest.mark.parametrize("who", [None, "bob", "revoked"])
def test_action_forms_without_the_right_credentials_do_nothing(
        world: tuple[Server, dict[str, Any], str], path: str, who: str | None) -> None:
    server, auth, _ = world
    before = _state(server, auth)
    reply = server.client.request("POST", path, raw=b"title=x&yank=1",
                                  headers={**FORM, **(auth[who] if who else {})})
    _refused(reply, *_refusals(who))
    assert _state(server, auth) == before


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, body in WRITES if body is not None])
@pytest.mark.parametrize("body, code", [(b"", 400), (BIG, 413), (NESTED, 400)])
def test_bodies_they_cannot_use_are_refused(world: tuple[Server, dict[str, Any], str],
                                            method: str, path: str, body: bytes,
                                            code: int) -> None:
    server, auth, _ = world
    root = server.devpi_auth("root", server.login("root", ""))
    before = _state(server, auth)
    reply = server.client.request(method, path, raw=body,
                                  headers={**root, "Content-Type": ["application/json"]})
    _refused(reply, code)
    assert reply.json["message"]
    assert _state(server, auth) == before


@pytest.mark.parametrize("path", FORMS)
def test_action_forms_refuse_a_50_mb_body(world: tuple[Server, dict[str, Any], str],
                                          path: str) -> None:
    server, auth, _ = world
    before = _state(server, auth)
    reply = server.client.request("POST", path, raw=b"title=" + b"x" * (50 * 1024 * 1024),
                                  headers={**FORM, **auth["alice"]})
    _refused(reply, 413)
    assert _state(server, auth) == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/{LONG}/dev/+block", BLOCK), ("POST", "/alice/dev/+block", {**BLOCK, "project": LONG}),
    ("POST", "/alice/dev/+block", {**BLOCK, "reason": LONG}),
    ("POST", "/alice/dev/+unblock", {"project": LONG}), ("GET", f"/alice/{LONG}/+blocks", None),
    ("POST", f"/alice/{LONG}/+hooks", HOOK), ("DELETE", f"/alice/dev/+hooks/{LONG}", None),
    ("POST", "/alice/dev/+hooks", {**HOOK, "url": "http://h/" + LONG}),
    ("POST", "/alice/dev/+hooks", {**HOOK, "secret": LONG}),
    ("GET", f"/+search?query={LONG}", None), ("GET", f"/+search?query=x&index={LONG}", None),
    ("POST", f"/alice/dev/{LONG}/1.0/+web/yank", None),
    ("GET", f"/alice/dev/pkg/{LONG}/+d/index.html", None)])
def test_a_name_of_10000_characters_is_a_4xx(world: tuple[Server, dict[str, Any], str],
                                            method: str, path: str, body: Any) -> None:
    server, auth, _ = world
    root = server.devpi_auth("root", server.login("root", ""))
    before = _state(server, auth)
    reply = server.client.request(method, path, body, headers=root)
    assert 400 <= reply.code < 500, (path[:60], reply.code, reply.body[:200])
    assert reply.body.strip()
    assert _state(server, auth) == before
