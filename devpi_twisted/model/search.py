"""Full-text search over what the server holds (SearchOps): versions of the stages
(name, summary, description, keywords, classifiers), the pages of their uploaded
documentation, and the names of the projects mirrors hold. The database's own engine
finds and ranks (storage/searchplans.py); here the reader's query becomes words of
letters and digits only (no user text reaches the engine's query syntax, so no query
can fail to parse), the stages the reader may read are chosen (model/acl.py
``may_read``; storage counts and ranks over those alone, so nothing of another index
shows, not even in the total), and storage's rows become hits linking to the
version, doc page or project.

A mirror's project names are in the database once it holds a page of the project;
the names of its upstream list (up to some 700,000, kept by the mirror, not in the
database) are found by their exact name: a query that is a project's name gives that
project first, without any page fetched.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import quote

import attrs

from devpi_twisted.model.acl import Identity, may_read
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import normalize_project
from devpi_twisted.storage.interface import DocPage, IndexRecord, SearchQuery, SearchRow, Storage
from devpi_twisted.storage.values import MirrorConfig

# a mirror's upstream project list (normalised name -> as upstream spells it), None if
# it has none yet: mirror/names.py
MirrorNames = Callable[[str, MirrorConfig], "Mapping[str, str] | None"]
LISTED_SCORE = 1.0  # the score of an exact name from a mirror's list (shown first)
DOCZIP = "doczip"  # the rel of a version's documentation link
# the text of the pages of a stored doc zip (its relpath): doctext.py, off the reactor
StoredDocText = Callable[[str], Awaitable[Sequence[DocPage]]]
MAX_QUERY = 200  # characters of a query
MAX_WORDS = 16  # words of a query
MAX_NAME = 200  # characters of a user or index filter
PER_PAGE = 20
MAX_PAGE = 50  # pages of results one may ask for (1000 hits)
START, STOP = "\x01", "\x02"  # storage's markers around a match in a snippet

_TOKEN = re.compile(r"[^\W_]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # (tabs, line ends: spaces)


@attrs.frozen
class SearchHit:
    """One found document. ``kind``: "project" (its name or summary matched),
    "description" (only its description, keywords or classifiers), "doc" (a page of its
    documentation) or "name" (a project a mirror holds; ``version`` None). ``snippet``:
    text pieces, True for a match (plain text: the page escapes it). ``path``: the URL
    path below the server root."""

    user: str
    index: str
    project: str
    version: str | None
    kind: str
    title: str
    snippet: tuple[tuple[str, bool], ...]
    path: str
    score: float


@attrs.frozen
class SearchResults:
    """One page of hits, best first; ``total``: hits on all pages."""

    query: str
    hits: tuple[SearchHit, ...]
    total: int
    page: int
    per_page: int


def query_words(query: str) -> tuple[tuple[str, ...], ...]:
    """The words of a query, each the letters-and-digits tokens it holds (``my-pkg``:
    ``("my", "pkg")``, found as a phrase); InvalidInput if it is too long or holds
    control characters. Punctuation alone gives no words (nothing is found)."""
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"the search query is longer than {MAX_QUERY} characters")
    if _CONTROL.search(query):
        raise InvalidInput("the search query holds control characters")
    words = []
    for word in query.split():
        tokens = tuple(t.lower() for t in _TOKEN.findall(word))
        if tokens:
            words.append(tokens)
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"the search query has more than {MAX_WORDS} words")
    return tuple(words)


def snippet_pieces(text: str) -> tuple[tuple[str, bool], ...]:
    """Storage's snippet (matches between START and STOP) as (text, matched) pieces."""
    pieces: list[tuple[str, bool]] = []
    rest = text
    while rest:
        before, start, after = rest.partition(START)
        if before:
            pieces.append((before.replace(STOP, ""), False))
        if not start:
            break
        match, _, rest = after.partition(STOP)
        if match:
            pieces.append((match, True))
    return tuple(pieces)


def _segment(text: str) -> str:
    return quote(text, safe="")


def hit(row: SearchRow) -> SearchHit:
    """The hit of a row storage found."""
    user, index = row.stage.split("/", 1)
    base = f"/{_segment(user)}/{_segment(index)}/{_segment(row.project)}"
    snippet = snippet_pieces(row.snippet)
    if row.kind == "name" or row.version is None:
        return SearchHit(user, index, row.display, None, "name", row.display, snippet, base,
                         row.score)
    path = f"{base}/{_segment(row.version)}"
    if row.kind == "doc":
        page = row.page or "index.html"
        return SearchHit(user, index, row.display, row.version, "doc",
                         f"{row.display} {row.version}: {row.title or page}", snippet,
                         f"{path}/+d/{quote(page, safe='/')}", row.score)
    kind = "project" if row.in_title else "description"
    return SearchHit(user, index, row.display, row.version, kind,
                     f"{row.display} {row.version}", snippet, path, row.score)


