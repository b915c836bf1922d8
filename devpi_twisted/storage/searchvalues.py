"""What full-text search hands to and gets from storage (interface.Storage.search,
write_release's ``docs``): the text of a documentation page, a query reduced to
tokens, the rows found. Kept apart from interface.py, which re-exports them."""

from __future__ import annotations

import attrs


@attrs.frozen
class DocPage:
    """The text of one HTML page of a documentation zip: its path in the zip, title, text."""

    path: str
    title: str
    text: str

    def to_json(self) -> list[str]:
        return [self.path, self.title, self.text]


@attrs.frozen
class SearchQuery:
    """A full-text search as storage runs it: ``words``, each a phrase of tokens (letters
    and digits only), all required, the last one a prefix; only rows of ``stages``
    (``user/index``: those the reader may read) count, and of ``projects`` (normalised
    names) unless None; one page of rows."""

    words: tuple[tuple[str, ...], ...]
    stages: tuple[str, ...]
    limit: int
    offset: int
    projects: tuple[str, ...] | None = None


@attrs.frozen
class SearchRow:
    """A found document. ``kind``: "version", "doc" or "name"; ``snippet``: text around
    the matches, each match between \\x01 and \\x02; ``in_title``: the name or title
    matched (not only the body); ``score``: higher is better."""

    stage: str
    project: str
    version: str | None
    kind: str
    page: str | None
    display: str
    title: str
    snippet: str
    in_title: bool
    score: float


@attrs.frozen
class SearchPage:
    """The rows of one page of a search, best first, and how many match in all."""

    total: int
    rows: tuple[SearchRow, ...]
