"""Plans of full-text search: the query (one for each database's engine, the only SQL
here that differs between them), the documentation text of a version, and the one-time
build of the rows of what was stored before search existed. The rows themselves are
written with every change (searchrows.py).

A query is made of words the domain layer has already reduced to letters and digits
(interface.SearchQuery), so no user input reaches the engine's query syntax: sqlite
gets FTS5 phrases in double quotes, PostgreSQL single-quoted lexemes joined by
``<->`` and ``&``. Matches are counted and ranked in SQL over the readable stages
only (sqlite: their tag tokens in the MATCH expression, so FTS5 intersects them
with the words itself; PostgreSQL: an array for ``ANY``); snippets are made for the
page of rows shown only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from devpi_twisted.storage import searchrows
from devpi_twisted.storage.interface import (
    MIRROR, VERSION, Change, DocPage, RecordMissing, SearchPage, SearchQuery, SearchRow,
)
from devpi_twisted.storage.plans import VERSION_SERIAL, Plan, commit, one, rows, run, take_serial

START, STOP = "\x01", "\x02"  # the markers around a match in a snippet
SNIPPET_TOKENS = 24
HEADLINE_TEXT = 20000  # characters of a body PostgreSQL's ts_headline looks through

# -- sqlite: FTS5, bm25 weighs name 10, title 4, body 1, the stage tag 0 (lower is
# better); the stages are a part of the MATCH expression (fts5_query), so the rows
# of search_docs are only read to filter by project
_SQLITE_FROM = "FROM search_fts WHERE search_fts MATCH ?"
_SQLITE_PROJECTS = (" AND rowid IN (SELECT id FROM search_docs "
                    "WHERE project IN (SELECT value FROM json_each(?)))")
_SQLITE_COUNT = "SELECT count(*) {}"
_SQLITE_PAGE = ("SELECT rowid, -bm25(search_fts, 10.0, 4.0, 1.0, 0.0) AS score {} "
                "ORDER BY score DESC, rowid LIMIT ? OFFSET ?")
# one row at a time: FTS5 seeks a MATCH with ``rowid = ?``, not with ``rowid IN (...)``
SQLITE_DETAILS = (
    "SELECT d.id, d.stage, d.project, d.version, d.kind, d.page, d.display, d.title, "
    "snippet(search_fts, -1, char(1), char(2), '…', " + str(SNIPPET_TOKENS) + "), "
    "instr(highlight(search_fts, 0, char(1), char(2)) || highlight(search_fts, 1, char(1), char(2)), "
    "char(1)) > 0 "
    "FROM search_fts JOIN search_docs d ON d.id = search_fts.rowid "
    "WHERE search_fts MATCH ? AND search_fts.rowid = ?")
# (the details' MATCH is the words alone: the tag column is no snippet's)

# -- PostgreSQL: tsvector (name A, title B, body D), ts_rank (higher is better)
_PG_FROM = ("FROM search_docs d, to_tsquery('english', ?) q "
            "WHERE d.tsv @@ q AND d.stage = ANY(?)")
_PG_PROJECTS = " AND d.project = ANY(?)"
_PG_COUNT = "SELECT count(*) {}"
# (PostgreSQL counts in the same scan that ranks: the rows are read once)
_PG_PAGE = ("SELECT d.id, ts_rank(d.tsv, q) AS score, count(*) OVER () {} "
            "ORDER BY score DESC, d.id LIMIT ? OFFSET ?")
# the statements, without and with the filter by project (fixed text: only values vary)
SQL = {(dialect, by_project): (count.format(where + (extra if by_project else "")),
                               page.format(where + (extra if by_project else "")))
       for dialect, where, extra, count, page in (
           ("sqlite", _SQLITE_FROM, _SQLITE_PROJECTS, _SQLITE_COUNT, _SQLITE_PAGE),
           ("postgres", _PG_FROM, _PG_PROJECTS, _PG_COUNT, _PG_PAGE))
       for by_project in (False, True)}
PG_DETAILS = (
    "SELECT d.id, d.stage, d.project, d.version, d.kind, d.page, d.display, d.title, "
    "ts_headline('english', d.title || ' — ' || left(d.body, " + str(HEADLINE_TEXT) + "), q, ?), "
    "to_tsvector('english', d.name || ' ' || d.title) @@ q "
    "FROM search_docs d, to_tsquery('english', ?) q WHERE d.id = ANY(?)")
PG_HEADLINE = (f"StartSel={START}, StopSel={STOP}, MaxWords=35, MinWords=15, MaxFragments=2, "
               "FragmentDelimiter=\" … \"")

DOC_PAGES = ("SELECT page, title, body FROM search_docs WHERE stage = ? AND project = ? "
             "AND version = ? AND kind = 'doc' ORDER BY id")
# writers' lock, taken without a serial: the build sees every write before it
LOCK_WRITERS = "UPDATE serial_counter SET serial = serial"
BUILT = "SELECT built FROM search_built"
# search_built.built: the rows are made, the text of docs stored before is still to be
# read (DOCS_PENDING), or that is done too (COMPLETE)
DOCS_PENDING, COMPLETE = 1, 2
MARK_BUILT = f"INSERT INTO search_built (built) VALUES ({DOCS_PENDING})"
MARK_DOCS_READ = f"UPDATE search_built SET built = {COMPLETE}"
ALL_VERSIONS = ("SELECT owner, idx, project, version, data FROM versions "
                "WHERE owner = ? AND idx = ?")
ALL_STAGES = "SELECT owner, name FROM indexes ORDER BY owner, name"
ALL_MIRRORED = "SELECT owner, idx, project FROM mirror_projects"
ANALYZE = "ANALYZE search_docs"


def fts5_query(words: Sequence[Sequence[str]], stages: Sequence[str] | None = None) -> str:
    """``"a b" "c"*``: every word a phrase of its tokens, the last a prefix; with
    ``stages``, only in rows tagged with one of them."""
    phrases = ['"' + " ".join(tokens) + '"' for tokens in words]
    text = " ".join(phrases) + "*"
    if stages is None:
        return text
    tags = " OR ".join(f'"{searchrows.stage_tag(stage)}"' for stage in stages)
    return f"({text}) AND tag : ({tags})"


def tsquery(words: Sequence[Sequence[str]]) -> str:
    """``'a' <-> 'b' & 'c':*``: the same for PostgreSQL's to_tsquery."""
    phrases = [" <-> ".join(f"'{token}'" for token in tokens) for tokens in words]
    return " & ".join(phrases) + ":*"


