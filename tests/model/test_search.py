"""The domain side of search (model/search.py): queries become words of letters and
digits, snippets become pieces, rows become hits with their links, and only the
indexes the reader may read (and a token's projects) reach storage."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import succeed

from devpi_twisted.model.acl import Identity, Scope
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.search import (
    MAX_PAGE, SearchOps, SearchResults, hit, query_words, snippet_pieces,
)
from devpi_twisted.storage.interface import IndexRecord, SearchPage, SearchQuery, SearchRow
from tests.support import result_of


@pytest.mark.parametrize("query, words", [
    ("", ()),
    ("   ", ()),
    ("Foo", (("foo",),)),
    ("my-pkg other", (("my", "pkg"), ("other",))),
    ('"NEAR(" * - AND', (("near",), ("and",))),
    ("a_b.c", (("a", "b", "c"),)),
    ("---", ()),
    ("zürich 漢字", (("zürich",), ("漢字",))),
])
def test_query_words(query: str, words: tuple[tuple[str, ...], ...]) -> None:
    assert query_words(query) == words


@pytest.mark.parametrize("query", ["x" * 201, "a\x00b", "bell\x07", " ".join("w" * 17)])
def test_bad_queries(query: str) -> None:
    with pytest.raises(InvalidInput):
        query_words(query)


def test_snippet_pieces() -> None:
    assert snippet_pieces("") == ()
    assert snippet_pieces("plain") == (("plain", False),)
    assert snippet_pieces("a \x01b\x02 c \x01d\x02") == (
        ("a ", False), ("b", True), (" c ", False), ("d", True))
    assert snippet_pieces("stray\x02 \x01open") == (("stray ", False), ("open", True))


def _row(**kw: Any) -> SearchRow:
    base: dict[str, Any] = dict(stage="alice/dev", project="my-pkg", version="1.0+local",
                                kind="version", page=None, display="My_Pkg", title="Summary",
                                snippet="x \x01y\x02", in_title=False, score=1.5)
    return SearchRow(**{**base, **kw})


def test_hits_link_to_what_they_found() -> None:
    found = hit(_row())
    assert (found.kind, found.title, found.path, found.project, found.version) == (
        "description", "My_Pkg 1.0+local", "/alice/dev/my-pkg/1.0%2Blocal", "My_Pkg", "1.0+local")
    assert hit(_row(in_title=True)).kind == "project"
    doc = hit(_row(kind="doc", page="api/a b.html", title="API"))
    assert (doc.kind, doc.title, doc.path) == (
        "doc", "My_Pkg 1.0+local: API", "/alice/dev/my-pkg/1.0%2Blocal/+d/api/a%20b.html")
    name = hit(_row(kind="name", version=None, stage="root/pypi", display="requests"))
    assert (name.kind, name.version, name.path) == ("name", None, "/root/pypi/my-pkg")


class FakeStorage:
    def __init__(self) -> None:
        self.queries: list[SearchQuery] = []
        self.indexes = [IndexRecord("alice", "dev", {"type": "stage"}, 1),
                        IndexRecord("alice", "secret", {"type": "stage", "acl_read": "bob"}, 1),
                        IndexRecord("root", "pypi", {"type": "mirror"}, 1)]

    def list_indexes(self, user: str | None = None) -> Any:
        return succeed([i for i in self.indexes if user is None or i.user == user])

    def search(self, query: SearchQuery) -> Any:
        self.queries.append(query)
        return succeed(SearchPage(7, (_row(),)))


def _search(reader: Identity, query: str = "pkg", **kw: Any) -> tuple[SearchResults, FakeStorage]:
    storage = FakeStorage()
    results = result_of(SearchOps(storage).search(reader, query, **kw))  # type: ignore[arg-type]
    return results, storage


def test_only_readable_indexes_reach_storage() -> None:
    results, storage = _search(Identity())
    assert (results.total, len(results.hits), results.page, results.per_page) == (7, 1, 1, 20)
    assert storage.queries[0].stages == ("alice/dev", "root/pypi")
    _, storage = _search(Identity("bob"))
    assert storage.queries[0].stages == ("alice/dev", "alice/secret", "root/pypi")
    _, storage = _search(Identity("alice"), user="alice", index="secret")
    assert storage.queries[0].stages == ("alice/secret",)  # the owner
    _, storage = _search(Identity("carol"), index="secret")
    assert storage.queries == []  # nothing readable: storage is not asked


def test_a_token_limits_indexes_and_projects() -> None:
    scope = Scope(indexes=frozenset({"alice/dev"}), projects=frozenset({"b", "a"}))
    _, storage = _search(Identity("bob", scope=scope))
    query = storage.queries[0]
    assert (query.stages, query.projects) == (("alice/dev",), ("a", "b"))


def test_paging_and_empty_queries() -> None:
    _, storage = _search(Identity(), page=3)
    assert (storage.queries[0].limit, storage.queries[0].offset) == (20, 40)
    results, storage = _search(Identity(), "  ")
    assert (results.total, results.hits, storage.queries) == (0, (), [])
    for page in (0, MAX_PAGE + 1):
        with pytest.raises(InvalidInput):
            _search(Identity(), page=page)
    with pytest.raises(InvalidInput):
        _search(Identity(), user="x" * 201)


class MirrorStorage(FakeStorage):
    """root/pypi holds a page of "cached" only; storage finds 25 rows for anything."""

    def get_mirror_project(self, user: str, index: str, project: str) -> Any:
        return succeed(object() if project == "cached" else None)

    def search(self, query: SearchQuery) -> Any:
        self.queries.append(query)
        rows = tuple(_row() for _ in range(max(0, min(query.limit, 25 - query.offset))))
        return succeed(SearchPage(25, rows))


def test_a_mirror_list_name_is_found_by_its_exact_name() -> None:
    lists = {"root/pypi": {"django-rest-framework": "Django-REST-Framework", "cached": "Cached"}}
    storage = MirrorStorage()
    ops = SearchOps(storage, lambda name, config: lists.get(name))  # type: ignore[arg-type]
    results = result_of(ops.search(Identity(), "Django REST_framework"))
    first = results.hits[0]
    assert (first.kind, first.project, first.version, first.path, first.snippet) == (
        "name", "Django-REST-Framework", None, "/root/pypi/django-rest-framework",
        (("Django-REST-Framework", True),))
    assert (results.total, len(results.hits)) == (26, 20)
    assert (storage.queries[-1].limit, storage.queries[-1].offset) == (19, 0)
    page2 = result_of(ops.search(Identity(), "django rest framework", page=2))
    assert (len(page2.hits), storage.queries[-1].offset, storage.queries[-1].limit) == (6, 19, 20)
    assert all(h.kind == "description" for h in page2.hits)
    # a cached project's name row is storage's; a private mirror is nobody's business
    assert result_of(ops.search(Identity(), "cached")).total == 25
    storage.indexes[2] = IndexRecord("root", "pypi", {"type": "mirror", "acl_read": "root"}, 1)
    assert result_of(ops.search(Identity(), "django-rest-framework")).total == 25


def test_build_docs_stores_the_text_of_docs_stored_before(tmp_path: Any) -> None:
    from devpi_twisted.model.search import build_docs
    from devpi_twisted.storage.executor import InlineExecutor
    from devpi_twisted.storage.interface import DocPage
    from devpi_twisted.storage.sqlite import SqliteStorage

    storage = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor())
    result_of(storage.create_user("alice", {}, None))
    result_of(storage.create_index("alice", "dev", {"type": "stage"}))
    doc = {"rel": "doczip", "entrypath": "alice/dev/+f/abc/pkg-1.0.doc.zip"}
    result_of(storage.write_release("alice", "dev", "pkg", "1.0", {"name": "Pkg", "+elinks": [doc]},
                                    {}, -1))
    result_of(storage.write_release("alice", "dev", "pkg", "2.0", {"name": "Pkg"}, {}, -1))
    asked: list[str] = []

    async def doc_text(relpath: str) -> list[DocPage]:
        asked.append(relpath)
        return [DocPage("index.html", "Home", "ocelot")]

    assert result_of(build_docs(storage, doc_text)) == 1
    assert asked == [doc["entrypath"]]
    found = result_of(SearchOps(storage).search(Identity(), "ocelot"))
    assert [h.path for h in found.hits] == ["/alice/dev/pkg/1.0/+d/index.html"]
    assert result_of(build_docs(storage, doc_text)) == 0  # there already
    result_of(storage.close())
