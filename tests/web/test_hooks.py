"""Webhooks' API on both storage adapters: creation with bad input (400 naming the
field, nothing stored), who may manage which hooks, the secret never shown back, an
index change queued for its hooks, listing deliveries and replaying one. Delivery
itself: tests/webhooks/ and tests/e2e/test_webhooks.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import Server

HOOK = {"url": "http://127.0.0.1:9/hook", "secret": "a-long-secret", "events": ["upload", "index"]}


def _user(server: Server, name: str) -> dict[str, Any]:
    assert server.client.request("PUT", f"/{name}", {"password": "pw"}).code == 201
    return server.devpi_auth(name, server.login(name, "pw"))


@pytest.fixture
def alice(server: Server) -> dict[str, Any]:
    auth = _user(server, "alice")
    reply = server.client.request("PUT", "/alice/dev", {"type": "stage", "bases": []}, headers=auth)
    assert reply.code == 200, reply.body
    return auth


@pytest.fixture
def root(server: Server) -> dict[str, Any]:
    return server.devpi_auth("root", server.login("root", ""))


def _create(server: Server, path: str, auth: dict[str, Any], body: Any = HOOK) -> Any:
    return server.client.request("POST", path, body, headers=auth)


@pytest.mark.parametrize("body, field", [
    ({**HOOK, "url": "ftp://example.com/x"}, "'url'"),
    ({**HOOK, "url": "file:///etc/passwd"}, "'url'"),
    ({**HOOK, "url": "http://"}, "'url'"),
    ({**HOOK, "url": "http://h:99999/"}, "'url'"),
    ({**HOOK, "url": "http://h/" + "x" * 3000}, "'url'"),
    ({**HOOK, "url": 5}, "'url'"),
    ({**HOOK, "secret": "short"}, "'secret'"),
    ({**HOOK, "secret": "x" * 300}, "'secret'"),
    ({**HOOK, "events": ["upload", "explode"]}, "'explode'"),
    ({**HOOK, "events": []}, "'events'"),
    ({**HOOK, "events": "upload"}, "'events'"),
    ({**HOOK, "colour": "red"}, "'colour'"),
    ([1, 2], "JSON object"),
])
def test_bad_hooks_are_400_naming_the_field_and_store_nothing(
        server: Server, alice: dict[str, Any], body: Any, field: str) -> None:
    reply = _create(server, "/alice/dev/+hooks", alice, body)
    assert reply.code == 400, reply.body
    assert field in reply.json["message"]
    assert server.client.get("/alice/dev/+hooks", headers=alice).json["result"] == []


def test_owner_creates_lists_and_deletes_hooks_never_seeing_the_secret(
        server: Server, alice: dict[str, Any]) -> None:
    reply = _create(server, "/alice/dev/+hooks", alice)
    assert reply.code == 201, reply.body
    hook = reply.json["result"]
    assert (hook["url"], hook["events"], hook["index"]) == (HOOK["url"], ["upload", "index"],
                                                            "alice/dev")
    listed = server.client.get("/alice/dev/+hooks", headers=alice)
    assert [h["id"] for h in listed.json["result"]] == [hook["id"]]
    assert HOOK["secret"] not in reply.body.decode() + listed.body.decode()
    gone = server.client.request("DELETE", f"/alice/dev/+hooks/{hook['id']}", headers=alice)
    assert gone.code == 200
    assert server.client.get("/alice/dev/+hooks", headers=alice).json["result"] == []
    again = server.client.request("DELETE", f"/alice/dev/+hooks/{hook['id']}", headers=alice)
    assert again.code == 404


def test_who_may_manage_hooks(server: Server, alice: dict[str, Any], root: dict[str, Any]) -> None:
    bob = _user(server, "bob")
    assert _create(server, "/alice/dev/+hooks", {}).code == 401
    assert _create(server, "/alice/dev/+hooks", bob).code == 403
    assert server.client.get("/alice/dev/+hooks", headers=bob).code == 403
    assert _create(server, "/+hooks", alice).code == 403
    assert server.client.get("/+hooks", headers=alice).code == 403
    made = _create(server, "/alice/dev/+hooks", root)
    assert made.code == 201 and made.json["result"]["creator"] == "root"
    hook_id = made.json["result"]["id"]
    assert server.client.request("DELETE", f"/alice/dev/+hooks/{hook_id}", headers=bob).code == 403
    assert server.client.request("DELETE", f"/+hooks/{hook_id}", headers=root).code == 404
    assert _create(server, "/alice/nope/+hooks", alice).code == 404
    server_hook = _create(server, "/+hooks", root)
    assert server_hook.code == 201 and server_hook.json["result"]["index"] is None
    assert [h["id"] for h in server.client.get("/+hooks", headers=root).json["result"]] == [
        server_hook.json["result"]["id"]]


def test_an_index_change_is_queued_listed_and_replayed(server: Server, alice: dict[str, Any],
                                                       root: dict[str, Any]) -> None:
    hook = _create(server, "/alice/dev/+hooks", alice).json["result"]
    everything = _create(server, "/+hooks", root, {**HOOK, "events": ["index"]}).json["result"]
    reply = server.client.request("PATCH", "/alice/dev", {"volatile": False}, headers=alice)
    assert reply.code == 200, reply.body
    path = f"/alice/dev/+hooks/{hook['id']}/deliveries"
    listed = server.client.get(path, headers=alice)
    assert listed.code == 200, listed.body
    [delivery] = listed.json["result"]
    assert (delivery["event"], delivery["status"], delivery["tries"], delivery["last_error"]) == (
        "index", "pending", 0, None)
    assert delivery["next_attempt"] is not None
    assert len(server.client.get(f"/+hooks/{everything['id']}/deliveries",
                                 headers=root).json["result"]) == 1
    assert server.client.get(path, headers=_user(server, "bob")).code == 403
    assert server.client.get(path + "?limit=x", headers=alice).code == 400
    replay = server.client.request("POST", f"{path}/{delivery['id']}/replay", headers=alice)
    assert replay.code == 200, replay.body
    assert server.client.request("POST", f"{path}/999/replay", headers=alice).code == 404
    assert server.client.request("POST", f"{path}/abc/replay", headers=alice).code == 404


def test_blocks_and_unblocks_are_block_events(server: Server, alice: dict[str, Any]) -> None:
    blocks = _create(server, "/alice/dev/+hooks", alice, {**HOOK, "events": ["block"]})
    changes = _create(server, "/alice/dev/+hooks", alice, {**HOOK, "events": ["index"]})
    body = {"project": "pkg", "version": "1.0", "reason": "CVE-1"}
    assert server.client.request("POST", "/alice/dev/+block", body, headers=alice).code == 200
    assert server.client.request("POST", "/alice/dev/+unblock", body, headers=alice).code == 200

    def events(hook: Any) -> list[str]:
        path = f"/alice/dev/+hooks/{hook.json['result']['id']}/deliveries"
        return [d["event"] for d in server.client.get(path, headers=alice).json["result"]]

    assert events(blocks) == ["block", "block"]
    assert events(changes) == []  # a block is no index change to its hooks
