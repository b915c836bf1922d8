"""Look inside uploaded archives: core metadata of wheels and sdists, doc zip checks.

Blocking (callers run these in a thread) and standard library only. Nothing is
extracted to disk; reads are bounded so that a hostile archive costs bounded
memory and time.
"""

from __future__ import annotations

import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TypeVar

MAX_MEMBER_SIZE = 10 * 1024 * 1024
MAX_MEMBERS = 20_000
MAX_SCAN_BYTES = 512 * 1024 * 1024

# What a damaged or hostile archive makes zipfile, tarfile, gzip, bz2 and zlib
# raise (RuntimeError includes NotImplementedError: encrypted members, unknown
# compression methods; LookupError, ArithmeticError and struct.error come from
# header parsing); anything else (TypeError, AttributeError, ...) is a bug and
# propagates.
_BAD_ARCHIVE = (OSError, EOFError, ValueError, RuntimeError, LookupError, ArithmeticError,
                struct.error, zlib.error, tarfile.TarError, zipfile.BadZipFile)

_NOT_ALNUM_RUN = re.compile(r"[^A-Za-z0-9]+")


_T = TypeVar("_T")


class _Unusable(Exception):
    """The metadata member is too large or not a regular file; never leaves this module."""


def _normalized(name: str) -> str:
    return _NOT_ALNUM_RUN.sub("-", name).lower()


def core_metadata(path: Path | str, filename: str, *, max_member_size: int = MAX_MEMBER_SIZE,
                  max_members: int = MAX_MEMBERS, max_scan_bytes: int = MAX_SCAN_BYTES) -> bytes | None:
    """The core metadata file of a release file at ``path``, uploaded as ``filename``.

    Wheels: ``METADATA`` of the top-level ``<name>-<version>.dist-info`` whose name
    matches the filename's project. sdists (.tar.gz, .tgz, .tar.bz2, .zip): the
    ``PKG-INFO`` one level down. None for other file types, for archives that
    cannot be read, when no such member is among the first ``max_members``, when
    it is not a regular file or larger than ``max_member_size``, or when a tar
    would need more than ``max_scan_bytes`` skipped to reach it. Never raises for
    bad input.
    """
    lowered = filename.lower()
    try:
        if lowered.endswith(".whl"):
            return _wheel_metadata(path, filename, max_member_size, max_members)
        if lowered.endswith(".zip") and not lowered.endswith(".doc.zip"):
            return _zip_pkg_info(path, _stem(filename, ".zip"), max_member_size, max_members)
        for ext in (".tar.gz", ".tgz", ".tar.bz2"):
            if lowered.endswith(ext):
                return _tar_pkg_info(path, _stem(filename, ext), max_member_size, max_members,
                                     max_scan_bytes)
    except (_Unusable, *_BAD_ARCHIVE):
        return None
    return None


def _stem(filename: str, ext: str) -> str:
    return filename[:-len(ext)]


def _top_level(name: str, basename: str) -> str | None:
    """The directory of an archive member ``<dir>/<basename>`` ("./" allowed), else None."""
    member = PurePosixPath(name)
    if len(member.parts) == 2 and member.name == basename and member.parts[0] not in ("/", ".."):
        return member.parts[0]
    return None


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16) or info.file_size > limit:
        raise _Unusable(info.filename)
    with archive.open(info) as member:
        data = member.read(limit + 1)  # zipfile stops at the declared size; check anyway
    if len(data) > limit:
        raise _Unusable(info.filename)
    return data


def _wheel_metadata(path: Path | str, filename: str, limit: int, max_members: int) -> bytes | None:
    parts = filename[:-len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    project = _normalized(parts[0])
    with zipfile.ZipFile(path) as archive:
        found: list[tuple[str, zipfile.ZipInfo]] = []
        for info in archive.infolist()[:max_members]:
            top = _top_level(info.filename, "METADATA")
            if (top is not None and top.endswith(".dist-info")
                    and _normalized(top[:-len(".dist-info")].rsplit("-", 1)[0]) == project):
                found.append((top, info))
        if len(found) > 1:  # several versions of the project: the one of the filename
            found = [(top, info) for top, info in found if top == f"{parts[0]}-{parts[1]}.dist-info"]
        if len(found) != 1:  # none, or ambiguous
            return None
        return _read_zip_member(archive, found[0][1], limit)


def _pick_pkg_info(candidates: Mapping[str, _T], stem: str, complete: bool) -> _T | None:
    """The PKG-INFO in ``<stem>/``, else the only top-level one there is (known only
    when the whole archive was scanned)."""
    if stem in candidates:
        return candidates[stem]
    if complete and len(candidates) == 1:
        return next(iter(candidates.values()))
    return None


def _zip_pkg_info(path: Path | str, stem: str, limit: int, max_members: int) -> bytes | None:
    with zipfile.ZipFile(path) as archive:
        candidates: dict[str, zipfile.ZipInfo] = {}
        infos = archive.infolist()
        for info in infos[:max_members]:
            top = _top_level(info.filename, "PKG-INFO")
            if top is not None:
                candidates.setdefault(top, info)
        chosen = _pick_pkg_info(candidates, stem, complete=len(infos) <= max_members)
        return None if chosen is None else _read_zip_member(archive, chosen, limit)


def _tar_pkg_info(path: Path | str, stem: str, limit: int, max_members: int,
                  max_scan_bytes: int) -> bytes | None:
    # One pass (a compressed tar cannot seek back cheaply): read each candidate as
    # it streams by, stop at ``<stem>/PKG-INFO``, else choose at the end.
    candidates: dict[str, bytes | None] = {}
    complete = False
    with tarfile.open(path, mode="r:*") as archive:
        scanned = 0
        for _ in range(max_members):
            info = archive.next()
            if info is None:
                complete = True
                break
            top = _top_level(info.name, "PKG-INFO")
            if top is not None and top not in candidates:
                candidates[top] = _read_tar_member(archive, info, limit)
                if top == stem:  # the one wanted: the rest need not be decompressed
                    break
            scanned += max(info.size, 0)
            if scanned > max_scan_bytes:
                break
    return _pick_pkg_info(candidates, stem, complete)


def _read_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo, limit: int) -> bytes | None:
    """The member's bytes; None (a candidate that counts but has no content) when it is
    not a regular file or too large."""
    if not info.isreg() or info.size > limit:
        return None
    member = archive.extractfile(info)
    if member is None:
        return None
    data = member.read(limit + 1)
    return data if len(data) <= limit else None


