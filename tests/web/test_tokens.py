"""Scoped API tokens (issue 21 item 4), in memory on both storage adapters: devpi-tokens'
routes and answers, every way of presenting a token, each kind of refusal, and the
scope enforced on management writes. Uploads and devpi-client's commands against a
real daemon: tests/e2e/test_api_tokens.py."""

from __future__ import annotations

import base64
from typing import Any

import pymacaroons
import pytest

from devpi_twisted.model.apitokens import ONE_YEAR
from tests.web.conftest import Server


def _user(server: Server, name: str, password: str = "secret") -> dict[str, Any]:
    reply = server.client.request("PUT", f"/{name}", {"password": password})
    assert reply.code == 201, reply.body
    return server.devpi_auth(name, server.login(name, password))


def _create(server: Server, user: str, auth: dict[str, Any], body: Any = None) -> str:
    reply = server.client.request("POST", f"/{user}/+token-create", body, headers=auth)
    assert reply.code == 200, reply.body
    assert reply.json["type"] == "token-info"
    assert reply.header("Cache-Control") == "no-store"
    return str(reply.json["result"]["token"])


def _basic(user: str, password: str) -> dict[str, Any]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": [f"Basic {pair}"]}


def _authstatus(server: Server, headers: dict[str, Any]) -> Any:
    reply = server.client.get("/+api", headers=headers)
    return reply.code, reply.json.get("result", {}).get("authstatus") or reply.json["message"]


def _id_of(token: str) -> str:
    return str(pymacaroons.Macaroon.deserialize(token[6:]).identifier.decode("ascii").rsplit("-", 1)[1])


def _derive(token: str, *caveats: str) -> str:
    """What ``devpi token-derive`` does: caveats added client-side, no prefix."""
    macaroon = pymacaroons.Macaroon.deserialize(token.removeprefix("devpi-"))
    for caveat in caveats:
        macaroon.add_first_party_caveat(caveat)
    return str(macaroon.serialize())


@pytest.fixture
def alice(server: Server) -> dict[str, Any]:
    return _user(server, "alice")


def test_created_token_has_devpi_tokens_format(server: Server, alice: dict[str, Any]) -> None:
    now = int(server.clock.seconds())
    token = _create(server, "alice", alice, {"indexes": ["alice/dev", "alice/a"],
                                              "allowed": ["upload", "pkg_read"]})
    assert token.startswith("devpi-")
    macaroon = pymacaroons.Macaroon.deserialize(token[6:])
    user, token_id = macaroon.identifier.decode("ascii").rsplit("-", 1)
    assert user == "alice" and len(token_id) == 8
    assert [c.caveat_id_bytes.decode() for c in macaroon.caveats] == [
        "allowed=pkg_read,upload", f"expires={now + ONE_YEAR}", "indexes=alice/a,alice/dev"]
    listed = server.client.get("/alice/+tokens", headers=alice)
    assert listed.code == 200 and listed.json["type"] == "tokens-info"
    info = listed.json["result"]["tokens"][token_id]
    assert info["restrictions"] == [c.caveat_id_bytes.decode() for c in macaroon.caveats]
    assert info["created"] == now and info["first_used"] is None and info["last_used"] is None
    assert token not in listed.body.decode()


def test_every_way_of_presenting_a_token(server: Server, alice: dict[str, Any]) -> None:
    token = _create(server, "alice", alice)
    ok = (200, ["ok", "alice", []])
    assert _authstatus(server, _basic("alice", token)) == ok
    assert _authstatus(server, _basic(token, "")) == ok
    assert _authstatus(server, _basic("__token__", token)) == ok
    assert _authstatus(server, server.devpi_auth("alice", token)) == ok
    assert _authstatus(server, {"Authorization": [f"Bearer {token}"]}) == ok
    assert _authstatus(server, {"Authorization": [f"Bearer {_derive(token, 'projects=x')}"]}) == ok


def test_use_is_recorded_first_then_at_most_each_minute(server: Server, alice: dict[str, Any]) -> None:
    token = _create(server, "alice", alice)
    first = server.clock.seconds()
    _authstatus(server, _basic("alice", token))
    server.clock.advance(30)
    _authstatus(server, _basic("alice", token))
    info = server.client.get("/alice/+tokens", headers=alice).json["result"]["tokens"][_id_of(token)]
    assert info["first_used"] == first and info["last_used"] == first
    server.clock.advance(31)
    _authstatus(server, _basic("alice", token))
    info = server.client.get("/alice/+tokens", headers=alice).json["result"]["tokens"][_id_of(token)]
    assert info["first_used"] == first and info["last_used"] == first + 61


def test_token_of_another_user_name_is_403(server: Server, alice: dict[str, Any]) -> None:
    _user(server, "bob")
    token = _create(server, "alice", alice)
    code, message = _authstatus(server, _basic("bob", token))
    assert (code, message) == (403, "Token doesn't match user name")


