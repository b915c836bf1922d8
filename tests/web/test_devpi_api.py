"""devpi-server 7's spellings in requests, answers in either mode (``--devpi-api``),
devpi 7's ``inheritance_info`` and the paged project list of ``GET /USER/INDEX``, in
memory (the comparison with the real devpi-server is tests/e2e/test_devpi_api_compat.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import Server, make_server

FORM = {"Content-Type": ["application/x-www-form-urlencoded"]}
UPSTREAM = "http://127.0.0.1:9/simple/"


@pytest.fixture(params=[6, 7])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    made = make_server(tmp_path, devpi_api=request.param)
    yield made
    made.storage.close()


def _root(server: Server) -> dict[str, Any]:
    return server.devpi_auth("root", server.login("root", ""))


def _api(server: Server) -> int:
    return 7 if "projectconfig-v2" in server.client.get("/+api").json["result"]["features"] else 6


def test_both_spellings_are_accepted_and_answered_in_the_mode(server: Server) -> None:
    auth, api = _root(server), _api(server)
    seven = server.client.request("PUT", "/root/m7", {
        "type": "remote", "remote_url": UPSTREAM, "remote_refresh_delay": "60",
        "remote_no_project_list": "yes", "remote_use_external_urls": True,
        "remote_web_url_fmt": "x/{name}"}, headers=auth)
    six = server.client.request("PUT", "/root/m6", {
        "type": "mirror", "mirror_url": UPSTREAM, "mirror_cache_expiry": 60,
        "mirror_no_project_list": True, "mirror_use_external_urls": "true",
        "mirror_web_url_fmt": "x/{name}", "mirror_provides_core_metadata": "yes"}, headers=auth)
    assert seven.code == six.code == 200, (seven.body, six.body)
    if api == 6:
        assert seven.json["result"] == {
            "type": "mirror", "volatile": True, "mirror_url": UPSTREAM, "mirror_cache_expiry": 60,
            "mirror_no_project_list": True, "mirror_use_external_urls": True,
            "mirror_web_url_fmt": "x/{name}"}
        assert six.json["result"] == {**seven.json["result"], "mirror_provides_core_metadata": True}
    else:  # devpi 7 has no mirror_provides_core_metadata: left out of its answers
        assert seven.json["result"] == six.json["result"] == {
            "type": "remote", "volatile": True, "remote_url": UPSTREAM, "remote_refresh_delay": 60,
            "remote_no_project_list": True, "remote_use_external_urls": True,
            "remote_web_url_fmt": "x/{name}"}
    local = server.client.request("PUT", "/root/s", {
        "type": "local", "bases": "root/m7", "project_inheritance_rules": "allow all",
        "trust_inheritance_rules_from": "type:not remote"}, headers=auth)
    stage = server.client.request("PUT", "/root/t", {"type": "stage", "bases": "root/m6"},
                                  headers=auth)
    assert local.code == stage.code == 200
    if api == 6:
        assert local.json["result"]["type"] == "stage"
        assert local.json["result"]["mirror_whitelist"] == ["*"]
        assert local.json["result"]["mirror_whitelist_inheritance"] == "union"
        assert stage.json["result"]["mirror_whitelist"] == []
    else:
        assert local.json["result"] == {
            "type": "local", "volatile": True, "bases": ["root/m7"], "acl_upload": ["root"],
            "acl_toxresult_upload": [":ANONYMOUS:"], "project_inheritance_rules": ["allow all"],
            "trust_inheritance_rules_from": "type:not remote"}
        assert stage.json["result"]["project_inheritance_rules"] == [
            "block type:remote if local_exists"]
        assert "trust_inheritance_rules_from" not in stage.json["result"]
    bad = server.client.request("PATCH", "/root/m6", ["remote_refresh_delay=soon"], headers=auth)
    assert bad.code == 400 and "'remote_refresh_delay' option" in bad.json["message"]
    # PATCH items in devpi 7's spelling change the stored devpi 6 keys
    patched = server.client.request("PATCH", "/root/m6", ["remote_refresh_delay=5"], headers=auth)
    assert patched.code == 200, patched.body
    shown = server.client.get("/root/m6?no_projects=").json["result"]
    assert shown["mirror_cache_expiry" if api == 6 else "remote_refresh_delay"] == 5
    user = server.client.get("/root").json["result"]["indexes"]
    assert user["m7"]["type"] == ("mirror" if api == 6 else "remote")


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "remote", "remote_url": "ftp://x"}, "'remote_url' option must be a URL"),
    ({"type": "mirror", "mirror_url": "ftp://x"}, "'mirror_url' option must be a URL"),
    ({"type": "remote", "remote_url": UPSTREAM, "remote_refresh_delay": "soon"},
     "'remote_refresh_delay' option must be an integer"),
    ({"type": "remote", "remote_url": UPSTREAM, "mirror_url": "http://other/"}, "remote_url"),
    ({"type": "remote", "remote_url": UPSTREAM, "remote_no_project_list": "maybe"}, "maybe"),
    ({"type": "local", "project_inheritance_rules": "allow some"}, "project_inheritance_rules"),
    ({"type": "local", "trust_inheritance_rules_from": "everyone"},
     "trust_inheritance_rules_from"),
    ({"type": "local", "remote_frobnicate": "1"}, "remote_frobnicate"),
    ({"type": "faraway"}, "faraway"),
])
def test_bad_values_in_either_spelling_are_refused_naming_the_field(
        server: Server, body: dict[str, Any], field: str) -> None:
    auth = _root(server)
    before = server.storage.serial
    reply = server.client.request("PUT", "/root/bad", body, headers=auth)
    assert reply.code == 400 and field in reply.json["message"], reply.body
    assert server.storage.serial == before
    assert server.client.get("/root/bad").code == 404


def test_status_and_api_speak_the_mode(server: Server) -> None:
    api = _api(server)
    status = server.client.get("/+status").json["result"]
    assert status["role"] == ("MASTER" if api == 6 else "PRIMARY")
    assert status["versioninfo"]["devpi-server"] == ("6.20.3" if api == 6 else "7.0.0b4")
    features = server.client.get("/+api").json["result"]["features"]
    assert ("projectconfig-v2" in features) == (api == 7)
    assert "server-keyvalue-parsing" in features


def _register(server: Server, auth: dict[str, Any], index: str, name: str) -> None:
    reply = server.client.request("POST", f"/{index}/",
                                  raw=f":action=submit&name={name}&version=1.0".encode(),
                                  headers={**auth, **FORM})
    assert reply.code == 200, reply.body


def test_inheritance_info_shows_the_walk_and_the_whitelist(server: Server) -> None:
    auth = _root(server)
    server.client.request("PUT", "/root/m", {"type": "mirror", "mirror_url": UPSTREAM,
                                             "mirror_no_project_list": True}, headers=auth)
    server.client.request("PUT", "/root/a", {"bases": "root/m"}, headers=auth)
    server.client.request("PUT", "/root/b", {"bases": "root/a,root/m"}, headers=auth)
    _register(server, auth, "root/a", "pkg")
    info = server.client.get("/root/b/pkg?v=2").json["result"]["inheritance_info"]
    assert info["index_bases"] == {"root/a": ["root/m"], "root/b": ["root/a", "root/m"],
                                   "root/m": []}
    assert info["has_project_from_remote"] == "unknown"  # as devpi 7: a mirror is in the walk
    assert [(i["action"], i["name"], i["has_project"]) for i in info["traversal_infos"]] == [
        ("traversed", "root/b", "false"), ("traversed", "root/a", "true"),
        ("blocked", "root/m", "notset")]
    assert info["traversal_infos"][2]["reason"] == (
        "package 'pkg' located in root/a blocks releases from index root/m")
    allowed = server.client.request("PATCH", "/root/b/pkg", ["inheritance_rules=allow all"],
                                    headers=auth)
    assert allowed.code == 200, allowed.body
    info = server.client.get("/root/b/pkg?v=2").json["result"]["inheritance_info"]
    assert info["traversal_infos"][2]["action"] == "allowed"
    assert info["traversal_infos"][2]["reason"] == (
        "Direct access to package 'pkg', allowing root/m")
    named = {"name": "pkg"} if _api(server) == 7 else {}  # devpi 7 names a project it holds
    assert allowed.json["result"] == {"inheritance_rules": ["allow all"], **named}
    assert server.client.get("/root/a/pkg?v=2").json["result"]["config"] == named
    assert server.client.get("/root/b/pkg?v=2").json["result"]["config"] == {
        "inheritance_rules": ["allow all"], **named}


def test_project_list_pages_with_q_limit_offset_and_total(server: Server) -> None:
    auth = _root(server)
    server.client.request("PUT", "/root/dev", {}, headers=auth)
    names = [f"pkg-{i:03d}" for i in range(30)] + ["Other_Thing", "zeta"]
    for name in names:
        _register(server, auth, "root/dev", name)
    whole = server.client.get("/root/dev").json["result"]
    assert "total" not in whole and len(whole["projects"]) == 32

    def page(query: str) -> tuple[list[str], int]:
        reply = server.client.get(f"/root/dev?{query}")
        assert reply.code == 200, reply.body
        return reply.json["result"]["projects"], reply.json["result"]["total"]

    ordered = ["other-thing", *(f"pkg-{i:03d}" for i in range(30)), "zeta"]  # name order
    assert page("limit=5") == (ordered[:5], 32)
    assert page("limit=5&offset=29") == (ordered[29:], 32)
    assert page("offset=0&limit=100") == (ordered, 32)
    assert page("q=PKG-01&limit=4") == ([f"pkg-01{i}" for i in range(4)], 10)
    assert page("q=other.thing") == (["other-thing"], 1)
    assert page("q=nothing-like-it") == ([], 0)
    assert page("offset=1000") == ([], 32)
    assert page("total=1") == (ordered, 32)  # the proposal's spelling (devpi/devpi#1122)
    # the kept list follows the index's writes, and only reads again after them
    server.client.request("PUT", "/root/elsewhere", {}, headers=auth)
    _register(server, auth, "root/elsewhere", "elsewhere-pkg")
    assert page("limit=1") == (ordered[:1], 32)
    _register(server, auth, "root/dev", "aaa-new")
    assert page("limit=2") == (["aaa-new", "other-thing"], 33)
    deleted = server.client.request("DELETE", "/root/dev/zeta", headers=auth)
    assert deleted.code == 200, deleted.body
    assert page("q=zeta") == ([], 0)


@pytest.mark.parametrize(("query", "field"), [
    ("limit=0", "limit"), ("limit=-1", "limit"), ("limit=10001", "limit"), ("limit=ten", "limit"),
    ("offset=-5", "offset"), ("offset=1e3", "offset"), ("offset=99999999999", "offset"),
    ("q=" + "x" * 201, "q"), ("limit=1&limit=2", "limit"), ("q=%ff", "q"),
    ("limit=%EF%BC%91", "limit"),  # a full-width digit one
    ("total=maybe", "total"), ("total=0", "total"),
])
def test_bad_paging_is_refused_naming_the_field(server: Server, query: str, field: str) -> None:
    reply = server.client.get(f"/root/pypi?{query}")
    assert reply.code == 400, reply.body
    assert reply.json["message"].startswith(field), reply.json
