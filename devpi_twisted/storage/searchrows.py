"""The rows of the full-text search tables (migrations 0006 sqlite, 0008 postgres), as
the changes of every write make them: ``statements`` gives the SQL that brings the
search rows in line with one changelog record, and plans.py runs it where it applies
the record, in the same transaction. Workers and replicas apply the same records
(replication imports changelog entries through the same code), so their search rows
follow too. The SQL is the same for both databases: sqlite's FTS5 table follows
``search_docs`` by triggers, PostgreSQL computes the ``tsvector`` column itself.

Rows (``kind``): ``version`` (a version of a stage: name, summary, description,
keywords, classifiers), ``doc`` (a page of its uploaded documentation; the pages
travel in the changelog as a DOCTEXT record, extracted once where the zip was
uploaded), ``name`` (a project a mirror index holds a page of).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from devpi_twisted.storage.interface import DOCTEXT, INDEX, MIRROR, VERSION, DocPage, Record

MAX_TEXT = 64 * 1024  # characters of the body of one row (a description, a doc page)
MAX_TITLE = 1000
MAX_DOC_PAGES = 200  # pages of one version's documentation
# characters of all pages of one version's documentation (they travel in a changelog
# entry: a burst of doc uploads must not make a catch-up's batch huge)
MAX_DOC_TEXT = 256 * 1024

COLUMNS = "(stage, project, version, kind, page, display, name, title, body, tag)"
INSERT_ROW = f"INSERT INTO search_docs {COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# a mirror's page is stored again on every refresh: its name row only once
INSERT_NAME = (f"INSERT INTO search_docs {COLUMNS} SELECT ?, ?, NULL, 'name', NULL, ?, ?, '', '', ? "
               "WHERE NOT EXISTS (SELECT 1 FROM search_docs WHERE stage = ? AND project = ? "
               "AND version IS NULL AND kind = 'name')")
DELETE_NAME = ("DELETE FROM search_docs WHERE stage = ? AND project = ? AND version IS NULL "
               "AND kind = 'name'")
DELETE_KIND = "DELETE FROM search_docs WHERE stage = ? AND project = ? AND version = ? AND kind = ?"
# a version's row replaced only when a searchable column differs (the values are never
# NULL: ``clean`` makes "" of None), and inserted only when there is none then: no read
# before the write, so the statements go with the next round trip (pgpool.Pipeline)
DELETE_CHANGED = ("DELETE FROM search_docs WHERE stage = ? AND project = ? AND version = ? "
                  "AND kind = 'version' AND NOT (display = ? AND name = ? AND title = ? "
                  "AND body = ? AND tag = ?)")
INSERT_MISSING = (f"INSERT INTO search_docs {COLUMNS} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
                  "WHERE NOT EXISTS (SELECT 1 FROM search_docs WHERE stage = ? AND project = ? "
                  "AND version = ? AND kind = 'version')")
DELETE_VERSION = "DELETE FROM search_docs WHERE stage = ? AND project = ? AND version = ?"
DELETE_STAGE = "DELETE FROM search_docs WHERE stage = ?"

# what the database's own text may not hold (NUL), and the markers of snippets
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAME_PARTS = re.compile(r"[-_.]+")


def doc_pages(value: Any) -> list[DocPage]:
    """The pages of a DOCTEXT record's value (``{"pages": [[path, title, text], ...]}``)."""
    pages = value.get("pages", []) if isinstance(value, Mapping) else []
    return [DocPage(str(p[0]), str(p[1]), str(p[2])) for p in pages[:MAX_DOC_PAGES]
            if isinstance(p, list) and len(p) == 3]


def capped_pages(pages: Iterable[DocPage]) -> list[DocPage]:
    """At most MAX_DOC_PAGES pages and MAX_DOC_TEXT characters in all (what a DOCTEXT
    record carries)."""
    kept: list[DocPage] = []
    total = 0
    for page in pages:
        if len(kept) >= MAX_DOC_PAGES or total >= MAX_DOC_TEXT:
            break
        text = clean(page.text, min(MAX_TEXT, MAX_DOC_TEXT - total))
        kept.append(DocPage(page.path, clean(page.title, MAX_TITLE), text))
        total += len(text)
    return kept


def doc_text(key: str, name: str, pages: Sequence[DocPage]) -> Record:
    """The DOCTEXT record of a version's documentation (``key``: user/index/project/
    version; ``name``: the project as shown), its pages capped (capped_pages)."""
    return Record(DOCTEXT, key, {"name": name, "pages": [p.to_json() for p in capped_pages(pages)]})


