"""Simple pages in memory: negotiation, inheritance, redirects, caching headers."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import brotli
import pytest
import zstandard

from devpi_twisted.web import encoding
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


_DECODE = {"gzip": gzip.decompress, "br": brotli.decompress,
           "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)}


def _each_coding(server: Server, path: str, accept: str) -> dict[str, str]:
    """``path`` in identity and each coding: the same body, each with its own ETag, a
    304 for it, HEAD with its length; returns the ETags by coding."""
    plain = server.client.raw("GET", path, {"Accept": [accept]})
    assert plain.code == 200 and plain.header("Content-Encoding") is None
    assert plain.header("Vary") == "Accept, Accept-Encoding"
    etags = {"identity": plain.header("ETag")}
    for coding, decode in _DECODE.items():
        asked = {"Accept": [accept], "Accept-Encoding": [f"gzip;q=0.5, {coding}"]}
        reply = server.client.raw("GET", path, asked)
        assert reply.code == 200 and reply.header("Content-Encoding") == coding
        assert reply.header("Vary") == "Accept, Accept-Encoding"
        assert decode(reply.body) == plain.body and reply.header("Content-Type") == plain.header("Content-Type")
        etags[coding] = etag = reply.header("ETag")
        head = server.client.raw("HEAD", path, asked)
        assert head.body == b"" and head.header("Content-Length") == str(len(reply.body))
        again = server.client.raw("GET", path, {**asked, "If-None-Match": [f'"x", {etag}']})
        assert again.code == 304 and again.body == b""
    assert len(set(etags.values())) == 4 and None not in etags.values()
    return etags


@pytest.mark.parametrize("small", [encoding.SMALL, 16], ids=["memory", "files"])
def test_project_pages_in_each_coding(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      small: int) -> None:
    """Each coding of a page; with ``small`` 16 every body goes out of a file, which
    goes when the page changes."""
    monkeypatch.setattr(encoding, "SMALL", small)
    _layout(server)
    for accept in (JSON, "text/html"):
        others = set(tmp_path.glob("list-*"))
        etags = _each_coding(server, "/root/dev/+simple/pkg-a/", accept)
        _release(server, "root/base", "Pkg_A", f"4.{len(accept)}", f"pkg_a-4.{len(accept)}.tar.gz",
                 "f" * 64)
        spooled = set(tmp_path.glob("list-*")) - others
        assert len(spooled) == (4 if small == 16 else 0)
        renewed = _each_coding(server, "/root/dev/+simple/pkg-a/", accept)
        assert not set(etags.values()) & set(renewed.values())
        assert not spooled & set(tmp_path.glob("list-*"))


def test_project_lists_kept_per_state_in_each_coding_big_ones_spooled(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _layout(server)
    server.client.request("PUT", "/root/other", {}, headers=root)
    monkeypatch.setattr(encoding, "SMALL", 16)  # every list body goes to a file
    lists = "/root/dev/+simple/"
    for accept in (JSON, "text/html"):
        others = set(tmp_path.glob("list-*"))
        etags = _each_coding(server, lists, accept)
        assert _each_coding(server, lists, accept) == etags  # kept
        spooled = set(tmp_path.glob("list-*")) - others
        assert len(spooled) == 4
        _release(server, "root/other", "elsewhere", "1", "elsewhere-1.tar.gz", "9" * 64)
        assert _each_coding(server, lists, accept) == etags  # not a stage of root/dev
        _release(server, "root/base", f"new-{len(accept)}", "1", f"new_{len(accept)}-1.tar.gz",
                  "8" * 64)
        renewed = _each_coding(server, lists, accept)
        assert not set(etags.values()) & set(renewed.values())
        assert f"new-{len(accept)}" in server.client.get(lists, headers={"Accept": [accept]}).body.decode()
        assert not spooled & set(tmp_path.glob("list-*"))  # the old state's files are gone
