"""Supply-chain policy over HTTP (issue 23): index keys, filtered simple pages and
project JSON, ?policy, blocks, 403 on downloads, nothing stored on bad input."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devpi_twisted.model.policy import iso_date
from tests.support import result_of
from tests.web.test_ops_routes import metric
from tests.web.conftest import Server

JSON = "application/vnd.pypi.simple.v1+json"
DAY = 86400


def _mirror_page(server: Server, project: str, files: dict[str, float | None]) -> None:
    """root/pypi's stored page of ``project``: filename -> upload time (None: none given)."""
    links = []
    for i, (filename, uploaded) in enumerate(files.items()):
        sha = f"{i:x}" * 64
        links.append({"filename": filename, "sha256": sha[:64],
                      "entrypath": f"root/pypi/+f/{sha[:3]}/{sha[3:16]}/{filename}",
                      "upload_time": iso_date(uploaded) if uploaded else None,
                      **({"first_seen": iso_date(time.time() - 30 * DAY)} if not uploaded else {})})
    result_of(server.storage.write_mirror_project("root", "pypi", project,
                                                  {"links": links, "serial": 1}, {}))


def _root(server: Server) -> dict[str, Any]:
    return server.devpi_auth("root", server.login("root", ""))


def _files(server: Server, path: str) -> list[str]:
    reply = server.client.get(path, headers={"Accept": [JSON]})
    assert reply.code == 200, reply.body
    return [f["filename"] for f in reply.json["files"]]


def _setup(server: Server) -> dict[str, Any]:
    root = _root(server)
    now = time.time()
    _mirror_page(server, "pkg", {"pkg-1.0.tar.gz": now - 30 * DAY, "pkg-2.0.tar.gz": now - 3600,
                                 "pkg-1.5.tar.gz": None})
    _mirror_page(server, "other", {"other-1.0.tar.gz": now - 3600})
    reply = server.client.request("PUT", "/root/dev", {"bases": "root/pypi"}, headers=root)
    assert reply.code == 200, reply.body
    return root


def test_min_release_age_hides_young_mirrored_files_on_inheriting_indexes(server: Server) -> None:
    root = _setup(server)
    assert "pkg-2.0.tar.gz" in _files(server, "/root/dev/+simple/pkg/")
    reply = server.client.request("PATCH", "/root/dev", ["min_release_age=7d",
                                                         "min_release_age_exempt=Other"],
                                  headers=root)
    assert reply.code == 200, reply.body
    assert reply.json["result"]["min_release_age"] == "7d"
    assert reply.json["result"]["min_release_age_exempt"] == ["other"]
    assert _files(server, "/root/dev/+simple/pkg/") == ["pkg-1.0.tar.gz", "pkg-1.5.tar.gz"]
    page = server.client.get("/root/dev/+simple/pkg/", headers={"Accept": [JSON]}).json
    assert "2.0" not in page["versions"]
    assert _files(server, "/root/dev/+simple/other/") == ["other-1.0.tar.gz"]  # exempt
    html = server.client.get("/root/dev/+simple/pkg/", headers={"Accept": ["text/html"]}).body
    assert b"pkg-2.0" not in html
    versions = server.client.get("/root/dev/pkg", headers={"Accept": ["application/json"]})
    assert set(versions.json["result"]) == {"1.0", "1.5"}
    policy = server.client.get("/root/dev/pkg?policy", headers={"Accept": ["application/json"]})
    assert policy.code == 200
    [held] = policy.json["result"]
    assert held["version"] == "2.0" and held["rules"][0]["rule"] == "age"
    assert held["rules"][0]["detail"].startswith("age until ")
    # the mirror itself is not affected: its own setting is not set
    assert "pkg-2.0.tar.gz" in _files(server, "/root/pypi/+simple/pkg/")


def test_age_on_the_mirror_refuses_downloads_with_the_release_date(server: Server) -> None:
    root = _setup(server)
    reply = server.client.request("PATCH", "/root/pypi", ["min_release_age=36h"], headers=root)
    assert reply.code == 200, reply.body
    assert "pkg-2.0.tar.gz" not in _files(server, "/root/dev/+simple/pkg/")  # inherited
    relpath = [f for f in result_of(server.storage.get_mirror_project("root", "pypi", "pkg"))
               .value["links"] if f["filename"] == "pkg-2.0.tar.gz"][0]["entrypath"]
    reply = server.client.get("/" + relpath)
    assert reply.code == 403
    assert b"age until 20" in reply.body
    metrics = server.client.get("/+metrics").body.decode()
    assert metric(metrics, "devpi_policy_hidden_requests_total", rule="age") >= 2