@pytest.mark.parametrize("damage, says", [
    (lambda t: t[:-12], "malformed"),
    (lambda t: t[:40], "malformed"),
    (lambda t: "devpi-" + "A" * 60, "malformed"),
])
def test_damaged_tokens_are_401_saying_so(server: Server, alice: dict[str, Any],
                                          damage: Any, says: str) -> None:
    token = _create(server, "alice", alice)
    code, message = _authstatus(server, _basic("__token__", damage(token)))
    assert code == 401 and says in message and token not in message


def test_forged_token_is_401(server: Server, alice: dict[str, Any]) -> None:
    token = _create(server, "alice", alice)
    forged = pymacaroons.Macaroon(identifier=f"alice-{_id_of(token)}", key="guess",
                                  version=pymacaroons.MACAROON_V2)
    code, message = _authstatus(server, {"Authorization": [f"Bearer devpi-{forged.serialize()}"]})
    assert code == 401 and "signature does not verify" in message
    # a caveat removed (widening the token) breaks the signature too
    macaroon = pymacaroons.Macaroon.deserialize(_derive(token, "allowed=upload"))
    macaroon.caveats.pop()
    code, message = _authstatus(server, _basic("alice", macaroon.serialize()))
    assert code == 401 and "signature does not verify" in message


def test_expired_and_not_yet_valid_tokens_are_401(server: Server, alice: dict[str, Any]) -> None:
    now = int(server.clock.seconds())
    soon = _create(server, "alice", alice, {"expires": now + 100})
    later = _create(server, "alice", alice, {"not_before": now + 50})
    assert _authstatus(server, _basic("alice", later))[0] == 401
    assert "not valid before" in _authstatus(server, _basic("alice", later))[1]
    server.clock.advance(60)
    assert _authstatus(server, _basic("alice", later))[0] == 200
    assert _authstatus(server, _basic("alice", soon))[0] == 200
    assert _authstatus(server, _basic("alice", _derive(soon, f"expires={now + 10}")))[0] == 401
    server.clock.advance(60)
    code, message = _authstatus(server, _basic("alice", soon))
    assert code == 401 and "expired" in message


def test_revoked_unknown_and_orphaned_tokens_are_401(server: Server, alice: dict[str, Any]) -> None:
    token = _create(server, "alice", alice)
    token_id = _id_of(token)
    reply = server.client.request("DELETE", f"/alice/+tokens/{token_id}", headers=alice)
    assert reply.code == 200 and reply.json["message"] == f"token {token_id} deleted"
    code, message = _authstatus(server, _basic("alice", token))
    assert code == 401 and "revoked" in message
    assert server.client.request("DELETE", f"/alice/+tokens/{token_id}", headers=alice).code == 404
    assert server.client.request("DELETE", "/alice/+tokens/abcdefgh", headers=alice).code == 404
    assert token_id not in server.client.get("/alice/+tokens", headers=alice).json["result"]["tokens"]
    unknown = pymacaroons.Macaroon(identifier="alice-abcdefgh", key="k", version=2).serialize()
    code, message = _authstatus(server, _basic("alice", "devpi-" + unknown))
    assert code == 401 and "unknown API token id abcdefgh" in message
    other = _create(server, "alice", alice)
    assert server.client.request("DELETE", "/alice", headers=alice).code == 200
    code, message = _authstatus(server, _basic("alice", other))
    assert code == 401 and "no longer exists" in message
    _user(server, "alice")  # re-created: the old tokens went with the old user
    code, message = _authstatus(server, _basic("alice", other))
    assert code == 401 and "unknown API token id" in message


def test_expiry_limits_and_bad_bodies(server: Server, alice: dict[str, Any]) -> None:
    now = int(server.clock.seconds())
    post = lambda body, auth=alice: server.client.request(  # noqa: E731
        "POST", "/alice/+token-create", body, headers=auth)
    assert post({"expires": "never"}).code == 403
    assert post({"expires": now + ONE_YEAR + 100}).code == 403
    assert post({"expires": now - 1}).code == 400
    assert post({"bogus": 1}).json["message"] == "Unknown restriction 'bogus'."
    assert post({"allowed": ["fly"]}).code == 400
    assert post({"indexes": "alice/dev"}).code == 400
    assert post([1]).code == 400
    root = server.devpi_auth("root", server.login("root", ""))
    token = _create(server, "alice", root, {"expires": "never"})
    assert "expires=never" in [c.caveat_id_bytes.decode() for c in
                               pymacaroons.Macaroon.deserialize(token[6:]).caveats]
    assert _authstatus(server, _basic("alice", token))[0] == 200


