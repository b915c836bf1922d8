"""Core metadata from wheels and sdists, doc zip checks: real archives built in tmp_path."""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devpi_twisted.archives import MAX_MEMBER_SIZE, BadDocZip, check_doc_zip, core_metadata

METADATA = b"Metadata-Version: 2.1\nName: hello-world\nVersion: 1.1\n"
OTHER = b"Metadata-Version: 2.1\nName: other\nVersion: 9\n"
TarMode = Literal["w", "w:gz", "w:bz2"]


def zip_file(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tar_file(path: Path, members: dict[str, bytes], mode: TarMode = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def wheel(tmp_path: Path, filename: str = "hello_world-1.1-py3-none-any.whl",
          members: dict[str, bytes] | None = None) -> tuple[Path, str]:
    if members is None:
        members = {"hello_world/__init__.py": b"",
                   "hello_world-1.1.dist-info/METADATA": METADATA,
                   "hello_world-1.1.dist-info/RECORD": b""}
    return zip_file(tmp_path / filename, members), filename


def sdist_members(top: str = "hello_world-1.1") -> dict[str, bytes]:
    return {f"{top}/setup.py": b"", f"{top}/src/hello_world.egg-info/PKG-INFO": OTHER,
            f"{top}/PKG-INFO": METADATA, f"{top}/README": b"hi"}


# -- wheels -------------------------------------------------------------------------


def test_wheel_metadata_is_read(tmp_path: Path) -> None:
    assert core_metadata(*wheel(tmp_path)) == METADATA


def test_wheel_metadata_accepts_a_str_path(tmp_path: Path) -> None:
    path, filename = wheel(tmp_path)
    assert core_metadata(str(path), filename) == METADATA


def test_wheel_dist_info_matches_the_filename_name_normalised(tmp_path: Path) -> None:
    members = {"Hello.World-1.1.dist-info/METADATA": METADATA}
    assert core_metadata(*wheel(tmp_path, "hello_world-1.1-py3-none-any.whl", members)) == METADATA


def test_wheel_ignores_vendored_and_foreign_dist_infos(tmp_path: Path) -> None:
    members = {"hello_world/_vendor/other-9.dist-info/METADATA": OTHER,
               "other-9.dist-info/METADATA": OTHER,
               "hello_world-1.1.dist-info/METADATA": METADATA}
    assert core_metadata(*wheel(tmp_path, members=members)) == METADATA


def test_wheel_with_two_dist_infos_of_its_project_takes_its_version(tmp_path: Path) -> None:
    members = {"hello_world-1.0.dist-info/METADATA": OTHER,
               "hello_world-1.1.dist-info/METADATA": METADATA}
    assert core_metadata(*wheel(tmp_path, members=members)) == METADATA


def test_wheel_with_two_matching_dist_infos_of_no_version_gives_none(tmp_path: Path) -> None:
    members = {"hello_world-1.0.dist-info/METADATA": OTHER,
               "Hello_World-2.0.dist-info/METADATA": METADATA}
    assert core_metadata(*wheel(tmp_path, members=members)) is None


@pytest.mark.parametrize("members", [
    {"hello_world/__init__.py": b""},
    {"other-9.dist-info/METADATA": OTHER},
    {"hello_world-1.1.dist-info/PKG-INFO": METADATA},
    {"x/hello_world-1.1.dist-info/METADATA": METADATA},
])
def test_wheel_without_its_own_metadata_gives_none(tmp_path: Path, members: dict[str, bytes]) -> None:
    assert core_metadata(*wheel(tmp_path, members=members)) is None


def test_wheel_with_a_filename_of_the_wrong_shape_gives_none(tmp_path: Path) -> None:
    path, _ = wheel(tmp_path)
    assert core_metadata(path, "hello_world.whl") is None


def test_wheel_metadata_that_is_a_directory_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "hello_world-1.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello_world-1.1.dist-info/METADATA/", b"")
    assert core_metadata(path, path.name) is None


def test_wheel_metadata_that_is_a_symlink_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "hello_world-1.1-py3-none-any.whl"
    info = zipfile.ZipInfo("hello_world-1.1.dist-info/METADATA")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, b"/etc/passwd")
    assert core_metadata(path, path.name) is None