def is_zip(path: Path | str) -> bool:
    """Whether ``path`` is a zip archive whose member list can be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except _BAD_ARCHIVE:
        return False
    return True


class BadDocZip(ValueError):
    """A documentation upload that is not a zip or names paths outside its root."""


_DRIVE = re.compile(r"[A-Za-z]:")


# zipfile reads a zip's whole central directory and makes an object of each entry (about
# 11 bytes of memory per byte of directory): bounded, that is ~45 MiB, some 50,000 files.
MAX_DOC_DIRECTORY = 4 * 1024 * 1024
_END = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")


def _directory_size(path: Path | str) -> int:
    """The size of the central directory the zip's end record declares (0 if none)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        tail_size = min(size, 0xFFFF + _END.size + _ZIP64_LOCATOR.size)
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _END.size:
            return 0  # not a zip: zipfile says so
        entries, directory = _END.unpack_from(tail, at)[4:6]
        if (entries == 0xFFFF or directory == 0xFFFFFFFF) and at >= _ZIP64_LOCATOR.size:
            signature, _, offset, _ = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)
            if signature == b"PK\x06\x07":
                f.seek(offset)
                record = f.read(_ZIP64_END.size)
                if len(record) == _ZIP64_END.size and record[:4] == b"PK\x06\x06":
                    directory = max(directory, _ZIP64_END.unpack(record)[8])
        return int(directory)


def _open_doc_zip(path: Path | str) -> zipfile.ZipFile:
    """The doc zip opened; BadDocZip if it is none or its directory is too large."""
    try:
        directory = _directory_size(path)
        archive = zipfile.ZipFile(path) if directory <= MAX_DOC_DIRECTORY else None
    except _BAD_ARCHIVE as e:
        raise BadDocZip(f"not a zip file: {e}") from None
    if archive is None:
        raise BadDocZip(f"zip directory of {directory} bytes, more than the "
                        f"{MAX_DOC_DIRECTORY} accepted (too many files)")
    return archive


def open_doc_zip(path: Path | str) -> zipfile.ZipFile:
    """The (checked) doc zip opened for reading; BadDocZip if it is none or its
    directory is too large."""
    return _open_doc_zip(path)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """At most ``limit`` bytes of a member (however far it inflates); BadDocZip if damaged."""
    try:
        with archive.open(info) as member:
            return member.read(limit)
    except _BAD_ARCHIVE as e:
        raise BadDocZip(f"damaged zip member {info.filename!r}: {e}") from None


def check_doc_zip(path: Path | str) -> None:
    """Raise BadDocZip unless ``path`` is a readable zip whose members all stay
    below its root: no absolute names, drive letters, '..' parts, NUL or symlinks,
    and whose directory is not too large (MAX_DOC_DIRECTORY)."""
    with _open_doc_zip(path) as archive:
        infos = archive.infolist()
    for info in infos:
        name = info.filename
        parts = re.split(r"[/\\]", name)
        if (name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts or "\x00" in name
                or not name):
            raise BadDocZip(f"zip member {name!r} points outside the documentation root")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BadDocZip(f"zip member {name!r} is a symbolic link")


class DocMember:
    """A file of a documentation zip opened for reading in chunks (blocking reads:
    callers run ``read`` and ``close`` in a thread). Memory stays at one chunk however
    far the member inflates; ``size`` is its declared size, which reads never exceed."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self._archive = archive
        self._file = archive.open(info)
        self.size = info.file_size

    def read(self, count: int) -> bytes:
        """Up to ``count`` bytes; b"" at the end. BadDocZip if the member is damaged."""
        try:
            return self._file.read(count)
        except _BAD_ARCHIVE as e:
            raise BadDocZip(f"damaged zip member: {e}") from None

    def close(self) -> None:
        self._file.close()
        self._archive.close()


def open_doc_member(path: Path | str, member: str) -> DocMember | None:
    """The file ``member`` of the (checked) doc zip at ``path`` opened for reading; a
    directory name gives its ``index.html``; None if there is no such file."""
    member = member.lstrip("/")
    folder = member.rstrip("/")
    archive = _open_doc_zip(path)
    try:
        for candidate in (member, f"{folder}/index.html" if folder else "index.html"):
            if not candidate or candidate.endswith("/"):
                continue
            try:
                info = archive.getinfo(candidate)
            except KeyError:
                continue
            if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
                continue
            return DocMember(archive, info)
    except _BAD_ARCHIVE as e:
        archive.close()
        raise BadDocZip(f"damaged zip member {member!r}: {e}") from None
    except BaseException:
        archive.close()
        raise
    archive.close()
    return None