def _checked(query: SearchQuery) -> None:
    """Tokens are letters and digits only (the domain layer makes them so); anything
    else here is a bug that must not reach the query syntax."""
    for tokens in query.words:
        if not tokens or not all(t.isalnum() for t in tokens):
            raise ValueError(f"search tokens must be letters and digits: {tokens!r}")


def search(dialect: str, query: SearchQuery) -> Plan[SearchPage]:
    _checked(query)
    if not query.words or not query.stages or query.projects == ():
        return SearchPage(0, ())
    dialect = "postgres" if dialect == "postgres" else "sqlite"
    params: list[Any]
    if dialect == "postgres":
        params = [tsquery(query.words), list(query.stages)]
        if query.projects is not None:
            params.append(list(query.projects))
    else:
        params = [fts5_query(query.words, query.stages)]
        if query.projects is not None:
            params.append(json.dumps(list(query.projects)))
    text = params[0] if dialect == "postgres" else fts5_query(query.words)
    count_sql, page_sql = SQL[dialect, query.projects is not None]
    if dialect == "postgres":
        found = yield rows(page_sql, *params, query.limit, query.offset)
        if found:
            total = int(found[0][2])
        elif query.offset or not query.limit:  # (a page past the last, or no rows asked for)
            total = int((yield one(count_sql, *params))[0])
        else:
            total = 0
    else:
        total = int((yield one(count_sql, *params))[0])
        found = (yield rows(page_sql, *params, query.limit, query.offset)) if total else []
    if not found:
        return SearchPage(total, ())
    ids = [int(row[0]) for row in found]
    if dialect == "postgres":
        details = yield rows(PG_DETAILS, PG_HEADLINE, text, ids)
    else:
        details = []
        for row_id in ids:
            found_row = yield one(SQLITE_DETAILS, text, row_id)
            if found_row is not None:
                details.append(found_row)
    by_id = {int(row[0]): row for row in details}
    page = []
    for row_id, score in ((int(r[0]), float(r[1])) for r in found):
        d = by_id.get(row_id)
        if d is not None:
            page.append(SearchRow(stage=d[1], project=d[2], version=d[3], kind=d[4], page=d[5],
                                  display=d[6], title=d[7], snippet=d[8] or "",
                                  in_title=bool(d[9]), score=score))
    return SearchPage(total, tuple(page))


def doc_pages(owner: str, index: str, project: str, version: str) -> Plan[list[DocPage]]:
    found = yield rows(DOC_PAGES, f"{owner}/{index}", project, version)
    return [DocPage(str(p), str(t), str(b)) for p, t, b in found]


def write_doc_pages(owner: str, index: str, project: str, version: str, name: str,
                    pages: Sequence[DocPage], at: float) -> Plan[Change]:
    """The text of a version's documentation, as its own change (an import's docs)."""
    serial = yield from take_serial()
    if (yield one(VERSION_SERIAL, owner, index, project, version)) is None:
        raise RecordMissing(f"{owner}/{index}/{project}/{version}")
    key = f"{owner}/{index}/{project}/{version}"
    return (yield from commit(serial, [searchrows.doc_text(key, name, pages)], at))


def docs_pending() -> Plan[bool]:
    """Is the text of docs stored before search existed still to be read?"""
    row = yield one(BUILT)
    return row is not None and row[0] == DOCS_PENDING


def mark_docs_read() -> Plan[None]:
    yield run(MARK_DOCS_READ)


def build() -> Plan[int]:
    """The rows of every stored version and mirror project, once (search_built says it
    was done): for a database that held releases before search existed."""
    yield run(LOCK_WRITERS)
    if (yield one(BUILT)) is not None:
        return 0
    made = 0
    for owner, name in (yield rows(ALL_STAGES)):
        for o, i, p, v, data in (yield rows(ALL_VERSIONS, owner, name)):
            for sql, params in searchrows.statements(VERSION, f"{o}/{i}/{p}/{v}", json.loads(data)):
                yield run(sql, *params)
            made += 1
    for o, i, p in (yield rows(ALL_MIRRORED)):
        for sql, params in searchrows.statements(MIRROR, f"{o}/{i}/{p}", {}):
            yield run(sql, *params)
        made += 1
    yield run(MARK_BUILT)
    if made:
        yield run(ANALYZE)  # the planner's statistics of the rows just made (both databases)
    return made