def test_wheel_metadata_at_the_size_bound_is_read_and_beyond_is_not(tmp_path: Path) -> None:
    members = {"hello_world-1.1.dist-info/METADATA": METADATA}
    assert core_metadata(*wheel(tmp_path, members=members), max_member_size=len(METADATA)) == METADATA
    assert core_metadata(*wheel(tmp_path, members=members), max_member_size=len(METADATA) - 1) is None


def test_huge_compressed_wheel_metadata_is_refused_at_the_default_bound(tmp_path: Path) -> None:
    members = {"hello_world-1.1.dist-info/METADATA": b"\0" * (MAX_MEMBER_SIZE + 1)}
    path, filename = wheel(tmp_path, members=members)
    assert path.stat().st_size < 100_000  # a small upload that would inflate past the bound
    assert core_metadata(path, filename) is None


def _patch_sizes(path: Path, member: str, size: int) -> None:
    """Make every header of ``member`` claim ``size`` bytes (a lying archive)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, size_offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            if name in data[at:at + 46 + len(name) + 4]:
                struct.pack_into("<I", data, at + size_offset, size)
            start = at + 1
    path.write_bytes(bytes(data))


def test_wheel_whose_headers_understate_the_size_gives_none(tmp_path: Path) -> None:
    path, filename = wheel(tmp_path, members={"hello_world-1.1.dist-info/METADATA": b"x" * 5000},
                           )
    _patch_sizes(path, "hello_world-1.1.dist-info/METADATA", 10)
    assert core_metadata(path, filename, max_member_size=100) is None


def test_wheel_metadata_beyond_the_member_scan_bound_is_not_found(tmp_path: Path) -> None:
    members = {f"hello_world/m{i}.py": b"" for i in range(5)}
    members["hello_world-1.1.dist-info/METADATA"] = METADATA
    assert core_metadata(*wheel(tmp_path, members=members), max_members=6) == METADATA
    assert core_metadata(*wheel(tmp_path, members=members), max_members=5) is None


def _local_header(data: bytearray, member: bytes) -> int:
    at = data.find(b"PK\x03\x04")
    while data[at + 30:at + 30 + len(member)] != member:
        at = data.find(b"PK\x03\x04", at + 1)
    return at


def test_corrupt_deflate_data_gives_none(tmp_path: Path) -> None:
    member = "hello_world-1.1.dist-info/METADATA"
    path, filename = wheel(tmp_path, members={member: METADATA * 50})
    data = bytearray(path.read_bytes())
    at = _local_header(data, member.encode())
    name_length, extra_length = struct.unpack_from("<HH", data, at + 26)
    data[at + 30 + name_length + extra_length] = 0xFF  # deflate block type 3: invalid
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive, pytest.raises(Exception) as info:
        archive.read(member)
    assert not isinstance(info.value, zipfile.BadZipFile)  # zlib's own error escapes zipfile
    assert core_metadata(path, filename) is None


def test_unsupported_compression_method_gives_none(tmp_path: Path) -> None:
    member = "hello_world-1.1.dist-info/METADATA"
    path, filename = wheel(tmp_path, members={member: METADATA})
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, _local_header(data, member.encode()) + 8, 99)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, central + 10, 99)
    path.write_bytes(bytes(data))
    assert core_metadata(path, filename) is None


def test_encrypted_zip_member_gives_none(tmp_path: Path) -> None:
    path, filename = wheel(tmp_path, members={"hello_world-1.1.dist-info/METADATA": METADATA})
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        struct.pack_into("<H", data, at + flag_offset, 0x1)  # "encrypted"
    path.write_bytes(bytes(data))
    assert core_metadata(path, filename) is None


# -- sdists -------------------------------------------------------------------------


@pytest.mark.parametrize(("ext", "mode"), [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"),
                                           (".TAR.GZ", "w:gz")])
def test_sdist_tar_pkg_info_is_read(tmp_path: Path, ext: str, mode: TarMode) -> None:
    path = tar_file(tmp_path / f"hello_world-1.1{ext}", sdist_members(), mode)
    assert core_metadata(path, path.name) == METADATA


def test_sdist_zip_pkg_info_is_read(tmp_path: Path) -> None:
    path = zip_file(tmp_path / "hello_world-1.1.zip", sdist_members())
    assert core_metadata(path, path.name) == METADATA


def test_sdist_members_with_dot_slash_prefix_are_found(tmp_path: Path) -> None:
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", {"./hello_world-1.1/PKG-INFO": METADATA})
    assert core_metadata(path, path.name) == METADATA


def test_sdist_whose_directory_is_named_otherwise_still_gives_its_only_pkg_info(tmp_path: Path) -> None:
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", sdist_members("Hello-World-1.1"))
    assert core_metadata(path, path.name) == METADATA


def test_sdist_with_several_top_level_pkg_infos_prefers_its_own_directory(tmp_path: Path) -> None:
    members = {"other-9/PKG-INFO": OTHER, "hello_world-1.1/PKG-INFO": METADATA}
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", members)
    assert core_metadata(path, path.name) == METADATA
    path = zip_file(tmp_path / "hello_world-1.1.zip", members)
    assert core_metadata(path, path.name) == METADATA


def test_sdist_with_several_foreign_pkg_infos_gives_none(tmp_path: Path) -> None:
    members = {"a-1/PKG-INFO": OTHER, "b-1/PKG-INFO": OTHER}
    assert core_metadata(tar_file(tmp_path / "hello_world-1.1.tar.gz", members), "hello_world-1.1.tar.gz") is None
    assert core_metadata(zip_file(tmp_path / "hello_world-1.1.zip", members), "hello_world-1.1.zip") is None


@pytest.mark.parametrize("members", [
    {"hello_world-1.1/src/hello_world.egg-info/PKG-INFO": METADATA},
    {"PKG-INFO": METADATA},
    {"/hello_world-1.1/PKG-INFO": METADATA},
    {"../PKG-INFO": METADATA},
    {"hello_world-1.1/setup.py": b""},
])
def test_sdist_without_a_top_level_pkg_info_gives_none(tmp_path: Path, members: dict[str, bytes]) -> None:
    assert core_metadata(tar_file(tmp_path / "hello_world-1.1.tar.gz", members), "hello_world-1.1.tar.gz") is None
    assert core_metadata(zip_file(tmp_path / "hello_world-1.1.zip", members), "hello_world-1.1.zip") is None


@pytest.mark.parametrize(("kind", "linkname"), [(tarfile.SYMTYPE, "setup.py"),
                                               (tarfile.LNKTYPE, "hello_world-1.1/setup.py")])
def test_sdist_pkg_info_that_is_a_link_gives_none(tmp_path: Path, kind: bytes, linkname: str) -> None:
    # tarfile would follow either link to setup.py, which here holds metadata
    path = tmp_path / "hello_world-1.1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        target = tarfile.TarInfo("hello_world-1.1/setup.py")
        target.size = len(METADATA)
        archive.addfile(target, io.BytesIO(METADATA))
        link = tarfile.TarInfo("hello_world-1.1/PKG-INFO")
        link.type, link.linkname = kind, linkname
        archive.addfile(link)
    with tarfile.open(path) as archive:
        link_file = archive.extractfile("hello_world-1.1/PKG-INFO")
        assert link_file is not None and link_file.read() == METADATA
    assert core_metadata(path, path.name) is None


def test_sdist_pkg_info_that_is_a_dangling_link_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "hello_world-1.1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        link = tarfile.TarInfo("hello_world-1.1/PKG-INFO")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    assert core_metadata(path, path.name) is None


def test_sdist_reading_stops_at_its_own_pkg_info(tmp_path: Path) -> None:
    # what follows is never decompressed: here it is cut off and would fail
    members = {"hello_world-1.1/PKG-INFO": METADATA,
               **{f"hello_world-1.1/f{i}": os.urandom(2000) for i in range(20)}}
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", members)
    full = path.read_bytes()
    path.write_bytes(full[:len(full) // 2])
    assert core_metadata(path, path.name) == METADATA


def test_sdist_pkg_info_beyond_the_size_bound_gives_none(tmp_path: Path) -> None:
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", sdist_members())
    assert core_metadata(path, path.name, max_member_size=len(METADATA)) == METADATA
    assert core_metadata(path, path.name, max_member_size=len(METADATA) - 1) is None
    path = zip_file(tmp_path / "hello_world-1.1.zip", sdist_members())
    assert core_metadata(path, path.name, max_member_size=len(METADATA) - 1) is None


def test_huge_sdist_pkg_info_is_refused_at_the_default_bound(tmp_path: Path) -> None:
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz",
                    {"hello_world-1.1/PKG-INFO": b"\0" * (MAX_MEMBER_SIZE + 1)})
    assert path.stat().st_size < 100_000
    assert core_metadata(path, path.name) is None


def test_sdist_pkg_info_beyond_the_member_scan_bound_is_not_found(tmp_path: Path) -> None:
    members = {f"hello_world-1.1/m{i}.py": b"" for i in range(5)}
    members["hello_world-1.1/PKG-INFO"] = METADATA
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", members)
    assert core_metadata(path, path.name, max_members=6) == METADATA
    assert core_metadata(path, path.name, max_members=5) is None


def test_a_lone_foreign_pkg_info_counts_only_when_the_whole_archive_was_scanned(tmp_path: Path) -> None:
    members = {"other-9/PKG-INFO": OTHER, "other-9/a": b"", "other-9/b": b""}
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", members)
    assert core_metadata(path, path.name) == OTHER
    assert core_metadata(path, path.name, max_members=2) is None
    path = zip_file(tmp_path / "hello_world-1.1.zip", members)
    assert core_metadata(path, path.name) == OTHER
    assert core_metadata(path, path.name, max_members=2) is None


def test_sdist_scan_stops_after_the_byte_bound(tmp_path: Path) -> None:
    members = {"hello_world-1.1/big.bin": b"\0" * 100_000, "hello_world-1.1/PKG-INFO": METADATA}
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", members)
    assert core_metadata(path, path.name, max_scan_bytes=100_000) == METADATA
    assert core_metadata(path, path.name, max_scan_bytes=99_999) is None


def test_sdist_members_are_never_extracted(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    members = {"../escaped": b"x", f"{tmp_path}/absolute": b"x", "hello_world-1.1/PKG-INFO": METADATA}
    path = tar_file(target / "hello_world-1.1.tar.gz", members)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert core_metadata(path, path.name) == METADATA
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_plain_tar_named_tar_gz_is_read(tmp_path: Path) -> None:
    path = tar_file(tmp_path / "hello_world-1.1.tar.gz", sdist_members(), mode="w")
    assert core_metadata(path, path.name) == METADATA


# -- other and broken files ------------------------------------------------------------------


@pytest.mark.parametrize("filename", ["hello_world-1.1.egg", "hello_world-1.1.exe", "hello_world-1.1.doc.zip",
                                      "hello_world-1.1.tar.xz", "hello_world-1.1"])
def test_other_file_types_give_none(tmp_path: Path, filename: str) -> None:
    path = zip_file(tmp_path / filename, sdist_members())
    assert core_metadata(path, filename) is None


@pytest.mark.parametrize("filename", ["hello_world-1.1-py3-none-any.whl", "hello_world-1.1.zip",
                                      "hello_world-1.1.tar.gz", "hello_world-1.1.tar.bz2"])
@pytest.mark.parametrize("content", [b"", b"not an archive", b"PK\x03\x04" + b"\xff" * 100,
                                     b"\x1f\x8b\x08\x00" + b"\x00" * 50, os.urandom(4096)])
def test_garbage_gives_none(tmp_path: Path, filename: str, content: bytes) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    assert core_metadata(path, filename) is None


def test_wrong_kind_of_archive_gives_none(tmp_path: Path) -> None:
    zipped = zip_file(tmp_path / "a.zip", sdist_members())
    tarred = tar_file(tmp_path / "a.tar.gz", sdist_members())
    assert core_metadata(zipped, "hello_world-1.1.tar.gz") is None
    assert core_metadata(tarred, "hello_world-1.1.zip") is None
    assert core_metadata(tarred, "hello_world-1.1-py3-none-any.whl") is None


def test_missing_file_gives_none(tmp_path: Path) -> None:
    assert core_metadata(tmp_path / "nope.whl", "hello_world-1.1-py3-none-any.whl") is None


def test_truncated_archives_give_none(tmp_path: Path) -> None:
    members = {f"hello_world-1.1/f{i}": os.urandom(2000) for i in range(20)}
    members["hello_world-1.1.dist-info/METADATA"] = METADATA
    for name, writer in (("hello_world-1.1-py3-none-any.whl", zip_file), ("hello_world-1.1.zip", zip_file),
                         ("hello_world-1.1.tar.gz", tar_file)):
        path = writer(tmp_path / name, {**members, "hello_world-1.1/PKG-INFO": METADATA})
        full = path.read_bytes()
        path.write_bytes(full[:len(full) // 2])
        assert core_metadata(path, name) is None, name


_VALID: dict[str, bytes] = {}


def _valid_archive(kind: str) -> bytes:
    if kind not in _VALID:
        buffer = io.BytesIO()
        if kind.endswith(".tar.gz"):
            with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                for name, data in sdist_members().items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
        else:
            with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("hello_world-1.1.dist-info/METADATA", METADATA * 20)
                for name, data in sdist_members().items():
                    archive.writestr(name, data)
        _VALID[kind] = buffer.getvalue()
    return _VALID[kind]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["hello_world-1.1-py3-none-any.whl", "hello_world-1.1.zip", "hello_world-1.1.tar.gz"]),
       flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_damaged_archives_never_raise(tmp_path: Path, kind: str, flips: list[tuple[int, int]],
                                      cut: int | None) -> None:
    data = bytearray(_valid_archive(kind))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path / kind
    path.write_bytes(bytes(data))
    result = core_metadata(path, kind)
    assert result is None or isinstance(result, bytes)


# -- doc zips -----------------------------------------------------------------------------


def test_doc_zip_with_plain_members_passes(tmp_path: Path) -> None:
    path = zip_file(tmp_path / "docs.zip", {"index.html": b"<html>", "_static/a..b.css": b"",
                                            "sub/": b"", "sub/page.html": b""})
    check_doc_zip(path)


def test_empty_doc_zip_passes(tmp_path: Path) -> None:
    check_doc_zip(zip_file(tmp_path / "docs.zip", {}))


@pytest.mark.parametrize("content", [b"", b"<html>not a zip</html>", b"PK\x03\x04garbage"])
def test_doc_zip_that_is_not_a_zip_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "docs.zip"
    path.write_bytes(content)
    with pytest.raises(BadDocZip, match="not a zip file"):
        check_doc_zip(path)


def test_truncated_doc_zip_is_refused(tmp_path: Path) -> None:
    path = zip_file(tmp_path / "docs.zip", {"index.html": os.urandom(5000)})
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(BadDocZip):
        check_doc_zip(path)


def test_bad_doc_zip_is_a_value_error() -> None:
    assert issubclass(BadDocZip, ValueError)


@pytest.mark.parametrize("name", ["/etc/passwd", "../index.html", "a/../../b.html", "a/..", "\\windows\\x",
                                  "C:/x.html", "c:x.html", "a\\..\\..\\x.html"])
def test_doc_zip_member_outside_the_root_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("index.html", b"")
        archive.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(BadDocZip, match="points outside the documentation root"):
        check_doc_zip(path)


def test_doc_zip_with_a_symlink_member_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("link.html")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, b"/etc/passwd")
    with pytest.raises(BadDocZip, match="symbolic link"):
        check_doc_zip(path)
