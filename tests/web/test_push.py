"""Push and what devpi-client learns before it pushes (spec/api.md 3.2, 9), in memory.

Pushing to another server makes *this* server send the files, so it is refused to
anyone who may not upload to the source index (issue 19, item 10); the end-to-end
pushes with devpi-client are in tests/e2e/test_devpi_push.py.
"""

from __future__ import annotations

import pytest

from tests.web.conftest import Server

# what devpi-server 6.20 sends in /+api (read from a running 6.20.3)
DEVPI_6_20_FEATURES = ["push-no-docs", "push-only-docs", "push-register-project",
                       "server-keyvalue-parsing"]


def _user(server: Server, name: str, password: str = "secret") -> dict:
    reply = server.client.request("PUT", f"/{name}", {"password": password})
    assert reply.code == 201, reply.body
    return server.devpi_auth(name, server.login(name, password))


def _external(**extra: object) -> dict:
    return {"name": "pkg", "version": "1.0", "posturl": "http://127.0.0.1:9/ext/prod/",
            "username": "ext", "password": "ext-pass", **extra}


@pytest.mark.parametrize("path", ["/+api", "/alice/+api", "/root/pypi/+api"])
def test_api_advertises_every_feature_of_devpi_6_20(server: Server, path: str) -> None:
    assert server.client.get(path).json["result"]["features"] == DEVPI_6_20_FEATURES


def test_status_names_the_devpi_server_version_whose_api_we_speak(server: Server) -> None:
    versions = server.client.get("/+status").json["result"]["versioninfo"]
    assert set(versions) == {"devpi-twisted", "devpi-server"}
    assert versions["devpi-server"].startswith("6.20.")


@pytest.mark.parametrize("method", ["PUSH", "POST"])
def test_external_push_without_login_is_401(server: Server, method: str) -> None:
    auth = _user(server, "alice")
    assert server.client.request("PUT", "/alice/dev", {}, headers=auth).code == 200
    serial = server.storage.serial
    reply = server.client.request(method, "/alice/dev", _external())
    assert reply.code == 401, reply.body
    assert "upload permission on alice/dev" in reply.json["message"]
    assert server.storage.serial == serial


@pytest.mark.parametrize("method", ["PUSH", "POST"])
def test_external_push_by_a_user_without_upload_right_is_403(server: Server, method: str) -> None:
    auth = _user(server, "alice")
    assert server.client.request("PUT", "/alice/dev", {}, headers=auth).code == 200
    bob = _user(server, "bob")
    reply = server.client.request(method, "/alice/dev/", _external(), headers=bob)
    assert reply.code == 403, reply.body
    assert reply.json["message"].startswith("user 'bob' may not upload to alice/dev")


def test_external_push_checks_what_it_can_before_permission(server: Server) -> None:
    auth = _user(server, "alice")
    assert server.client.request("PUT", "/alice/dev", {}, headers=auth).code == 200
    reply = server.client.request("PUSH", "/alice/dev", _external(posturl="file:///etc/passwd"),
                                  headers=auth)
    assert (reply.code, reply.json["message"]) == (400, "posturl must be an http or https URL")
    reply = server.client.request("PUSH", "/alice/dev", _external(no_docs=True, only_docs=True),
                                  headers=auth)
    assert (reply.code, reply.json["message"]) == (400, "can't use 'no_docs' and 'only_docs' together")
    reply = server.client.request("PUSH", "/alice/nope", _external(), headers=auth)
    assert reply.code == 404
    # the uploader passes the permission check and meets the next one
    reply = server.client.request("PUSH", "/alice/dev", _external(), headers=auth)
    assert (reply.code, reply.json["message"]) == (
        400, "there are no files for pkg 1.0 on stage alice/dev")