def test_constraints_filter_versions_and_projects(server: Server) -> None:
    root = _setup(server)
    reply = server.client.request("PATCH", "/root/dev", {"constraints": ["pkg<2", "pkg!=1.5"]},
                                  headers=root)
    assert reply.code == 200, reply.body
    assert reply.json["result"]["constraints"] == ["pkg<2", "pkg!=1.5"]
    assert _files(server, "/root/dev/+simple/pkg/") == ["pkg-1.0.tar.gz"]
    assert _files(server, "/root/dev/+simple/other/") == []
    names = server.client.get("/root/dev/+simple/", headers={"Accept": [JSON]}).json
    assert [p["name"] for p in names["projects"]] == ["pkg"]
    reply = server.client.request("PATCH", "/root/dev", ["constraints+=*"], headers=root)
    assert reply.code == 200, reply.body
    assert _files(server, "/root/dev/+simple/other/") == ["other-1.0.tar.gz"]
    policy = server.client.get("/root/dev/pkg?policy", headers={"Accept": ["application/json"]})
    rules = {h["version"]: h["rules"][0]["detail"] for h in policy.json["result"]}
    assert rules == {"2.0": "constraint pkg<2, pkg!=1.5", "1.5": "constraint pkg<2, pkg!=1.5"}


@pytest.mark.parametrize("body, field", [
    (["min_release_age=7 days"], "min_release_age"),
    (["min_release_age=-1d"], "min_release_age"),
    ({"constraints": ["django>=>4"]}, "django>=>4"),
    ({"constraints": ["pkg; python_version<'3'"]}, "constraints"),
])
def test_bad_values_are_a_400_naming_the_field_and_store_nothing(
        server: Server, body: Any, field: str) -> None:
    root = _setup(server)
    before = server.client.get("/root/dev").json["result"]
    reply = server.client.request("PATCH", "/root/dev", body, headers=root)
    assert reply.code == 400
    assert field in reply.json["message"]
    assert server.client.get("/root/dev").json["result"] == before
    reply = server.client.request("PUT", "/root/new", {"bases": "root/pypi",
                                                       **({"min_release_age": "x"})},
                                  headers=root)
    assert reply.code == 400 and "min_release_age" in reply.json["message"]
    assert server.client.get("/root/new").code == 404


def test_blocks_hide_refuse_and_unblock_restores(server: Server) -> None:
    root = _setup(server)
    reply = server.client.request("POST", "/root/pypi/+block",
                                  {"project": "Pkg", "version": "1.0", "reason": "CVE-1"},
                                  headers=root)
    assert reply.code == 200, reply.body
    assert "pkg-1.0.tar.gz" not in _files(server, "/root/dev/+simple/pkg/")
    assert "pkg-1.0.tar.gz" not in _files(server, "/root/pypi/+simple/pkg/")
    blocks = server.client.get("/root/pypi/+blocks").json["result"]
    assert blocks[0]["project"] == "pkg" and blocks[0]["by"] == "root"
    relpath = [f for f in result_of(server.storage.get_mirror_project("root", "pypi", "pkg"))
               .value["links"] if f["filename"] == "pkg-1.0.tar.gz"][0]["entrypath"]
    refused = server.client.get("/" + relpath)
    assert refused.code == 403 and b"CVE-1" in refused.body and b"blocked by root" in refused.body
    policy = server.client.get("/root/dev/pkg?policy", headers={"Accept": ["application/json"]})
    assert policy.json["result"][0]["rules"][0]["rule"] == "blocked"
    for bad in ({"project": "pkg"}, {"reason": "x"}, {"project": "pkg", "reason": "x", "x": 1},
                {"project": "pkg", "reason": 5}):
        reply = server.client.request("POST", "/root/pypi/+block", bad, headers=root)
        assert reply.code == 400, (bad, reply.body)
    assert len(server.client.get("/root/pypi/+blocks").json["result"]) == 1
    assert server.client.request("POST", "/root/pypi/+block", {"project": "pkg", "reason": "x"}
                                 ).code in (401, 403)
    reply = server.client.request("POST", "/root/pypi/+unblock",
                                  {"project": "pkg", "version": "1.0"}, headers=root)
    assert reply.code == 200, reply.body
    assert "pkg-1.0.tar.gz" in _files(server, "/root/dev/+simple/pkg/")
    assert server.client.get("/root/pypi/+blocks").json["result"] == []


def test_the_project_page_has_a_held_back_section(server: Server) -> None:
    root = _setup(server)
    page = server.client.get("/root/dev/pkg", headers={"Accept": ["text/html"]})
    assert page.code == 200 and b'id="held-back"' not in page.body
    reply = server.client.request("PATCH", "/root/dev", ["min_release_age=7d"], headers=root)
    assert reply.code == 200, reply.body
    page = server.client.get("/root/dev/pkg", headers={"Accept": ["text/html"]})
    assert page.code == 200 and b'id="versions"' in page.body
    assert b'<h2 id="held-back-title">Held back</h2>' in page.body
    assert b"<strong>2.0</strong>: age until 20" in page.body