class SearchOps:
    """Searches for a reader over the indexes it may read; ``mirror_names``: the
    mirrors' upstream project lists (None: names of cached projects only)."""

    def __init__(self, storage: Storage, mirror_names: MirrorNames | None = None) -> None:
        self._storage = storage
        self._mirror_names = mirror_names

    async def readable_indexes(self, reader: Identity, user: str | None = None,
                               index: str | None = None) -> list[IndexRecord]:
        """The indexes ``reader`` may read (of ``user``, named ``index``)."""
        return [record for record in await self._storage.list_indexes(user)
                if (index is None or record.index == index)
                and may_read(reader, record.user, record.index, record.config.acl_read)]

    async def readable(self, reader: Identity, user: str | None = None,
                       index: str | None = None) -> tuple[str, ...]:
        """``user/index`` of the indexes ``reader`` may read (of ``user``, named ``index``)."""
        return tuple(r.name for r in await self.readable_indexes(reader, user, index))

    async def _listed(self, indexes: list[IndexRecord], words: tuple[tuple[str, ...], ...],
                      projects: frozenset[str] | None) -> list[SearchHit]:
        """Hits of the mirrors' upstream lists: the project named as the query, where the
        mirror holds no page of it (then storage has its name row and finds it)."""
        if self._mirror_names is None:
            return []
        wanted = normalize_project("-".join(t for tokens in words for t in tokens))
        if projects is not None and wanted not in projects:
            return []
        found = []
        for record in indexes:
            if not isinstance(record.config, MirrorConfig):
                continue
            names = self._mirror_names(record.name, record.config)
            if not names or wanted not in names:
                continue
            if await self._storage.get_mirror_project(record.user, record.index, wanted) is not None:
                continue
            display = names[wanted]
            found.append(SearchHit(record.user, record.index, display, None, "name", display,
                                   ((display, True),),
                                   f"/{_segment(record.user)}/{_segment(record.index)}/"
                                   f"{_segment(wanted)}", LISTED_SCORE))
        return found

    async def search(self, reader: Identity, query: str, *, user: str | None = None,
                     index: str | None = None, page: int = 1) -> SearchResults:
        """Page ``page`` of what ``query`` finds on the indexes ``reader`` may read (of
        ``user``, named ``index``). InvalidInput for a query too long or a bad page."""
        for name, value in (("user", user), ("index", index)):
            if value is not None and (len(value) > MAX_NAME or _CONTROL.search(value)):
                raise InvalidInput(f"the search filter '{name}' is not an index name")
        if not 1 <= page <= MAX_PAGE:
            raise InvalidInput(f"the search page must be between 1 and {MAX_PAGE}")
        words = query_words(query)
        empty = SearchResults(query, (), 0, page, PER_PAGE)
        if not words:
            return empty
        indexes = await self.readable_indexes(reader, user, index)
        if not indexes:
            return empty
        projects = reader.scope.projects if reader.scope is not None and not reader.replica else None
        listed = await self._listed(indexes, words, projects)
        # the listed names come first: this page's share of them, then storage's rows
        start = (page - 1) * PER_PAGE
        shown = listed[start:start + PER_PAGE]
        found = await self._storage.search(SearchQuery(
            words, tuple(r.name for r in indexes), PER_PAGE - len(shown),
            max(0, start - len(listed)), None if projects is None else tuple(sorted(projects))))
        return SearchResults(query, tuple(shown) + tuple(hit(row) for row in found.rows),
                             len(listed) + found.total, page, PER_PAGE)


async def build_docs(storage: Storage, doc_text: StoredDocText) -> int:
    """The search text of documentation stored before search existed (after
    ``Storage.build_search`` made the other rows of such a database): one change per
    version with docs and no text yet, so replicas get it too. Returns how many."""
    made = 0
    for record in await storage.list_indexes():
        if record.config.is_mirror:
            continue
        for project in await storage.list_projects(record.user, record.index):
            for version in await storage.get_versions(record.user, record.index, project):
                docs = [link for link in version.data.links if link.rel == DOCZIP]
                if not docs or await storage.get_doc_pages(record.user, record.index, project,
                                                           version.version):
                    continue
                pages = await doc_text(docs[-1].entrypath)
                if pages:
                    name = str(version.data.metadata.get("name") or project)
                    await storage.write_doc_pages(record.user, record.index, project,
                                                  version.version, name, pages)
                    made += 1
    return made
