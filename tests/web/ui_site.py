"""A server for the web page tests: alice's indexes with releases, docs and a tox
result, a private index, hostile markup in names and descriptions; and helpers to
browse it as a browser (Accept: text/html) with or without a session cookie."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import attrs
import pytest

from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.web import sessions
from tests.pg import PgCluster
from tests.web.conftest import Reply, Server, make_server
from tests.web.test_fuzz import BOUNDARY, InlineThreads, _multipart, _sdist

FORM = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"]}
BROWSER = {"Accept": ["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
           "User-Agent": ["Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"]}
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
MARKDOWN = f"""# Hello *world*

A [bad link](javascript:alert(3)) and **bold** text.

{HOSTILE}

<a href="javascript:alert(4)">x</a>
"""
RST = "Title\n=====\n\nSome *emphasis* in reStructuredText.\n"
TOX = b'{"host": "ci", "platform": "linux", "testenvs": {"py311": {"test": [{"command": ["pytest"], "retcode": 0, "output": "1 passed <b>"}]}, "py312": {"test": [{"retcode": 1, "output": "boom"}]}}}'


@attrs.frozen
class Site:
    server: Server
    auth: dict[str, dict[str, Any]]

    def page(self, path: str, headers: dict[str, Any] | None = None) -> Reply:
        return self.server.client.get(path, headers={**BROWSER, **(headers or {})})

    def session(self, user: str, password: str = "secret") -> dict[str, Any]:
        """Cookie headers of a browser session of ``user`` and its CSRF token (``csrf``)."""
        body = urlencode({"username": user, "password": password, "next": "/"}).encode()
        reply = self.server.client.request(
            "POST", "/+login", raw=body,
            headers={"Content-Type": ["application/x-www-form-urlencoded"], **BROWSER})
        assert reply.code == 303, reply.body
        self.server.client.forget_cookies()  # sent only where a test passes them
        cookies = dict(c.split(";", 1)[0].split("=", 1)
                       for c in reply.headers.getRawHeaders("Set-Cookie"))
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return {"Cookie": [cookie], "csrf": cookies[sessions.CSRF_COOKIE]}

    def post_form(self, path: str, fields: dict[str, str], session: dict[str, Any] | None
                  ) -> Reply:
        headers = {"Content-Type": ["application/x-www-form-urlencoded"], **BROWSER}
        if session is not None:
            headers["Cookie"] = session["Cookie"]
        return self.server.client.request("POST", path, raw=urlencode(fields).encode(),
                                          headers=headers)


def upload(server: Server, index: str, who: dict[str, Any], name: str, version: str,
           filename: str, content: bytes, action: str = "file_upload",
           meta: list[tuple[str, str]] | None = None) -> None:
    body = _multipart([(":action", action), ("name", name), ("version", version),
                       *(meta or [])], [("content", filename, content)])
    reply = server.client.request("POST", f"/{index}/", raw=body, headers={**FORM, **who})
    assert reply.code == 200, reply.body


def docs_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("index.html", "<h1>the docs</h1><script>parent.alert(5)</script>")
    return out.getvalue()


def make_site(tmp_path: Path, outside_url: str | None = None,
              pg: tuple[PgCluster, str] | None = None) -> Site:
    threads = InlineThreads()
    server = make_server(tmp_path, outside_url=outside_url, pg=pg,
                         blobs=FileBlobStore(tmp_path / "+files", threads, threads))
    auth = {"root": server.devpi_auth("root", server.login("root", ""))}
    for user in ("alice", "bob"):
        assert server.client.request("PUT", f"/{user}", {"password": "secret"}).code == 201
        auth[user] = server.devpi_auth(user, server.login(user, "secret"))
    alice = auth["alice"]
    for index, config in (("dev", {"title": "Alice's <dev>", "description": HOSTILE}),
                          ("private", {"acl_read": "alice"}),
                          ("prod", {"bases": "alice/dev,alice/private", "volatile": False})):
        reply = server.client.request("PUT", f"/alice/{index}", config, headers=alice)
        assert reply.code == 200, reply.body
    meta = [("summary", "A <b>summary</b>"), ("description", MARKDOWN),
            ("description_content_type", "text/markdown"), ("requires_python", ">=3.9"),
            ("requires_dist", "attrs>=23"), ("requires_dist", 'rich; extra == "color"'),
            ("provides_extras", "color"), ("license", "MIT"), ("author", "Alice"),
            ("classifiers", "Programming Language :: Python :: 3"),
            ("project_urls", "Source, https://example.org/src"),
            ("project_urls", "Evil, javascript:alert(6)")]
    upload(server, "alice/dev", alice, "pkg", "1.0", "pkg-1.0.tar.gz", _sdist("pkg", "1.0"),
           meta=meta)
    upload(server, "alice/dev", alice, "pkg", "1.0", "pkg-1.0.doc.zip", docs_zip(),
           "doc_upload")
    upload(server, "alice/dev", alice, "pkg", "2.0b1", "pkg-2.0b1.tar.gz",
           _sdist("pkg", "2.0b1"), meta=[("description", RST)])
    upload(server, "alice/private", alice, "secretpkg", "1.0", "secretpkg-1.0.tar.gz",
           _sdist("secretpkg", "1.0"), meta=[("description", "the secret description")])
    upload(server, "alice/prod", alice, "pkg", "0.9", "pkg-0.9.tar.gz", _sdist("pkg", "0.9"))
    links = server.client.get("/alice/dev/pkg/1.0", headers=alice).json["result"]["+links"]
    sdist = next(link["href"] for link in links if link["href"].endswith(".tar.gz"))
    reply = server.client.request("POST", "/" + sdist.split("/", 3)[3], raw=TOX, headers=alice)
    assert reply.code == 200, reply.body
    return Site(server, auth)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = make_site(tmp_path)
    yield made
    made.server.storage.close()


def text_of(reply: Reply) -> str:
    assert reply.code == 200, (reply.code, reply.body[:500])
    return reply.body.decode("utf-8")


def links_of(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)
