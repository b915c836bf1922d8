"""Full-text search rows and queries, on every adapter: rows follow every write in its
own transaction (and on a replica importing the changelog), the query counts and ranks
over the readable stages only, snippets mark the matches."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest_twisted

from devpi_twisted.storage import plans, searchrows
from devpi_twisted.storage.interface import DocPage, RecordMissing, SearchQuery
from tests.storage.test_contract import _raises
from tests.storage.test_releases import _with_index

WHEEL = "alice/dev/+f/22d/a8a99162b93fa/pkg-1.0-py3-none-any.whl"
SDIST = "alice/dev/+f/ff7/0335d468e7eb6/pkg-1.0.tar.gz"


def _data(name: str, version: str = "1.0", summary: str = "", description: str = "",
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "summary": summary, "description": description,
            **extra}


def _q(*words: str, stages: tuple[str, ...] = ("alice/dev",), limit: int = 20,
       offset: int = 0) -> SearchQuery:
    return SearchQuery(tuple(tuple(w.split()) for w in words), stages, limit, offset)


async def _found(storage: Any, *words: str, stages: tuple[str, ...] = ("alice/dev",)
                 ) -> list[tuple[str, str | None, str]]:
    page = await storage.search(_q(*words, stages=stages))
    assert page.total == len(page.rows)
    return [(r.project, r.version, r.kind) for r in page.rows]


@pytest_twisted.ensureDeferred
async def test_versions_are_found_by_every_field(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "frobnicate", "1.0", _data(
        "Frobnicate", summary="Turns widgets", description="A long text about gizmology.",
        keywords="spanner wrench", classifiers=["Topic :: Zebras"]), {}, -1)
    for word in ("frobnicate", "widgets", "gizmology", "wrench", "zebras", "frobn"):
        assert await _found(storage, word) == [("frobnicate", "1.0", "version")], word
    assert await _found(storage, "nothing") == []
    page = await storage.search(_q("gizmology"))
    row = page.rows[0]
    assert (row.stage, row.display, row.title, row.in_title) == (
        "alice/dev", "Frobnicate", "Turns widgets", False)
    assert "\x01gizmology\x02" in row.snippet
    assert (await storage.search(_q("widgets"))).rows[0].in_title


@pytest_twisted.ensureDeferred
async def test_name_ranks_above_description(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_release("alice", "dev", "other", "1.0", _data(
        "other", description="this mentions teapot once among many other words " * 3), {}, -1)
    await storage.write_release("alice", "dev", "teapot", "1.0", _data("teapot", summary="x"), {}, -1)
    assert [p for p, _, _ in await _found(storage, "teapot")] == ["teapot", "other"]


@pytest_twisted.ensureDeferred
async def test_only_the_given_stages_count(storage: Any) -> None:
    await _with_index(storage)
    await storage.create_index("alice", "secret", {"type": "stage"})
    await storage.write_release("alice", "dev", "a", "1.0", _data("a", description="shared"), {}, -1)
    await storage.write_release("alice", "secret", "b", "1.0", _data("b", description="shared"), {}, -1)
    assert await _found(storage, "shared") == [("a", "1.0", "version")]
    assert len(await _found(storage, "shared", stages=("alice/dev", "alice/secret"))) == 2
    assert await _found(storage, "shared", stages=()) == []
    page = await storage.search(_q("shared", stages=("alice/dev", "alice/secret"), limit=1, offset=1))
    assert page.total == 2 and len(page.rows) == 1


@pytest_twisted.ensureDeferred
async def test_rows_follow_changes_in_the_same_write(storage: Any) -> None:
    await _with_index(storage)
    data = _data("pkg", description="quokka", **{"+elinks": [
        {"rel": "releasefile", "entrypath": WHEEL}]})
    await storage.write_release("alice", "dev", "pkg", "1.0", data, {}, -1)
    assert await _found(storage, "quokka") == [("pkg", "1.0", "version")]
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    yanked = {**data, "+elinks": [{"rel": "releasefile", "entrypath": WHEEL, "yanked": True}]}
    await storage.write_release("alice", "dev", "pkg", "1.0", yanked, {}, read.serial)
    assert await _found(storage, "quokka") == []  # yanked: left out
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.write_release("alice", "dev", "pkg", "1.0", data, {}, read.serial)
    assert await _found(storage, "quokka") == [("pkg", "1.0", "version")]
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.write_release("alice", "dev", "pkg", "1.0", {**data, "description": "wombat"},
                                {}, read.serial)
    assert await _found(storage, "quokka") == []
    assert await _found(storage, "wombat") == [("pkg", "1.0", "version")]
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    second = {**data, "description": "wombat", "+elinks": [  # a second file: the row stays one
        {"rel": "releasefile", "entrypath": WHEEL}, {"rel": "releasefile", "entrypath": SDIST}]}
    await storage.write_release("alice", "dev", "pkg", "1.0", second, {}, read.serial)
    assert await _found(storage, "wombat") == [("pkg", "1.0", "version")]
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.write_release("alice", "dev", "pkg", "1.0", None, {}, read.serial)
    assert await _found(storage, "wombat") == []


def test_a_version_row_is_written_only_when_its_searchable_fields_change() -> None:
    """Adding a file to a version (twine's second upload of it) changes no searchable
    field: the statements compare in the database (no read before them) and write nothing
    then, so the full-text index is not written again."""
    key = "alice/dev/pkg/1.0"
    data = _data("pkg", summary="s", description="quokka")
    row = searchrows.searchable(key, data)
    assert row is not None
    assert list(searchrows.version_changes(key, row)) == [
        (searchrows.DELETE_CHANGED, ("alice/dev", "pkg", "1.0", *row[5:])),
        (searchrows.INSERT_MISSING, (*row, "alice/dev", "pkg", "1.0"))]
    yanked = {**data, "+elinks": [{"rel": "releasefile", "entrypath": WHEEL, "yanked": True}]}
    assert searchrows.searchable(key, yanked) is None
    assert [sql for sql, _ in searchrows.version_changes(key, None)] == [searchrows.DELETE_KIND]


async def _row_id(storage: Any) -> Any:
    """The physical place of alice/dev pkg 1.0's version row: a rewrite moves it."""
    column = "ctid::text" if storage.dialect == "postgres" else "rowid"

    def plan() -> plans.Plan[Any]:
        return (yield plans.rows(f"SELECT {column} FROM search_docs WHERE stage = ? AND "
                                 "project = ? AND version = ? AND kind = 'version'",
                                 "alice/dev", "pkg", "1.0"))

    return await storage._query(plan())


@pytest_twisted.ensureDeferred
async def test_an_unchanged_version_row_stays_where_it_is(storage: Any) -> None:
    await _with_index(storage)
    data = _data("pkg", summary="s", description="quokka")
    await storage.write_release("alice", "dev", "pkg", "1.0", data, {}, -1)
    await storage.write_release("alice", "dev", "pkg", "2.0", _data("pkg", "2.0"), {}, -1)
    first = await _row_id(storage)  # (sqlite: a rewritten row gets a rowid past 2.0's)
    assert len(first) == 1
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    second = {**data, "+elinks": [{"rel": "releasefile", "entrypath": WHEEL}]}
    await storage.write_release("alice", "dev", "pkg", "1.0", second, {}, read.serial)
    assert await _row_id(storage) == first  # a new file, the same searchable fields
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.write_release("alice", "dev", "pkg", "1.0", {**second, "summary": "t"}, {},
                                read.serial)
    moved = await _row_id(storage)
    assert len(moved) == 1 and moved != first
    assert await _found(storage, "quokka") == [("pkg", "1.0", "version")]


@pytest_twisted.ensureDeferred
async def test_doc_pages_are_searchable_and_go_with_their_version(storage: Any) -> None:
    await _with_index(storage)
    pages = [DocPage("index.html", "Welcome", "the capybara guide"),
             DocPage("api/ref.html", "Reference", "function axolotl()")]
    await storage.write_release("alice", "dev", "pkg", "1.0", _data("Pkg"), {}, -1, docs=pages)
    page = await storage.search(_q("axolotl"))
    assert [(r.kind, r.version, r.page, r.title, r.display) for r in page.rows] == [
        ("doc", "1.0", "api/ref.html", "Reference", "Pkg")]
    assert await storage.get_doc_pages("alice", "dev", "pkg", "1.0") == pages
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.write_release("alice", "dev", "pkg", "1.0", _data("Pkg", summary="s"), {},
                                read.serial)
    assert len(await _found(storage, "capybara")) == 1  # docs stay with a changed version
    await storage.write_doc_pages("alice", "dev", "pkg", "1.0", "Pkg", [DocPage("i.html", "", "okapi")])
    assert await _found(storage, "capybara") == []
    assert await _found(storage, "okapi") == [("pkg", "1.0", "doc")]
    await _raises(RecordMissing, storage.write_doc_pages("alice", "dev", "pkg", "9", "Pkg", []))
    read = await storage.get_version("alice", "dev", "pkg", "1.0")
    await storage.delete_project("alice", "dev", "pkg", {"1.0": read.serial})
    assert await _found(storage, "okapi") == []


@pytest_twisted.ensureDeferred
async def test_mirror_names_and_index_deletion(storage: Any) -> None:
    await _with_index(storage)
    await storage.write_mirror_project("root", "pypi", "requests-toolbelt", {"links": []}, {})
    await storage.write_mirror_project("root", "pypi", "requests-toolbelt", {"links": [1]}, {})
    assert await _found(storage, "toolbelt", stages=("root/pypi",)) == [
        ("requests-toolbelt", None, "name")]
    await storage.write_mirror_project("root", "pypi", "requests-toolbelt", None, {})
    assert await _found(storage, "toolbelt", stages=("root/pypi",)) == []
    await storage.write_release("alice", "dev", "pkg", "1.0", _data("pkg", description="numbat"), {}, -1)
    index = await storage.get_index("alice", "dev")
    await storage.delete_index("alice", "dev", index.serial)
    await storage.create_index("alice", "dev", {"type": "stage"})
    assert await _found(storage, "numbat") == []


@pytest_twisted.ensureDeferred
async def test_a_replica_gets_the_rows_from_the_changelog(adapter: Any) -> None:
    primary = adapter.open()
    await _with_index(primary)
    await primary.write_release("alice", "dev", "pkg", "1.0", _data("pkg", description="dugong"),
                                {}, -1, docs=[DocPage("index.html", "T", "manatee")])
    replica = adapter.open_other()
    for change in await primary.changes_since(-1):
        assert await replica.import_change(change)
    assert await _found(replica, "dugong") == [("pkg", "1.0", "version")]
    assert await _found(replica, "manatee") == [("pkg", "1.0", "doc")]


@pytest_twisted.ensureDeferred
async def test_build_makes_the_rows_of_what_was_stored_before(adapter: Any) -> None:
    storage = adapter.open()
    assert not await storage.search_docs_pending()  # a new database: nothing to read
    await _with_index(storage)
    await storage.write_release("alice", "dev", "pkg", "1.0", _data("pkg", description="pangolin"),
                                {}, -1)
    await storage.write_mirror_project("root", "pypi", "tapir", {"links": []}, {})
    await storage.close()
    _forget_search_rows(adapter)
    storage = adapter.open()
    assert await _found(storage, "pangolin") == []
    assert await storage.build_search() == 2
    # the docs' text is read after the rows are made, until marked read (a start
    # stopped halfway reads on at the next)
    assert await storage.search_docs_pending()
    assert await storage.build_search() == 0 and await storage.search_docs_pending()
    await storage.mark_search_docs_read()
    assert not await storage.search_docs_pending()
    assert await _found(storage, "pangolin") == [("pkg", "1.0", "version")]
    assert await _found(storage, "tapir", stages=("root/pypi",)) == [("tapir", None, "name")]
    assert await storage.build_search() == 0


def _forget_search_rows(adapter: Any) -> None:
    """As a database from before search: no rows, not built."""
    if adapter.name == "sqlite":
        conn = sqlite3.connect(adapter.path)
        conn.execute("DELETE FROM search_docs")
        conn.execute("DELETE FROM search_built")
        conn.commit()
        conn.close()
    else:
        import psycopg2

        from devpi_twisted.storage.postgres import connect_kwargs
        conn = psycopg2.connect(**connect_kwargs(adapter.cluster.settings(adapter.database)))
        with conn, conn.cursor() as cursor:
            cursor.execute("DELETE FROM search_docs")
            cursor.execute("DELETE FROM search_built")
        conn.close()


@pytest_twisted.ensureDeferred
async def test_filter_by_projects(storage: Any) -> None:
    await _with_index(storage)
    for name in ("a", "b"):
        await storage.write_release("alice", "dev", name, "1.0", _data(name, description="gnu"), {}, -1)
    page = await storage.search(SearchQuery((("gnu",),), ("alice/dev",), 20, 0, projects=("b",)))
    assert [(r.project, page.total) for r in page.rows] == [("b", 1)]
    page = await storage.search(SearchQuery((("gnu",),), ("alice/dev",), 20, 0, projects=()))
    assert page.total == 0


@pytest_twisted.ensureDeferred
async def test_counts_without_rows(storage: Any) -> None:
    await _with_index(storage)
    for name in ("a", "b", "c"):
        await storage.write_release("alice", "dev", name, "1.0", _data(name, description="emu"), {}, -1)
    for limit, offset in ((0, 0), (2, 5), (2, 2)):
        page = await storage.search(_q("emu", limit=limit, offset=offset))
        assert page.total == 3 and len(page.rows) == max(0, min(limit, 3 - offset)), (limit, offset)
