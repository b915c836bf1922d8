"""The management API's wire behaviour (spec/api.md sections 1-5), in memory."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.web.conftest import UUID, Server, make_server


def _user(server: Server, name: str = "alice", password: str = "secret", **extra: str) -> dict:
    reply = server.client.request("PUT", f"/{name}", {"password": password, **extra})
    assert reply.code == 201, reply.body
    return server.devpi_auth(name, server.login(name, password))


# -- conventions -------------------------------------------------------------------


def test_every_reply_carries_devpi_headers(server: Server) -> None:
    for path in ("/+api", "/nobody", "/+nothing/here/at/all"):
        reply = server.client.get(path)
        assert reply.header("X-Devpi-Api-Version") == "2"
        assert reply.header("X-Devpi-Serial") == "0"
        assert reply.header("X-Devpi-Uuid") == UUID
        assert reply.header("X-Devpi-Primary-Uuid") == UUID
        assert reply.header("X-Devpi-Master-Uuid") == UUID
        assert reply.header("X-Devpi-Server-Version").startswith("devpi-twisted")


def test_json_replies_have_the_exact_content_type(server: Server) -> None:
    assert server.client.get("/+api").header("Content-Type") == "application/json"
    assert server.client.get("/nobody").header("Content-Type") == "application/json"


def test_write_reply_carries_the_serial_of_its_commit(server: Server) -> None:
    reply = server.client.request("PUT", "/alice", {"password": "x"})
    assert reply.header("X-Devpi-Serial") == "1"
    assert server.client.get("/alice").header("X-Devpi-Serial") == "1"


def test_percent_encoded_plus_routes_like_plus(server: Server) -> None:
    reply = server.client.get("/%2Bapi")
    assert reply.code == 200
    assert reply.json["type"] == "apiconfig"


def test_unknown_routes_and_methods_answer_404(server: Server) -> None:
    assert server.client.get("/a/b/c/d/e/f").code == 404
    assert server.client.request("POST", "/root").code == 404
    assert server.client.request("PUSH", "/+api").code == 404


def test_html_accept_gets_the_web_pages_and_404_on_json_only_views(server: Server) -> None:
    for path in ("/", "/root", "/root/pypi", "/+status"):  # the web interface's pages
        reply = server.client.get(path, headers={"Accept": ["text/html"]})
        assert reply.code == 200, path
        assert reply.header("Content-Type").startswith("text/html")
        assert reply.body.startswith(b"<!doctype html>")
    reply = server.client.get("/+api", headers={"Accept": ["text/html"]})
    assert reply.code == 404
    assert reply.header("Content-Type").startswith("text/html")


def test_no_accept_header_gets_json(server: Server) -> None:
    reply = server.client.get("/root", headers={"Accept": [""]})
    assert reply.code == 200
    assert reply.json["type"] == "userconfig"


def test_trailing_slash_is_optional(server: Server) -> None:
    assert server.client.get("/root/").json["type"] == "userconfig"
    assert server.client.get("/root/pypi/").json["type"] == "indexconfig"


# -- discovery, login, status ------------------------------------------------------


def test_api_of_an_index_names_its_urls(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    result = server.client.get("/alice/dev/+api").json["result"]
    assert result["login"] == "http://testserver/+login"
    assert result["index"] == "http://testserver/alice/dev"
    assert result["simpleindex"] == "http://testserver/alice/dev/+simple/"
    assert result["pypisubmit"] == "http://testserver/alice/dev/"
    assert result["authstatus"] == ["noauth", "", []]
    assert "server-keyvalue-parsing" in result["features"]


def test_api_of_a_mirror_has_no_upload_url(server: Server) -> None:
    result = server.client.get("/root/pypi/+api").json["result"]
    assert "pypisubmit" not in result
    assert result["simpleindex"].endswith("/root/pypi/+simple/")


def test_api_of_a_missing_index_is_404(server: Server) -> None:
    assert server.client.get("/root/nope/+api").code == 404


def test_api_reports_the_authenticated_user(server: Server) -> None:
    auth = _user(server)
    assert server.client.get("/+api", headers=auth).json["result"]["authstatus"] == ["ok", "alice", []]


def test_outside_url_header_sets_base_and_mount_point(server: Server) -> None:
    reply = server.client.get(
        "/devpi/root/pypi/+api", headers={"X-Outside-Url": ["https://example.org/devpi"]})
    assert reply.code == 200
    assert reply.json["result"]["login"] == "https://example.org/devpi/+login"
    assert reply.json["result"]["index"] == "https://example.org/devpi/root/pypi"


def test_configured_outside_url_is_used_without_header(tmp_path: Path) -> None:
    server = make_server(tmp_path, outside_url="https://pkgs.example.com")
    assert server.client.get("/+api").json["result"]["login"] == "https://pkgs.example.com/+login"


def test_login_returns_a_token_usable_as_credentials(server: Server) -> None:
    reply = server.client.request("POST", "/+login", {"user": "root", "password": ""})
    assert reply.code == 200
    assert reply.json["type"] == "proxyauth"
    assert reply.json["message"] == "login successful"
    assert reply.json["result"]["expiration"] == 36000
    token = reply.json["result"]["password"]
    assert "\n" not in token
    status = server.client.get("/+api", headers=server.devpi_auth("root", token)).json["result"]
    assert status["authstatus"][:2] == ["ok", "root"]


@pytest.mark.parametrize(("raw", "status", "message"), [
    (b"{not json", 400, "Bad request: could not decode json"),
    (b'{"user": "root"}', 400, "Bad request: no user/password specified"),
    (b'{"user": "root", "password": "wrong"}', 401, "user 'root' could not be authenticated"),
    (b'{"user": "ghost", "password": ""}', 401, "user 'ghost' could not be authenticated"),
])
def test_login_refusals(server: Server, raw: bytes, status: int, message: str) -> None:
    reply = server.client.request("POST", "/+login", raw=raw)
    assert reply.code == status
    assert reply.json == {"message": message}
    assert reply.header("WWW-Authenticate") is None


def test_status_reports_serial_uuid_and_role(server: Server) -> None:
    _user(server)
    result = server.client.get("/+status").json["result"]
    assert result["serial"] == 1
    assert result["uuid"] == UUID
    assert result["role"] == "MASTER"
    assert isinstance(result["last-commit-timestamp"], float)
    assert "devpi-twisted" in result["versioninfo"]


def test_authcheck_allows_readable_routes_and_refuses_unknown_ones(server: Server) -> None:
    ok = server.client.get("/+authcheck", headers={"X-Original-Uri": ["/root/pypi/+api"]})
    assert (ok.code, ok.body) == (200, b"")
    assert server.client.get("/+authcheck", headers={"X-Original-Uri": ["/root"]}).code == 200
    nothing = server.client.get("/+authcheck", headers={"X-Original-Uri": ["/a/b/c/d/e/f/g"]})
    assert (nothing.code, nothing.body) == (403, b"")


# -- authentication ----------------------------------------------------------------


def test_basic_auth_with_password_authenticates(server: Server) -> None:
    _user(server)
    reply = server.client.get("/+api", auth=("alice", "secret"))
    assert reply.json["result"]["authstatus"][:2] == ["ok", "alice"]


def test_x_devpi_auth_takes_precedence_even_when_invalid(server: Server) -> None:
    _user(server)
    headers = {"X-Devpi-Auth": ["!!!not-base64"]}
    reply = server.client.get("/+api", headers=headers, auth=("alice", "secret"))
    assert reply.json["result"]["authstatus"][0] == "noauth"


def test_expired_token_is_anonymous(server: Server) -> None:
    auth = _user(server)
    server.clock.advance(36001)
    assert server.client.get("/+api", headers=auth).json["result"]["authstatus"][0] == "noauth"
    reply = server.client.request("PATCH", "/alice", {"email": "x@y"}, headers=auth)
    assert reply.code == 403


def test_forged_token_is_anonymous(server: Server) -> None:
    _user(server)
    token = server.login("alice", "secret")
    payload, stamp, signature = token.rsplit(".", 2)
    forged = payload.replace("alice", "root") + "." + stamp + "." + signature
    assert server.client.get("/+api", headers=server.devpi_auth("root", forged)).json[
        "result"]["authstatus"][0] == "noauth"


def test_token_of_a_deleted_user_stops_working(server: Server) -> None:
    auth = _user(server)
    assert server.client.request("DELETE", "/alice", headers=auth).code == 200
    _user(server, "bob")
    assert server.client.get("/+api", headers=auth).json["result"]["authstatus"][0] == "noauth"


# -- users -------------------------------------------------------------------------


def test_create_user_returns_201_and_its_config(server: Server) -> None:
    reply = server.client.request("PUT", "/alice", {"password": "x", "email": "a@example.com",
                                                     "title": "", "custom_data": {"k": [1]}})
    assert reply.code == 201
    result = reply.json["result"]
    assert reply.json["type"] == "userconfig"
    assert result["username"] == "alice"
    assert result["email"] == "a@example.com"
    assert "title" not in result
    assert result["custom_data"] == {"k": [1]}
    assert result["indexes"] == {}
    assert result["created"].endswith("Z")
    assert "pwhash" not in result and "password" not in result


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/root", {"password": "x"}, 409, "user already exists"),
    ("/alice", {"email": "a@b"}, 400, "password needs to be set"),
    ("/alice", {"password": "x", "foo": 1}, 400, "Unknown keys in user config: foo"),
    ("/a:b", {"password": "x"}, 400, "username 'a:b' contains characters that aren't allowed. "
                                     "Any ascii symbol besides -.@_ is blocked."),
    ("/alice", ["password"], 400, "Bad request: expected a JSON object"),
])
def test_create_user_refusals_write_nothing(server: Server, path: str, body: object, status: int,
                                            message: str) -> None:
    reply = server.client.request("PUT", path, body)
    assert (reply.code, reply.json) == (status, {"message": message})
    assert server.storage.serial == 0


def test_create_user_with_bad_json_is_400(server: Server) -> None:
    reply = server.client.request("PUT", "/alice", raw=b"\xff\xfe{")
    assert reply.code == 400
    assert reply.json == {"message": "Bad request: could not decode json"}


def test_non_ascii_user_names_are_allowed(server: Server) -> None:
    assert server.client.request("PUT", "/f%C3%B6%C3%B6", {"password": "x"}).code == 201
    assert server.client.get("/f%C3%B6%C3%B6").json["result"]["username"] == "föö"


def test_get_unknown_user_is_404(server: Server) -> None:
    reply = server.client.get("/ghost")
    assert (reply.code, reply.json) == (404, {"message": "no user 'ghost'"})


def test_list_users_includes_their_indexes(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {"bases": "root/pypi"}, headers=auth)
    result = server.client.get("/").json["result"]
    assert sorted(result) == ["alice", "root"]
    assert result["alice"]["indexes"]["dev"]["bases"] == ["root/pypi"]
    assert result["root"]["indexes"]["pypi"]["type"] == "mirror"


def test_patch_user_ignores_keys_it_does_not_manage(server: Server) -> None:
    auth = _user(server, email="a@x")
    whole = server.client.get("/alice").json["result"]
    whole.update(email="new@x", indexes={"bogus": {}}, username="mallory")
    reply = server.client.request("PATCH", "/alice", whole, headers=auth)
    assert (reply.code, reply.json) == (200, {"message": "user updated"})
    result = server.client.get("/alice").json["result"]
    assert result["email"] == "new@x"
    assert result["username"] == "alice"
    assert result["indexes"] == {}
    assert result["modified"].endswith("Z")


def test_patch_user_with_empty_value_removes_the_key(server: Server) -> None:
    auth = _user(server, email="a@x", title="boss")
    server.client.request("PATCH", "/alice", {"title": ""}, headers=auth)
    assert "title" not in server.client.get("/alice").json["result"]


def test_patch_password_returns_a_new_token_and_old_password_fails(server: Server) -> None:
    auth = _user(server)
    whole = server.client.get("/alice").json["result"]
    whole["password"] = "changed"
    reply = server.client.request("PATCH", "/alice", whole, headers=auth)
    assert reply.code == 200
    assert reply.json["type"] == "userpassword"
    assert reply.json["message"] == "user updated, new proxy auth"
    token = reply.json["result"]["password"]
    assert server.client.get("/+api", headers=server.devpi_auth("alice", token)).json[
        "result"]["authstatus"][0] == "ok"
    assert server.client.request("POST", "/+login", {"user": "alice", "password": "secret"}).code == 401
    assert server.login("alice", "changed")


def test_user_cannot_modify_another_user(server: Server) -> None:
    _user(server, "bob")
    auth = _user(server)
    reply = server.client.request("PATCH", "/bob", {"email": "x@y"}, headers=auth)
    assert (reply.code, reply.json) == (403, {"message": "no permission to modify user bob"})
    reply = server.client.request("PATCH", "/bob", {"password": "p"}, headers=auth)
    assert (reply.code, reply.json) == (403, {"message": "no permission to change password for user bob"})


def test_root_may_modify_any_user(server: Server) -> None:
    _user(server)
    root = server.devpi_auth("root", server.login("root", ""))
    assert server.client.request("PATCH", "/alice", {"email": "r@x"}, headers=root).code == 200


def test_patch_unknown_user_is_404(server: Server) -> None:
    root = server.devpi_auth("root", server.login("root", ""))
    assert server.client.request("PATCH", "/ghost", {"email": "r@x"}, headers=root).code == 404


def test_delete_user_deletes_its_indexes(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    reply = server.client.request("DELETE", "/alice", headers=auth)
    assert (reply.code, reply.json) == (200, {"message": "user 'alice' deleted"})
    assert server.client.get("/alice").code == 404
    assert server.client.get("/alice/dev").code == 404


def test_delete_user_with_non_volatile_index_is_refused(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/prod", {"volatile": "False"}, headers=auth)
    reply = server.client.request("DELETE", "/alice", headers=auth)
    assert (reply.code, reply.json) == (403, {"message": "user 'alice' has non-volatile index: prod"})
    assert server.client.get("/alice/prod").code == 200


def test_nobody_may_delete_root(server: Server) -> None:
    root = server.devpi_auth("root", server.login("root", ""))
    assert server.client.request("DELETE", "/root", headers=root).code == 403


def test_anonymous_cannot_delete_users(server: Server) -> None:
    _user(server)
    assert server.client.request("DELETE", "/alice").code == 403
    assert server.client.get("/alice").code == 200


# -- indexes -----------------------------------------------------------------------


def test_create_index_with_devpi_client_strings(server: Server) -> None:
    auth = _user(server)
    reply = server.client.request(
        "PUT", "/alice/stable", {"bases": "root/pypi", "volatile": "False"}, headers=auth)
    assert reply.code == 200
    assert reply.json == {"type": "indexconfig", "result": {
        "type": "stage", "volatile": False, "bases": ["root/pypi"], "acl_upload": ["alice"],
        "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": [],
        "mirror_whitelist_inheritance": "intersection"}}


def test_devpi_7_inheritance_rules_are_kept_as_the_whitelist(server: Server) -> None:
    auth = _user(server)
    reply = server.client.request("PUT", "/alice/dev", {
        "bases": "root/pypi", "project_inheritance_rules": ["allow all"],
        "trust_inheritance_rules_from": "type:not remote"}, headers=auth)
    assert reply.code == 200, reply.body
    shown = reply.json["result"]
    assert (shown["mirror_whitelist"], shown["mirror_whitelist_inheritance"]) == (["*"], "union")
    assert "project_inheritance_rules" not in shown
    reply = server.client.request(
        "PATCH", "/alice/dev", ["project_inheritance_rules+=block type:remote if local_exists"],
        headers=auth)
    assert reply.code == 400
    assert reply.json["message"] == (
        "Unknown value ['allow all', 'block type:remote if local_exists'] for "
        "project_inheritance_rules, must be ['allow all'] or ['block type:remote if local_exists'].")
    assert server.client.get("/alice/dev").json["result"]["mirror_whitelist"] == ["*"]


def test_project_config_of_devpi_7_is_a_whitelist_entry(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {"bases": "root/pypi"}, headers=auth)
    assert server.client.request("PATCH", "/alice/dev/Some_Pkg", ["inheritance_rules=allow all"]
                                 ).code == 403  # anonymous
    assert server.client.request("PATCH", "/alice/dev/Some_Pkg", ["inheritance_rules=deny"],
                                 headers=auth).code == 400
    assert server.client.request("PATCH", "/root/pypi/six", ["inheritance_rules=allow all"],
                                 headers=server.devpi_auth("root", server.login("root", ""))
                                 ).code == 400
    assert server.client.get("/alice/dev").json["result"]["mirror_whitelist"] == []
    reply = server.client.request("PATCH", "/alice/dev/Some_Pkg", ["inheritance_rules=allow all"],
                                  headers=auth)
    assert reply.json == {"type": "projectconfig", "result": {"inheritance_rules": ["allow all"]}}
    assert server.client.get("/alice/dev").json["result"]["mirror_whitelist"] == ["some-pkg"]


def test_project_view_answers_result_versions_1_and_2(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {"mirror_whitelist": "pkg"}, headers=auth)
    server.client.request("POST", "/alice/dev/", raw=b":action=submit&name=pkg&version=1.0",
                          headers={**auth, "Content-Type": ["application/x-www-form-urlencoded"]})
    v1 = server.client.get("/alice/dev/pkg")
    assert v1.json["type"] == "projectconfig" and list(v1.json["result"]) == ["1.0"]
    v2 = server.client.get("/alice/dev/pkg?v=2")
    assert v2.json == {"type": "projectconfig_v2", "result": {
        "config": {"inheritance_rules": ["allow all"]}, "versions": v1.json["result"],
        "inheritance_info": {"has_project_from_remote": "false",
                             "index_bases": {"alice/dev": []}, "traversal_infos": [
                                 {"action": "traversed", "name": "alice/dev",
                                  "has_project": "true"}]}}}
    bad = server.client.get("/alice/dev/pkg?v=3")
    assert (bad.code, bad.json["message"]) == (
        400, "The requested result version must be 1 to 2, got '3'")


def test_get_index_lists_projects_unless_no_projects(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    assert server.client.get("/alice/dev").json["result"]["projects"] == []
    assert "projects" not in server.client.get("/alice/dev?no_projects=").json["result"]


@pytest.mark.parametrize(("body", "message"), [
    ({"bases": "nope/x"}, "base index 'nope/x' does not exist"),
    ({"bases": "/a/b/c"}, "invalid base index spec: '/a/b/c'"),
    ({"foo": 1}, "indexconfig got unexpected keyword arguments: foo=1"),
    ({"type": "foo"}, "unknown index type 'foo'"),
    ({"type": "mirror", "mirror_url": "ftp://x"}, "'mirror_url' option must be a URL."),
    ({"volatile": "maybe"}, "Unknown boolean value 'maybe'."),
])
def test_create_index_validation_errors_write_nothing(server: Server, body: dict, message: str) -> None:
    auth = _user(server)
    serial = server.storage.serial
    reply = server.client.request("PUT", "/alice/dev", body, headers=auth)
    assert (reply.code, reply.json) == (400, {"message": message})
    assert server.storage.serial == serial
    assert server.client.get("/alice/dev").code == 404


def test_create_index_bad_name_is_400(server: Server) -> None:
    auth = _user(server)
    reply = server.client.request("PUT", "/alice/d%3Ae", {}, headers=auth)
    assert reply.code == 400
    assert reply.json["message"].startswith("indexname 'd:e' contains characters")


def test_create_index_twice_is_409(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    reply = server.client.request("PUT", "/alice/dev", {}, headers=auth)
    assert (reply.code, reply.json) == (409, {"message": "index 'alice/dev' exists"})


def test_create_index_for_missing_user_is_404(server: Server) -> None:
    root = server.devpi_auth("root", server.login("root", ""))
    reply = server.client.request("PUT", "/ghost/dev", {}, headers=root)
    assert (reply.code, reply.json) == (404, {"message": "no user 'ghost'"})


def test_create_index_for_another_user_is_403(server: Server) -> None:
    _user(server, "bob")
    auth = _user(server)
    reply = server.client.request("PUT", "/bob/dev", {}, headers=auth)
    assert (reply.code, reply.json) == (403, {"message": "no permission to create index bob/dev"})


def test_unknown_index_is_404_with_devpi_message(server: Server) -> None:
    reply = server.client.get("/root/xyz")
    assert (reply.code, reply.json) == (404, {"message": "The stage root/xyz could not be found."})


def test_patch_index_key_value_list(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {"bases": "root/pypi"}, headers=auth)
    reply = server.client.request(
        "PATCH", "/alice/dev", ["volatile=False", "acl_upload+=bob", "bases-=root/pypi"], headers=auth)
    assert reply.code == 200
    result = reply.json["result"]
    assert (result["volatile"], result["acl_upload"], result["bases"]) == (False, ["alice", "bob"], [])


def test_patch_index_dict_merges_and_accepts_a_get_envelope(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {"title": "Dev"}, headers=auth)
    envelope = server.client.get("/alice/dev").json
    envelope["result"]["description"] = "daily builds"
    reply = server.client.request("PATCH", "/alice/dev", envelope, headers=auth)
    assert reply.code == 200
    assert reply.json["result"]["title"] == "Dev"
    assert reply.json["result"]["description"] == "daily builds"
    assert "projects" not in reply.json["result"]


def test_patch_index_type_change_is_refused(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    reply = server.client.request("PATCH", "/alice/dev", {"type": "mirror"}, headers=auth)
    assert (reply.code, reply.json) == (400, {"message": "the 'type' of an index can't be changed"})


def test_patch_index_error_on_noop(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    serial = server.storage.serial
    reply = server.client.request("PATCH", "/alice/dev?error_on_noop", ["volatile=True"], headers=auth)
    assert (reply.code, reply.json) == (400, {"message": "The requested modifications resulted in no changes"})
    assert server.client.request("PATCH", "/alice/dev", ["volatile=True"], headers=auth).code == 200
    assert server.storage.serial == serial


def test_patch_index_bases_cycle_is_refused(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/a", {}, headers=auth)
    server.client.request("PUT", "/alice/b", {"bases": "alice/a"}, headers=auth)
    reply = server.client.request("PATCH", "/alice/a", ["bases=alice/b"], headers=auth)
    assert reply.code == 400
    assert "inherit from itself" in reply.json["message"]
    assert server.client.get("/alice/a").json["result"]["bases"] == []


def test_patch_index_by_another_user_is_403(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    bob = _user(server, "bob")
    assert server.client.request("PATCH", "/alice/dev", ["title=x"], headers=bob).code == 403


def test_delete_index_answers_201(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/dev", {}, headers=auth)
    reply = server.client.request("DELETE", "/alice/dev", headers=auth)
    assert (reply.code, reply.json) == (201, {"message": "index alice/dev deleted"})
    assert server.client.get("/alice/dev").code == 404


def test_delete_non_volatile_index_is_refused(server: Server) -> None:
    auth = _user(server)
    server.client.request("PUT", "/alice/prod", {"volatile": False}, headers=auth)
    reply = server.client.request("DELETE", "/alice/prod", headers=auth)
    assert (reply.code, reply.json) == (403, {"message": "index alice/prod non-volatile, cannot delete"})


# -- --restrict-modify -------------------------------------------------------------


def test_restrict_modify_limits_user_and_index_management(tmp_path: Path) -> None:
    server = make_server(tmp_path, restrict_modify="root,:admins")
    assert server.client.request("PUT", "/alice", {"password": "x"}).code == 403
    root = server.devpi_auth("root", server.login("root", ""))
    assert server.client.request("PUT", "/alice", {"password": "secret"}, headers=root).code == 201
    alice = server.devpi_auth("alice", server.login("alice", "secret"))
    assert server.client.request("PUT", "/alice/dev", {}, headers=alice).code == 403
    assert server.client.request("PUT", "/alice/dev", {}, headers=root).code == 200
    # a user may still change its own password, as devpi-client's "passwd" sends it
    whole = server.client.get("/alice").json["result"]
    whole["password"] = "new"
    assert server.client.request("PATCH", "/alice", whole, headers=alice).code == 200
    assert server.client.request("PATCH", "/alice", {"email": "x@y"}, headers=alice).code == 403


# -- body limits -------------------------------------------------------------------


def test_oversized_json_body_is_413_and_writes_nothing(server: Server) -> None:
    body = b'{"password": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    reply = server.client.request("PUT", "/alice", raw=body)
    assert reply.code == 413
    assert "larger than" in reply.json["message"]
    assert server.storage.serial == 0
    assert server.client.get("/+api").code == 200


def test_basic_auth_header_with_utf8_password(server: Server) -> None:
    _user(server, password="pässwörd")
    encoded = base64.b64encode("alice:pässwörd".encode()).decode()
    reply = server.client.get("/+api", headers={"Authorization": [f"Basic {encoded}"]})
    assert reply.json["result"]["authstatus"][0] == "ok"



def test_passwords_in_mirror_urls_are_never_shown(server: Server) -> None:
    auth = _user(server)
    body = {"type": "mirror", "mirror_url": "https://bob:s3cret@mirror.example/simple/"}
    reply = server.client.request("PUT", "/alice/up", body, headers=auth)
    assert reply.code == 200 and "s3cret" not in reply.body.decode()
    assert reply.json["result"]["mirror_url"] == "https://bob:****@mirror.example/simple/"
    for path in ("/alice/up", "/alice", "/"):
        shown = server.client.get(path).body.decode()
        assert "s3cret" not in shown and "bob:****@mirror.example" in shown, path


def test_acl_read_takes_users_groups_and_the_special_principals(server: Server) -> None:
    auth = _user(server)
    _user(server, "bob")
    reply = server.client.request("PUT", "/alice/private", {"acl_read": "bob,:devs,:authenticated:"},
                                  headers=auth)
    assert reply.code == 200, reply.body
    assert reply.json["result"]["acl_read"] == ["bob", ":devs", ":AUTHENTICATED:"]
    reply = server.client.request("PATCH", "/alice/private", ["acl_read-=bob"], headers=auth)
    assert reply.code == 200, reply.body
    assert reply.json["result"]["acl_read"] == [":devs", ":AUTHENTICATED:"]
    mirror = server.client.request("PUT", "/alice/mirror", {
        "type": "mirror", "mirror_url": "https://pypi.org/simple/", "acl_read": "alice"},
        headers=auth)
    assert mirror.code == 200, mirror.body
    assert mirror.json["result"]["acl_read"] == ["alice"]


@pytest.mark.parametrize("value, message", [
    ("nobody", "acl_read names unknown users: nobody"),
    ("bob,:", "':' alone names no group"),
])
def test_acl_read_refuses_unknown_users_and_writes_nothing(server: Server, value: str,
                                                            message: str) -> None:
    auth = _user(server)
    _user(server, "bob")
    reply = server.client.request("PUT", "/alice/private", {"acl_read": value}, headers=auth)
    assert reply.code == 400 and message in reply.json["message"], reply.body
    assert server.client.request("GET", "/alice/private").code == 404
    assert server.client.request("PUT", "/alice/dev", {}, headers=auth).code == 200
    reply = server.client.request("PATCH", "/alice/dev", [f"acl_read={value}"], headers=auth)
    assert reply.code == 400 and message in reply.json["message"], reply.body
    assert "acl_read" not in server.client.request("GET", "/alice/dev").json["result"]
