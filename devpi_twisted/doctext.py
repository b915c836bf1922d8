"""The text of a documentation zip's HTML pages, for search (storage/searchrows.py
stores it): title and visible text of each ``.html``/``.htm`` member, without
scripts and styles. Blocking and CPU-bound: callers run it in a thread. A hostile
zip cannot make it use much memory or time: at most MAX_PAGES pages are read, each
at most MAX_PAGE_BYTES of inflated HTML, and at most MAX_TEXT characters of text are
kept in all."""

from __future__ import annotations

import re
import stat
from html.parser import HTMLParser
from pathlib import Path

from devpi_twisted.archives import open_doc_zip, read_member
from devpi_twisted.storage import searchrows
from devpi_twisted.storage.interface import DocPage

MAX_PAGES = searchrows.MAX_DOC_PAGES
MAX_PAGE_BYTES = 1024 * 1024  # inflated HTML read of one page
MAX_PAGE_TEXT = searchrows.MAX_TEXT  # characters of text kept of one page
MAX_TEXT = searchrows.MAX_DOC_TEXT  # characters of text kept of all pages
_SKIPPED = frozenset({"script", "style", "template", "noscript", "svg"})
_SPACE = re.compile(r"\s+")


class _TextParser(HTMLParser):
    """Collects a page's title and visible text (up to a limit)."""

    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self._limit = limit
        self._size = 0
        self._skipping = 0
        self._in_title = False
        self.title: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._in_title:
            if sum(map(len, self.title)) < 1000:
                self.title.append(data)
        elif self._size < self._limit:
            self.text.append(data)
            self._size += len(data)


def page_text(read: bytes, limit: int = MAX_PAGE_TEXT) -> tuple[str, str]:
    """(title, text) of an HTML page's bytes (UTF-8, undecodable bytes replaced)."""
    parser = _TextParser(limit)
    parser.feed(read.decode("utf-8", errors="replace"))
    parser.close()
    title = _SPACE.sub(" ", "".join(parser.title)).strip()
    text = _SPACE.sub(" ", " ".join(parser.text)).strip()[:limit]
    return title, text


def doc_pages(path: Path | str) -> list[DocPage]:
    """The pages of the (checked) doc zip at ``path``, ``index.html`` first, then by
    depth and name; what was read before a damaged member (none for a damaged zip)."""
    pages: list[DocPage] = []
    total = 0
    try:
        with open_doc_zip(path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()
                     and not stat.S_ISLNK(info.external_attr >> 16)
                     and info.filename.lower().endswith((".html", ".htm"))]
            infos.sort(key=lambda i: (i.filename != "index.html", i.filename.count("/"), i.filename))
            for info in infos[:MAX_PAGES]:
                if total >= MAX_TEXT:
                    break
                title, text = page_text(read_member(archive, info, MAX_PAGE_BYTES),
                                        min(MAX_PAGE_TEXT, MAX_TEXT - total))
                if title or text:
                    pages.append(DocPage(info.filename.lstrip("/"), title, text))
                    total += len(text)
    except Exception:  # (BadDocZip, a page the parser gives up on): text is best effort
        return pages
    return pages
