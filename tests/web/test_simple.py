"""Simple pages in memory: negotiation, inheritance, redirects, caching headers."""

from __future__ import annotations

from typing import Any

from tests.support import result_of
from tests.web.conftest import Server

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def _release(server: Server, index: str, name: str, version: str, filename: str, sha: str) -> None:
    user, idx = index.split("/")
    relpath = f"{index}/+f/{sha[:3]}/{sha[3:16]}/{filename}"
    data = {"name": name, "version": version, "requires_python": ">=3.8",
            "+elinks": [{"rel": "releasefile", "entrypath": relpath, "hashes": {"sha256": sha},
                         "size": 10, "upload_time": "2024-05-01T10:00:00.000000Z"}]}
    project = name.lower().replace("_", "-")
    existing = result_of(server.storage.get_versions(user, idx, project))
    serial = next((r.serial for r in existing if r.version == version), -1)
    if serial != -1:
        old = next(r.data.to_json() for r in existing if r.version == version)
        data["+elinks"] = old["+elinks"] + data["+elinks"]
    result_of(server.storage.write_release(user, idx, project, version, data,
                                           {relpath: {"project": project}}, serial))


def _layout(server: Server) -> dict[str, Any]:
    root = server.devpi_auth("root", server.login("root", ""))
    server.client.request("PUT", "/root/base", {}, headers=root)
    server.client.request("PUT", "/root/dev", {"bases": "root/base"}, headers=root)
    _release(server, "root/base", "Pkg_A", "1.0", "pkg_a-1.0.tar.gz", "a" * 64)
    _release(server, "root/dev", "Pkg_A", "2.0", "pkg_a-2.0.tar.gz", "b" * 64)
    _release(server, "root/dev", "Pkg_A", "1.0", "pkg_a-1.0.tar.gz", "c" * 64)  # shadows base's
    return root


def test_project_page_json_follows_bases_first_filename_wins(server: Server) -> None:
    _layout(server)
    reply = server.client.get("/root/dev/+simple/pkg-a/", headers={"Accept": [PIP_ACCEPT]})
    assert reply.code == 200
    assert reply.header("Content-Type") == JSON
    page = reply.json
    assert page["meta"]["api-version"] == "1.1"
    assert page["name"] == "pkg-a"
    files = {f["filename"]: f for f in page["files"]}
    assert files["pkg_a-1.0.tar.gz"]["hashes"] == {"sha256": "c" * 64}
    assert files["pkg_a-1.0.tar.gz"]["url"] == "../../../../root/dev/+f/ccc/ccccccccccccc/pkg_a-1.0.tar.gz"
    assert files["pkg_a-2.0.tar.gz"]["requires-python"] == ">=3.8"
    assert page["versions"] == ["1.0", "2.0"]
    assert server.client.get("/root/base/+simple/pkg-a/", headers={"Accept": [JSON]}).json[
        "files"][0]["hashes"] == {"sha256": "a" * 64}


def test_project_page_html_for_browsers_and_old_installers(server: Server) -> None:
    _layout(server)
    reply = server.client.get("/root/dev/+simple/pkg-a/", headers={"Accept": ["text/html"]})
    assert reply.header("Content-Type") == "text/html; charset=UTF-8"
    body = reply.body.decode()
    assert 'root/dev <a href="../../../../root/dev/+f/bbb/bbbbbbbbbbbbb/pkg_a-2.0.tar.gz#sha256=' in body
    assert 'data-requires-python="&gt;=3.8"' in body
    assert reply.header("Vary") == "Accept, Accept-Encoding"


def test_project_list_along_bases(server: Server) -> None:
    _layout(server)
    _release(server, "root/base", "only-base", "1", "only_base-1.tar.gz", "d" * 64)
    reply = server.client.get("/root/dev/+simple/", headers={"Accept": [JSON]})
    assert [p["name"] for p in reply.json["projects"]] == ["pkg-a", "only-base"]


def test_non_normalised_names_redirect_and_slashes(server: Server) -> None:
    _layout(server)
    reply = server.client.get("/root/dev/+simple/Pkg_A/", headers={"Accept": ["text/html"]})
    assert reply.code == 302
    assert reply.header("Location") == "http://testserver/root/dev/+simple/pkg-a/"
    browser = server.client.get("/root/dev/+simple/pkg-a", headers={"Accept": ["text/html"]})
    assert browser.code == 302
    installer = server.client.get("/root/dev/+simple/pkg-a",
                                  headers={"Accept": ["text/html"], "User-Agent": ["pip/24.0 {}"]})
    assert installer.code == 200


def test_unknown_project_is_404_and_etag_gives_304(server: Server) -> None:
    _layout(server)
    missing = server.client.get("/root/dev/+simple/nope/", headers={"Accept": ["text/html"]})
    assert missing.code == 404 and missing.header("Content-Type").startswith("text/html")
    first = server.client.get("/root/dev/+simple/pkg-a/", headers={"Accept": [JSON]})
    etag = first.header("ETag")
    again = server.client.get("/root/dev/+simple/pkg-a/", headers={"Accept": [JSON], "If-None-Match": [etag]})
    assert again.code == 304 and again.body == b""
    _release(server, "root/base", "Pkg_A", "3.0", "pkg_a-3.0.tar.gz", "e" * 64)  # a base changed
    changed = server.client.get("/root/dev/+simple/pkg-a/", headers={"Accept": [JSON], "If-None-Match": [etag]})
    assert changed.code == 200 and changed.header("ETag") != etag
    assert "3.0" in changed.json["versions"]


def test_index_url_gives_installers_the_project_list(server: Server) -> None:
    _layout(server)
    reply = server.client.get("/root/dev/", headers={"Accept": ["text/html"], "User-Agent": ["pip/24.0"]})
    assert reply.code == 200 and '<a href="pkg-a/">pkg-a</a>' in reply.body.decode()
    assert server.client.get("/root/dev").json["result"]["projects"] == ["pkg-a"]