def test_who_may_manage_tokens(server: Server, alice: dict[str, Any]) -> None:
    bob = _user(server, "bob")
    assert server.client.request("POST", "/alice/+token-create").code == 401
    assert server.client.request("POST", "/alice/+token-create", headers=bob).code == 403
    assert server.client.get("/alice/+tokens", headers=bob).code == 403
    token = _create(server, "alice", alice)
    with_token = _basic("alice", token)
    reply = server.client.request("POST", "/alice/+token-create", headers=with_token)
    assert reply.code == 403 and "API token" in reply.json["message"]
    assert server.client.get("/alice/+tokens", headers=with_token).code == 403
    assert server.client.request("DELETE", f"/alice/+tokens/{_id_of(token)}",
                                 headers=with_token).code == 403
    root = server.devpi_auth("root", server.login("root", ""))
    assert _authstatus(server, _basic("alice", _create(server, "alice", root)))[0] == 200
    assert server.client.request("POST", "/nobody/+token-create", headers=root).code == 404


def test_a_token_cannot_change_users(server: Server, alice: dict[str, Any]) -> None:
    token = _basic("alice", _create(server, "alice", alice))
    reply = server.client.request("PATCH", "/alice", {"password": "new"}, headers=token)
    assert reply.code == 403
    assert server.client.request("DELETE", "/alice", headers=token).code == 403
    root_token = _basic("root", _create(server, "root",
                                        server.devpi_auth("root", server.login("root", ""))))
    assert server.client.request("PUT", "/carol", {"password": "x"}, headers=root_token).code == 403


def test_scope_limits_index_management(server: Server, alice: dict[str, Any]) -> None:
    upload_only = _basic("alice", _create(server, "alice", alice, {"allowed": ["upload"]}))
    reply = server.client.request("PUT", "/alice/dev", {}, headers=upload_only)
    assert reply.code == 403 and "index_create" in reply.json["message"]
    dev_only = _basic("alice", _create(server, "alice", alice, {"indexes": ["alice/dev"]}))
    assert server.client.request("PUT", "/alice/dev", {}, headers=dev_only).code == 200
    assert server.client.request("PUT", "/alice/prod", {}, headers=dev_only).code == 403
    assert server.client.request("PUT", "/alice/prod", {}, headers=alice).code == 200
    assert server.client.request("PATCH", "/alice/prod", {"title": "x"}, headers=dev_only).code == 403
    assert server.client.request("PATCH", "/alice/dev", {"title": "x"}, headers=dev_only).code == 200
    narrowed = _basic("alice", _derive(_create(server, "alice", alice), "allowed=index_modify"))
    assert server.client.request("DELETE", "/alice/dev", headers=narrowed).code == 403
    assert server.client.request("DELETE", "/alice/dev", headers=dev_only).code == 201


def test_a_token_grants_no_more_than_its_user_has(server: Server, alice: dict[str, Any]) -> None:
    _user(server, "bob")
    token = _basic("alice", _create(server, "alice", alice, {"indexes": ["bob/dev"]}))
    assert server.client.request("PUT", "/bob/dev", {}, headers=token).code == 403


def test_unknown_or_third_party_caveats_are_refused(server: Server, alice: dict[str, Any]) -> None:
    token = _create(server, "alice", alice)
    code, message = _authstatus(server, _basic("alice", _derive(token, "colour=blue")))
    assert code == 401 and "unknown restriction 'colour'" in message
    macaroon = pymacaroons.Macaroon.deserialize(token[6:])
    macaroon.add_third_party_caveat("https://elsewhere", "key", "id")
    code, message = _authstatus(server, _basic("alice", macaroon.serialize()))
    assert code == 401 and "third-party" in message


def test_tokens_are_not_in_the_access_log(tmp_path: Any) -> None:
    from twisted.logger import capturedLogs

    from tests.web.conftest import make_server

    server = make_server(tmp_path, access_log=True)
    try:
        auth = _user(server, "alice")
        token = _create(server, "alice", auth)
        with capturedLogs() as events:
            server.client.get("/+api", headers=_basic("alice", token))
            server.client.get("/+api", headers={"Authorization": [f"Bearer {token}"]})
            server.client.get("/+api", headers=_basic("alice", token[:-5]))
        assert events and token[6:30] not in repr(events)
    finally:
        server.storage.close()


def test_restrict_modify_admins_manage_others_tokens(tmp_path: Any) -> None:
    from tests.web.conftest import make_server

    server = make_server(tmp_path, restrict_modify="root,boss")
    try:
        root = server.devpi_auth("root", server.login("root", ""))
        for name in ("boss", "alice"):
            assert server.client.request("PUT", f"/{name}", {"password": "pw"}, headers=root).code == 201
        boss = server.devpi_auth("boss", server.login("boss", "pw"))
        alice = server.devpi_auth("alice", server.login("alice", "pw"))
        token = _create(server, "alice", boss, {"expires": "never"})
        assert _authstatus(server, _basic("alice", token))[0] == 200
        assert server.client.get("/alice/+tokens", headers=boss).code == 200
        assert server.client.request("POST", "/boss/+token-create", headers=alice).code == 403
        reply = server.client.request("POST", "/alice/+token-create", {"expires": "never"},
                                      headers=alice)
        assert reply.code == 403
        assert server.client.request("DELETE", f"/alice/+tokens/{_id_of(token)}",
                                     headers=boss).code == 200
    finally:
        server.storage.close()
