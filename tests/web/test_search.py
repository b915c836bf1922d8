"""``GET /+search`` (issue 22, item 2) in memory on sqlite and PostgreSQL, through the real
upload routes: a word only in a description and one only in the uploaded docs are
found and linked; name matches rank first; a private index's content never shows to
who may not read it, not even in the total; filters and paging; hostile queries and
parameters give 200 or 400, never 5xx; a yank or deletion takes a release out of the
results with the write that makes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import pytest

from devpi_twisted.storage.fileblobs import FileBlobStore
from tests.web.conftest import Reply, Server, make_server, pg_of
from tests.web.test_fuzz import BOUNDARY, InlineThreads, _multipart, _sdist, _zip

FORM = {"Content-Type": [f"multipart/form-data; boundary={BOUNDARY}"]}
DOCS = _zip({
    "index.html": b"<html><head><title>Guide</title><script>var quixotic_not = 1;</script>"
                  b"</head><body><p>A truly <b>quixotic</b> undertaking.</p></body></html>",
    "api/ref.html": b"<title>API</title><p>call frobulate()</p>",
    "style.css": b"body { color: quixotic }",
})


@attrs.frozen
class World:
    server: Server
    alice: dict[str, Any]


def _upload(server: Server, index: str, who: dict[str, Any], name: str, version: str,
            filename: str, content: bytes, action: str = "file_upload",
            **meta: str) -> None:
    body = _multipart([(":action", action), ("name", name), ("version", version), *meta.items()],
                      [("content", filename, content)])
    reply = server.client.request("POST", f"/{index}/", raw=body, headers={**FORM, **who})
    assert reply.code == 200, reply.body


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """alice/dev (public) holds pkg 1.0 (description mentions zanzibar; docs) and
    zanzibar 2.0; alice/private (read: alice only) holds hidden 1.0 about zanzibar."""
    threads = InlineThreads()
    server = make_server(tmp_path, pg=pg_of(request),
                         blobs=FileBlobStore(tmp_path / "+files", threads, threads))
    assert server.client.request("PUT", "/alice", {"password": "secret"}).code == 201
    alice = server.devpi_auth("alice", server.login("alice", "secret"))
    for index, config in (("dev", {}), ("private", {"acl_read": "alice"})):
        reply = server.client.request("PUT", f"/alice/{index}", config, headers=alice)
        assert reply.code == 200, reply.body
    _upload(server, "alice/dev", alice, "pkg", "1.0", "pkg-1.0.tar.gz", _sdist("pkg", "1.0"),
            summary="A package", description="It was built in zanzibar by hand.")
    _upload(server, "alice/dev", alice, "pkg", "1.0", "pkg-1.0.doc.zip", DOCS, "doc_upload")
    _upload(server, "alice/dev", alice, "zanzibar", "2.0", "zanzibar-2.0.tar.gz",
            _sdist("zanzibar", "2.0"), summary="The island")
    _upload(server, "alice/private", alice, "hidden", "1.0", "hidden-1.0.tar.gz",
            _sdist("hidden", "1.0"), description="secret zanzibar plans")
    yield World(server, alice)
    server.storage.close()


def _search(world: World, query: str = "", who: dict[str, Any] | None = None, **params: str) -> Reply:
    args = "&".join(f"{k}={quote(v)}" for k, v in {"query": query, **params}.items())
    return world.server.client.get(f"/+search?{args}", headers=who or {})


def _hits(reply: Reply) -> list[tuple[str, str]]:
    assert reply.code == 200, reply.body
    return [(h["path"], h["kind"]) for h in reply.json["result"]["hits"]]


def test_a_word_only_in_a_description_is_found(world: World) -> None:
    reply = _search(world, "built hand")
    assert _hits(reply) == [("/alice/dev/pkg/1.0", "description")]
    result = reply.json["result"]
    assert (result["query"], result["total"], result["page"], result["per_page"]) == (
        "built hand", 1, 1, 20)
    hit = result["hits"][0]
    assert (hit["user"], hit["index"], hit["project"], hit["version"], hit["title"]) == (
        "alice", "dev", "pkg", "1.0", "pkg 1.0")
    assert ["built", True] in hit["snippet"] and ["hand", True] in hit["snippet"]
    assert hit["url"] == "http://testserver/alice/dev/pkg/1.0"


def test_a_word_only_in_the_docs_is_found(world: World) -> None:
    reply = _search(world, "quixotic")
    assert _hits(reply) == [("/alice/dev/pkg/1.0/+d/index.html", "doc")]
    assert reply.json["result"]["hits"][0]["title"] == "pkg 1.0: Guide"
    assert _hits(_search(world, "frobulate")) == [("/alice/dev/pkg/1.0/+d/api/ref.html", "doc")]


def test_a_name_match_ranks_above_a_description_match(world: World) -> None:
    assert _hits(_search(world, "zanzibar")) == [
        ("/alice/dev/zanzibar/2.0", "project"), ("/alice/dev/pkg/1.0", "description")]
    assert _hits(_search(world, "zanz"))[0] == ("/alice/dev/zanzibar/2.0", "project")  # prefix


def test_a_private_index_shows_only_to_its_readers(world: World) -> None:
    anonymous = _search(world, "zanzibar")
    assert anonymous.json["result"]["total"] == 2
    assert "hidden" not in anonymous.body.decode() and "private" not in anonymous.body.decode()
    assert _search(world, "secret plans").json["result"] == {
        "query": "secret plans", "total": 0, "page": 1, "per_page": 20, "hits": []}
    assert _search(world, "secret", index="private").json["result"]["total"] == 0
    reply = _search(world, "zanzibar", who=world.alice)
    assert reply.json["result"]["total"] == 3
    assert ("/alice/private/hidden/1.0", "description") in _hits(reply)
    assert reply.header("Cache-Control") == "no-store"


def test_filters_by_user_and_index(world: World) -> None:
    assert _search(world, "zanzibar", who=world.alice, index="private").json["result"]["total"] == 1
    assert _search(world, "zanzibar", who=world.alice, user="alice").json["result"]["total"] == 3
    assert _search(world, "zanzibar", who=world.alice, user="root").json["result"]["total"] == 0
    assert _search(world, "zanzibar", who=world.alice, user="nobody").json["result"]["total"] == 0


def test_paging(world: World) -> None:
    assert _search(world, "zanzibar", page="2").json["result"]["hits"] == []
    assert _search(world, "zanzibar", page="2").json["result"]["total"] == 2


@pytest.mark.parametrize("query", [
    '"', '"zanzibar', "*", "zan*", "NEAR(", "NEAR(zanzibar, pkg)", "-", "-zanzibar", "a:*", "'",
    "zanzibar AND OR NOT", "(((", "^zanzibar", "&|!<->", "\\", "%s %", "{}", "column:zanzibar",
    "x" * 200, "x" * 201, "x" * 10_000, "\x00", "zanzibar\x00", "\x01\x02", "é ü 漢字", "\ud800",
])
def test_hostile_queries_never_fail(world: World, query: str) -> None:
    reply = _search(world, query) if query != "\ud800" else world.server.client.get(
        "/+search?query=%ED%A0%80")
    assert reply.code in (200, 400), (reply.code, reply.body)
    if len(query) > 200 or "\x00" in query:
        assert reply.code == 400


@pytest.mark.parametrize("args", [
    "page=x", "page=0", "page=-1", "page=51", "page=99999", "page=1.5", "query=a&query=b",
    "index=" + "x" * 300, "user=%00", "query=%FF", "query=" + "a" * 3000,
])
def test_bad_parameters_are_400(world: World, args: str) -> None:
    reply = world.server.client.get(f"/+search?{args}")
    assert reply.code == 400, (reply.code, reply.body)
    assert "message" in reply.json


def test_empty_query_finds_nothing(world: World) -> None:
    for path in ("/+search", "/+search?query=", "/+search?query=---", "/+search?other=1"):
        reply = world.server.client.get(path)
        assert reply.code == 200 and reply.json["result"]["total"] == 0, path


def test_browsers_get_the_search_page(world: World) -> None:
    reply = world.server.client.get("/+search?query=x", headers={"Accept": ["text/html"]})
    assert reply.code == 200 and b"<h1>Search</h1>" in reply.body


def test_yank_and_delete_update_the_results(world: World) -> None:
    server, alice = world.server, world.alice
    reply = server.client.request("PATCH", "/alice/dev/zanzibar/2.0", {"yanked": True}, headers=alice)
    assert reply.code == 200, reply.body
    assert _hits(_search(world, "island")) == []
    reply = server.client.request("PATCH", "/alice/dev/zanzibar/2.0", {"yanked": False}, headers=alice)
    assert reply.code == 200, reply.body
    assert _hits(_search(world, "island")) == [("/alice/dev/zanzibar/2.0", "project")]
    assert server.client.request("DELETE", "/alice/dev/pkg/1.0", headers=alice).code == 200
    assert _hits(_search(world, "quixotic")) == []
    assert _hits(_search(world, "built")) == []


def test_push_takes_the_docs_text_along(world: World) -> None:
    server, alice = world.server, world.alice
    reply = server.client.request("POST", "/alice/dev", {
        "name": "pkg", "version": "1.0", "targetindex": "alice/private"}, headers=alice)
    assert reply.code == 200, reply.body
    assert sorted(_hits(_search(world, "quixotic", who=alice))) == [
        ("/alice/dev/pkg/1.0/+d/index.html", "doc"), ("/alice/private/pkg/1.0/+d/index.html", "doc")]
    assert _hits(_search(world, "quixotic")) == [("/alice/dev/pkg/1.0/+d/index.html", "doc")]