def clean(text: Any, limit: int = MAX_TEXT) -> str:
    """Text as stored in a row: a string, no control characters, at most ``limit`` long."""
    if text is None:
        return ""
    if isinstance(text, (list, tuple)):
        text = " ".join(str(t) for t in text)
    return _CONTROL.sub(" ", str(text)[:limit])


def stage_tag(stage: str) -> str:
    """One token (letters and digits) standing for a stage in sqlite's FTS5 table."""
    return "stage" + hashlib.sha256(stage.encode("utf-8")).hexdigest()[:20]


def name_text(project: str, display: str) -> str:
    """The name column: the name as shown and normalised, and the parts between ``-_.``
    (so ``my_pkg`` is found as ``my pkg``)."""
    names = {display, project, _NAME_PARTS.sub(" ", display)}
    return clean(" ".join(sorted(names)), MAX_TITLE)


def yanked(data: Mapping[str, Any]) -> bool:
    """A version whose release files are all yanked (PEP 592) is left out of search."""
    files = [link for link in data.get("+elinks") or () if isinstance(link, Mapping)
             and link.get("rel") == "releasefile"]
    return bool(files) and all(link.get("yanked") not in (None, False) for link in files)


def version_row(stage: str, project: str, version: str, data: Mapping[str, Any]) -> tuple[Any, ...]:
    display = clean(data.get("name") or project, MAX_TITLE)
    body = " ".join(t for t in (clean(data.get("keywords"), MAX_TITLE),
                                clean(data.get("classifiers"), 8 * MAX_TITLE),
                                clean(data.get("description"))) if t)
    return (stage, project, version, "version", None, display, name_text(project, display),
            clean(data.get("summary"), MAX_TITLE), body, stage_tag(stage))


def searchable(key: str, value: Any) -> tuple[Any, ...] | None:
    """The search row a VERSION record's value should have (``key``: user/index/project/
    version), None if it should have none (deleted, or all its files yanked)."""
    if not isinstance(value, Mapping) or yanked(value):
        return None
    owner, index, project, version = key.split("/", 3)
    return version_row(f"{owner}/{index}", project, version, value)


def version_changes(key: str, row: tuple[Any, ...] | None) -> Iterable[tuple[str, Sequence[Any]]]:
    """SQL bringing a version's search row to ``row`` (``searchable``) that writes nothing
    when it is already so (a second file of a version, a yank of one file of several), so
    the full-text index is not written again for nothing."""
    owner, index, project, version = key.split("/", 3)
    where = (f"{owner}/{index}", project, version)
    if row is None:
        yield DELETE_KIND, (*where, "version")
        return
    yield DELETE_CHANGED, (*where, *row[5:])
    yield INSERT_MISSING, (*row, *where)


def statements(type_: str, key: str, value: Any) -> Iterable[tuple[str, Sequence[Any]]]:
    """SQL and parameters that update the search rows for one changelog record."""
    if type_ == VERSION:
        owner, index, project, version = key.split("/", 3)
        stage = f"{owner}/{index}"
        if value is None:  # the version is gone: its docs with it
            yield DELETE_VERSION, (stage, project, version)
            return
        yield DELETE_KIND, (stage, project, version, "version")
        if isinstance(value, Mapping) and not yanked(value):
            yield INSERT_ROW, version_row(stage, project, version, value)
    elif type_ == DOCTEXT:
        owner, index, project, version = key.split("/", 3)
        stage = f"{owner}/{index}"
        yield DELETE_KIND, (stage, project, version, "doc")
        display = clean(value.get("name") or project, MAX_TITLE) if isinstance(value, Mapping) else ""
        for page in doc_pages(value):
            yield INSERT_ROW, (stage, project, version, "doc", page.path, display,
                               name_text(project, display), clean(page.title, MAX_TITLE),
                               clean(page.text), stage_tag(stage))
    elif type_ == MIRROR:
        owner, index, project = key.split("/", 2)
        stage = f"{owner}/{index}"
        if value is None:
            yield DELETE_NAME, (stage, project)
        else:
            yield INSERT_NAME, (stage, project, project, name_text(project, project),
                                stage_tag(stage), stage, project)
    elif type_ == INDEX and value is None:
        yield DELETE_STAGE, (key,)
