"""Documentation zips: members read in chunks whatever they inflate to, directory
names lead to their index.html, and zips whose directory is too large are refused."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from devpi_twisted.archives import (
    MAX_DOC_DIRECTORY, BadDocZip, check_doc_zip, open_doc_member,
)

MiB = 1024 * 1024


def _zip(path: Path, pages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in pages.items():
            archive.writestr(name, data)
    return path


def _read_all(path: Path, member: str, chunk: int = 1000) -> tuple[int, bytes, int]:
    opened = open_doc_member(path, member)
    assert opened is not None
    try:
        data, largest = b"", 0
        while piece := opened.read(chunk):
            largest = max(largest, len(piece))
            data += piece
        return opened.size, data, largest
    finally:
        opened.close()


def test_members_are_read_in_chunks_of_the_size_asked(tmp_path: Path) -> None:
    page = b"<p>" + b"x" * 100_000 + b"</p>"
    path = _zip(tmp_path / "d.zip", {"index.html": page})
    size, data, largest = _read_all(path, "index.html")
    assert (size, data, largest) == (len(page), page, 1000)


@pytest.mark.parametrize("member,expected", [
    ("", b"home"), ("/", b"home"), ("index.html", b"home"), ("api", b"api"),
    ("api/", b"api"), ("api/index.html", b"api"), ("api/x.svg", b"<svg/>"),
])
def test_directory_names_lead_to_their_index(tmp_path: Path, member: str, expected: bytes) -> None:
    path = _zip(tmp_path / "d.zip", {"index.html": b"home", "api/index.html": b"api",
                                     "api/x.svg": b"<svg/>"})
    assert _read_all(path, member)[1] == expected


def test_missing_pages_directories_and_links_are_no_page(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("sub/", b"")
        link = zipfile.ZipInfo("link.html")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, b"/etc/passwd")
    for member in ["nothing.html", "sub/", "sub", "link.html"]:
        assert open_doc_member(path, member) is None, member


def test_a_damaged_member_fails_while_read(tmp_path: Path) -> None:
    path = _zip(tmp_path / "d.zip", {"index.html": b"a" * 1000})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"index.html") + len("index.html") + 2] ^= 0xFF  # in the deflated data
    path.write_bytes(bytes(raw))
    with pytest.raises(BadDocZip):
        _read_all(path, "index.html")


@pytest.mark.parametrize("files,name_length", [(40_000, 90), (70_000, 40)])  # the 2nd: zip64
def test_a_zip_with_a_huge_directory_is_refused_unopened(tmp_path: Path, files: int,
                                                         name_length: int) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(files):
            archive.writestr(f"{i:0{name_length}d}", b"")
    with zipfile.ZipFile(path) as archive:  # (the directory is what zipfile holds whole)
        assert sum(46 + len(info.filename) for info in archive.infolist()) > MAX_DOC_DIRECTORY
    with pytest.raises(BadDocZip, match="too many files"):
        check_doc_zip(path)
    with pytest.raises(BadDocZip, match="too many files"):
        open_doc_member(path, "index.html")


def test_an_ordinary_doc_zip_passes(tmp_path: Path) -> None:
    pages = {f"page{i}/index.html": b"<p>page</p>" for i in range(2000)}
    check_doc_zip(_zip(tmp_path / "d.zip", pages))