def test_a_cached_page_is_rebuilt_when_a_held_back_file_becomes_due(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from devpi_twisted.model import simple

    root = _setup(server)
    reply = server.client.request("PATCH", "/root/dev", ["min_release_age=2h"], headers=root)
    assert reply.code == 200, reply.body
    first = server.client.get("/root/dev/+simple/pkg/", headers={"Accept": [JSON]})
    assert "pkg-2.0.tar.gz" not in [f["filename"] for f in first.json["files"]]
    assert server.client.get("/root/dev/+simple/pkg/", headers={"Accept": [JSON]}).header(
        "ETag") == first.header("ETag")  # warm: the same page
    later = time.time() + 3601
    monkeypatch.setattr(simple, "time", types.SimpleNamespace(time=lambda: later))
    again = server.client.get("/root/dev/+simple/pkg/", headers={
        "Accept": [JSON], "If-None-Match": [first.header("ETag")]})
    assert again.code == 200  # not a 304: the content changed at the same serial
    assert "pkg-2.0.tar.gz" in [f["filename"] for f in again.json["files"]]


def test_constraints_apply_to_what_a_stage_inherits_not_to_its_own_uploads(
        server: Server) -> None:
    from tests.web.test_simple import _release

    root = _root(server)
    server.client.request("PUT", "/root/base", {}, headers=root)
    reply = server.client.request("PUT", "/root/dev", {"bases": "root/base",
                                                       "constraints": ["pkg-a<2"]}, headers=root)
    assert reply.code == 200, reply.body
    _release(server, "root/base", "Pkg_A", "1.0", "pkg_a-1.0.tar.gz", "a" * 64)
    _release(server, "root/base", "Pkg_A", "2.0", "pkg_a-2.0.tar.gz", "b" * 64)
    _release(server, "root/dev", "Pkg_A", "3.0", "pkg_a-3.0.tar.gz", "c" * 64)
    assert _files(server, "/root/dev/+simple/pkg-a/") == ["pkg_a-3.0.tar.gz", "pkg_a-1.0.tar.gz"]
    versions = server.client.get("/root/dev/pkg-a", headers={"Accept": ["application/json"]})
    assert set(versions.json["result"]) == {"1.0", "3.0"}
    assert len(_files(server, "/root/base/+simple/pkg-a/")) == 2  # the base is not constrained


def test_the_owner_blocks_on_its_index_others_may_not(server: Server) -> None:
    _setup(server)
    for user in ("alice", "bob"):
        assert server.client.request("PUT", f"/{user}", {"password": user}).code == 201
    alice = server.devpi_auth("alice", server.login("alice", "alice"))
    bob = server.devpi_auth("bob", server.login("bob", "bob"))
    reply = server.client.request("PUT", "/alice/dev", {"bases": "root/pypi"}, headers=alice)
    assert reply.code == 200, reply.body
    body = {"project": "pkg", "filename": "pkg-1.0.tar.gz", "reason": "not for us"}
    assert server.client.request("POST", "/alice/dev/+block", body, headers=bob).code == 403
    assert server.client.request("POST", "/root/pypi/+block", body, headers=alice).code == 403
    reply = server.client.request("POST", "/alice/dev/+block", body, headers=alice)
    assert reply.code == 200, reply.body
    assert _files(server, "/alice/dev/+simple/pkg/") == ["pkg-2.0.tar.gz", "pkg-1.5.tar.gz"]
    assert "pkg-1.0.tar.gz" in _files(server, "/root/dev/+simple/pkg/")  # only alice's view
    assert server.client.request("POST", "/alice/dev/+unblock", {"project": "pkg"},
                                 headers=alice).code == 404  # no block of the whole project
    assert server.client.request("POST", "/alice/dev/+unblock", body, headers=bob).code == 403


def test_blocks_are_set_through_block_only_never_in_the_index_config(server: Server) -> None:
    """Who blocked, when and why is recorded by +block: a config may carry the blocks
    back unchanged (devpi-client sends what it read) but never write or forge them."""
    root = _setup(server)
    body = {"project": "pkg", "version": "1.0", "reason": "CVE-1"}
    assert server.client.request("POST", "/root/pypi/+block", body, headers=root).code == 200
    config = server.client.get("/root/pypi", headers={"Accept": ["application/json"]}).json["result"]
    forged = [{**config["blocks"][0], "by": "alice"}]
    serial = server.storage.serial
    for method, path, change in (("PATCH", "/root/pypi", {"blocks": forged}),
                                 ("PATCH", "/root/pypi", {"blocks": []}),
                                 ("PUT", "/root/new", {"type": "stage", "blocks": forged})):
        reply = server.client.request(method, path, change, headers=root)
        assert reply.code == 400 and "+block" in reply.json["message"], (path, reply.body)
    assert server.storage.serial == serial  # nothing written
    kept = {**config, "title": "PyPI"}  # the whole config read back, blocks unchanged
    assert server.client.request("PATCH", "/root/pypi", kept, headers=root).code == 200
    assert server.client.get("/root/pypi/+blocks").json["result"][0]["by"] == "root"
