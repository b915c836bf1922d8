"""The text of a doc zip's HTML pages for search (doctext.py): titles and visible text,
no scripts or styles, index.html first, and bounded however hostile the zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from devpi_twisted import doctext
from devpi_twisted.doctext import doc_pages, page_text


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_page_text_keeps_title_and_visible_text() -> None:
    html = (b"<html><head><title> The  Guide </title><style>p {color: red}</style>"
            b"<script>alert('x')</script></head><body><h1>Intro</h1><p>Some &amp; more"
            b"<br>text</p><noscript>enable js</noscript><svg><text>icon</text></svg></body></html>")
    assert page_text(html) == ("The Guide", "Intro Some & more text")
    assert page_text(b"\xff\xfe broken <b>bytes") == ("", "\ufffd\ufffd broken bytes")
    assert page_text(b"<p>" + b"word " * 100 + b"</p>", limit=20)[1] == "word word word word "


def test_doc_pages_in_order(tmp_path: Path) -> None:
    path = _zip(tmp_path / "docs.zip", {
        "z.html": b"<title>Z</title>zed", "sub/a.htm": b"<p>deep</p>", "index.html": b"<title>Home</title>home",
        "style.css": b"body {}", "empty.html": b"<script>only()</script>", "dir/": b""})
    assert [(p.path, p.title, p.text) for p in doc_pages(path)] == [
        ("index.html", "Home", "home"), ("z.html", "Z", "zed"), ("sub/a.htm", "", "deep")]


def test_a_hostile_zip_is_bounded(tmp_path: Path) -> None:
    bomb = b"<p>" + b"a" * (50 * 1024 * 1024) + b"</p>"  # 50 MB of text, a few KB zipped
    path = _zip(tmp_path / "bomb.zip", {"index.html": bomb}, zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 1024 * 1024
    pages = doc_pages(path)
    assert len(pages) == 1 and len(pages[0].text) <= doctext.MAX_PAGE_TEXT
    many = _zip(tmp_path / "many.zip", {f"p{i:04}.html": b"<p>%d</p>" % i for i in range(500)})
    assert len(doc_pages(many)) == doctext.MAX_PAGES
    big = _zip(tmp_path / "big.zip", {f"p{i:03}.html": b"<p>" + b"x " * 40000 + b"</p>"
                                      for i in range(100)})
    assert sum(len(p.text) for p in doc_pages(big)) <= doctext.MAX_TEXT


def test_not_a_zip_gives_no_pages(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"not a zip")
    assert doc_pages(path) == []
    truncated = io.BytesIO()
    with zipfile.ZipFile(truncated, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", b"<p>" + b"text " * 1000 + b"</p>")
    damaged = bytearray(truncated.getvalue())
    damaged[60:200] = b"\x00" * 140  # the member's compressed data
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    assert doc_pages(tmp_path / "damaged.zip") == []
