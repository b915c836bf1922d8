"""Release filenames, upload checks, version data, paths and version order
(spec/model.md 1.2, 1.3, 7, 8; spec/api.md 8)."""

from __future__ import annotations

import calendar
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.releases import (
    LIST_KEYS, METADATA_KEYS, check_plain_filename, check_registration, check_release_filename,
    doczip_filename, latest_version, log_entry, metadata_from_form, new_version_data,
    pyversion_and_filetype, relpath, split_filename, toxresult_filename, update_version_data,
    version_sort_key, wheel_tags, with_mirrored,
)

SHA = "22da8a99162b93fa" + "0" * 48

# -- strategies ----------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LETTER_NOT_V = "abcdefghijklmnopqrstuwxyzABCDEFGHIJKLMNOPQRSTUWXYZ"
numbers = st.integers(min_value=0, max_value=10**6)


@st.composite
def pep440_versions(draw: st.DrawFn) -> str:
    """Valid PEP 440 strings, some in non-canonical spellings."""
    text = ""
    if draw(st.booleans()):
        text += f"{draw(st.integers(0, 3))}!"
    text += ".".join(str(n) for n in draw(st.lists(numbers, min_size=1, max_size=4)))
    if draw(st.booleans()):
        text += draw(st.sampled_from(["a", "b", "rc", "alpha", "beta", "c", "pre", "preview"]))
        text += str(draw(numbers))
    post = draw(st.sampled_from(["", ".post{}", "-{}", "post{}", ".rev{}"]))
    if post:
        text += post.format(draw(numbers))
    if draw(st.booleans()):
        text += f".dev{draw(numbers)}"
    if draw(st.booleans()):
        # no letters that spell an old bdist platform ("win32", "linux-...")
        segment = st.text(alphabet="abcdefxyz0123456789", min_size=1, max_size=5)
        text += "+" + ".".join(draw(st.lists(segment, min_size=1, max_size=3)))
    if draw(st.booleans()):
        text = "v" + text
    assert Version(text)  # the strategy's own promise
    return text


canonical_versions = pep440_versions().map(lambda v: str(Version(v)))


@st.composite
def sdist_project_names(draw: st.DrawFn) -> str:
    """Valid names whose later '-' parts start with a letter that cannot begin a version."""
    first = draw(st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._]{0,8}[A-Za-z0-9])?\Z"))
    rest = draw(st.lists(st.from_regex(r"\A[%s][A-Za-z0-9._]{0,6}[A-Za-z0-9]\Z" % LETTER_NOT_V),
                         max_size=3))
    return "-".join([first, *rest])


wheel_project_names = st.from_regex(r"\A[A-Za-z0-9]+([._][A-Za-z0-9]+){0,3}\Z")


# -- split_filename ---------------------------------------------------------------------


@pytest.mark.parametrize(("filename", "expected"), [
    ("hello_world-1.1.tar.gz", ("hello_world", "1.1", ".tar.gz")),
    ("foo-bar-1.0.zip", ("foo-bar", "1.0", ".zip")),
    ("zope.interface-5.0.tgz", ("zope.interface", "5.0", ".tgz")),
    ("Foo-1.0.TAR.GZ", ("Foo", "1.0", ".TAR.GZ")),
    ("foo-1.0.tar.bz2", ("foo", "1.0", ".tar.bz2")),
    ("foo-1.0.tar", ("foo", "1.0", ".tar")),
    ("foo-1.0.doc.zip", ("foo", "1.0", ".doc.zip")),
    ("foo-1.0-py3.doc.zip", ("foo", "1.0-py3", ".doc.zip")),  # doc zips have no platform tail
    ("foo-1.0.deb", ("foo", "1.0", ".deb")),
    ("foo-1.0.dmg", ("foo", "1.0", ".dmg")),
    ("foo-1.0.msi", ("foo", "1.0", ".msi")),
    ("foo-1.0+local.7-tar.tar.gz", ("foo", "1.0+local.7-tar", ".tar.gz")),
    ("foo-1.0-1.tar.gz", ("foo", "1.0-1", ".tar.gz")),  # PEP 440 post release spelling
    ("python-3parclient-4.2.0.tar.gz", ("python-3parclient", "4.2.0", ".tar.gz")),
    ("pytz-2013b.tar.gz", ("pytz", "2013b", ".tar.gz")),
    ("foo-py3-1.0.tar.gz", ("foo-py3", "1.0", ".tar.gz")),
    # legacy versions: the first '-' followed by a digit-led legacy version
    ("foo-1.0-SNAPSHOT.tar.gz", ("foo", "1.0-SNAPSHOT", ".tar.gz")),
    ("foo-bar-2.x.zip", ("foo-bar", "2.x", ".zip")),
    # nothing parses: the last '-'
    ("foo-bar-baz.tar.gz", ("foo-bar", "baz", ".tar.gz")),
    ("foo-dev.zip", ("foo", "dev", ".zip")),
    # old bdists: platform and python tags belong to the suffix
    ("foo-1.0.win32.exe", ("foo", "1.0", ".win32.exe")),
    ("foo-1.0.win32-py2.7.exe", ("foo", "1.0", ".win32-py2.7.exe")),
    ("Django-1.6.win-amd64-py2.7.exe", ("Django", "1.6", ".win-amd64-py2.7.exe")),
    ("foo-1.0.win-amd64-py3.4.msi", ("foo", "1.0", ".win-amd64-py3.4.msi")),
    ("foo-1.0.linux-x86_64.tar.gz", ("foo", "1.0", ".linux-x86_64.tar.gz")),
    ("foo-1.0.linux-i686.zip", ("foo", "1.0", ".linux-i686.zip")),
    ("foo-1.0.macosx-10.6-intel.tar.gz", ("foo", "1.0", ".macosx-10.6-intel.tar.gz")),
    ("foo-1.0-py2.7.egg", ("foo", "1.0", "-py2.7.egg")),
    ("foo-1.0-py2.7-linux-x86_64.egg", ("foo", "1.0", "-py2.7-linux-x86_64.egg")),
    ("foo-1.0-py3.tar.gz", ("foo", "1.0", "-py3.tar.gz")),
    ("foo-1.0-1.noarch.rpm", ("foo", "1.0", "-1.noarch.rpm")),
    ("foo-1.0-2.src.rpm", ("foo", "1.0", "-2.src.rpm")),
    ("foo-1.0.rpm", ("foo", "1.0", ".rpm")),
    ("foo-bar-1.0.rpm", ("foo-bar", "1.0", ".rpm")),
    # a project name that looks like a platform stays the project name
    ("foo.linux-tools-1.0.tar.gz", ("foo.linux-tools", "1.0", ".tar.gz")),
    ("foo.macosx-1.0.tar.gz", ("foo.macosx", "1.0", ".tar.gz")),
    # wheels: by position, build tag in the suffix
    ("hello_world-1.1-py3-none-any.whl", ("hello_world", "1.1", "-py3-none-any.whl")),
    ("Foo_Bar-1.0-py2.py3-none-any.whl", ("Foo_Bar", "1.0", "-py2.py3-none-any.whl")),
    ("zope.interface-5.0-cp39-cp39-manylinux1_x86_64.whl",
     ("zope.interface", "5.0", "-cp39-cp39-manylinux1_x86_64.whl")),
    ("foo-1.0-1-py3-none-any.whl", ("foo", "1.0", "-1-py3-none-any.whl")),
    ("foo-1.0-1abc-py3-none-any.whl", ("foo", "1.0", "-1abc-py3-none-any.whl")),
    ("foo-1.0+local-py3-none-any.whl", ("foo", "1.0+local", "-py3-none-any.whl")),
    # not valid for packaging, still split by position
    ("foo-1.0_local-py3-none-any.whl", ("foo", "1.0_local", "-py3-none-any.whl")),
    ("foo__bar-1.0-py3-none-any.whl", ("foo__bar", "1.0", "-py3-none-any.whl")),
    ("Foo-1.0-py3-none-any.WHL", ("Foo", "1.0", "-py3-none-any.WHL")),
])
def test_split_filename_examples(filename: str, expected: tuple[str, str, str]) -> None:
    assert split_filename(filename) == expected


def test_split_filename_refuses_names_beyond_255_characters() -> None:
    assert split_filename("a" * 244 + "-1.0.tar.gz")[1] == "1.0"
    with pytest.raises(InvalidInput, match="is longer than 255 characters"):
        split_filename("a" * 245 + "-1.0.tar.gz")


def test_split_filename_does_not_take_padded_strings_for_versions() -> None:
    # packaging accepts " 1-2" (it strips whitespace); a filename's version may not
    assert split_filename("foo- 1-2.tar.gz") == ("foo- 1", "2", ".tar.gz")


@pytest.mark.parametrize("filename", [
    "foo-1.0.tar.xz", "foo-1.0.rar", "foo-1.0", "foo-1.0.tar.gz.sig", "",
])
def test_split_filename_rejects_unknown_extensions(filename: str) -> None:
    with pytest.raises(InvalidInput, match="no known release file extension"):
        split_filename(filename)


@pytest.mark.parametrize("filename", [
    "foo.tar.gz", ".tar.gz", "-1.0.tar.gz", "foo-.zip", "foo.doc.zip",
])
def test_split_filename_rejects_names_without_a_version_part(filename: str) -> None:
    with pytest.raises(InvalidInput, match="does not have the form project-version"):
        split_filename(filename)


@pytest.mark.parametrize("filename", [
    "foo.whl", "foo-1.0.whl", "foo-1.0-py3-none.whl", "foo-1.0-x-py3-none-any.whl",
    "foo-1.0-1-2-py3-none-any.whl", "foo--py3-none-any.whl", ".whl",
])
def test_split_filename_rejects_wheels_of_the_wrong_shape(filename: str) -> None:
    with pytest.raises(InvalidInput, match="is not a valid wheel filename"):
        split_filename(filename)


@given(name=sdist_project_names(), version=pep440_versions(),
       ext=st.sampled_from([".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar", ".egg", ".exe", ".msi",
                            ".deb", ".dmg", ".rpm", ".doc.zip", ".TAR.GZ"]))
def test_split_filename_gives_back_project_and_pep440_version(name: str, version: str, ext: str) -> None:
    assert split_filename(f"{name}-{version}{ext}") == (name, version, ext)


@given(name=wheel_project_names, version=canonical_versions,
       build=st.one_of(st.just(""), st.from_regex(r"\A[0-9]{1,3}[a-z]{0,3}\Z")),
       python=st.sampled_from(["py3", "py2.py3", "cp311", "pp310"]),
       abi=st.sampled_from(["none", "abi3", "cp311"]),
       platform=st.sampled_from(["any", "manylinux_2_17_x86_64.manylinux2014_x86_64", "win_amd64"]))
def test_split_filename_of_wheels_agrees_with_packaging(name: str, version: str, build: str, python: str,
                                                        abi: str, platform: str) -> None:
    tags = f"{python}-{abi}-{platform}"
    filename = f"{name}-{version}-{build}-{tags}.whl" if build else f"{name}-{version}-{tags}.whl"
    project, found_version, suffix = split_filename(filename)
    assert (project, found_version) == (name, version)
    assert f"{project}-{found_version}{suffix}" == filename
    assert wheel_tags(filename) == (python, abi, platform)
    try:
        parsed_name, parsed_version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return  # names packaging refuses (e.g. "a__b") still split by position
    assert normalize_project(project) == canonicalize_name(parsed_name)
    assert Version(found_version) == parsed_version


@given(st.text(max_size=40), st.sampled_from([".tar.gz", ".zip", ".whl", ".egg", ".exe", ".rpm", ""]))
def test_split_filename_either_splits_exactly_or_raises_invalid_input(stem: str, ext: str) -> None:
    filename = stem + ext
    try:
        project, version, suffix = split_filename(filename)
    except InvalidInput:
        return
    assert project and version
    assert f"{project}-{version}{suffix}" == filename


# -- wheel_tags, pyversion_and_filetype -------------------------------------------------


def test_wheel_tags_refuses_other_files() -> None:
    with pytest.raises(InvalidInput, match="is not a wheel"):
        wheel_tags("foo-1.0.tar.gz")


def test_wheel_tags_skip_the_build_tag() -> None:
    assert wheel_tags("foo-1.0-7-cp311-abi3-win_amd64.whl") == ("cp311", "abi3", "win_amd64")


@pytest.mark.parametrize(("filename", "expected"), [
    ("foo-1.0.tar.gz", ("source", "sdist")),
    ("foo-1.0.tgz", ("source", "sdist")),
    ("foo-1.0.zip", ("source", "sdist")),
    ("foo-1.0.tar.bz2", ("source", "sdist")),
    ("foo-1.0-py3-none-any.whl", ("py3", "bdist_wheel")),
    ("foo-1.0-py2.py3-none-any.whl", ("py2.py3", "bdist_wheel")),
    ("foo-1.0-1-cp311-cp311-manylinux1_x86_64.whl", ("cp311", "bdist_wheel")),
    ("foo-1.0-py2.7.egg", ("2.7", "bdist_egg")),
    ("foo-1.0-py3.10-linux-x86_64.egg", ("3.10", "bdist_egg")),
    ("foo-1.0.egg", ("any", "bdist_egg")),
    ("foo-1.0.win32-py2.7.exe", ("2.7", "bdist_wininst")),
    ("foo-1.0.win32.exe", ("any", "bdist_wininst")),
    ("foo-1.0.win-amd64-py3.4.msi", ("3.4", "bdist_msi")),
    ("foo-1.0.linux-x86_64.tar.gz", ("any", "bdist_dumb")),
    ("foo-1.0-1.noarch.rpm", ("any", "bdist_dumb")),
    ("foo-1.0.dmg", ("any", "bdist_dumb")),
])
def test_pyversion_and_filetype(filename: str, expected: tuple[str, str]) -> None:
    assert pyversion_and_filetype(filename) == expected


def test_pyversion_and_filetype_refuses_what_cannot_be_split() -> None:
    with pytest.raises(InvalidInput):
        pyversion_and_filetype("foo.tar.xz")


# -- check_release_filename (api.md 8.2) -------------------------------------------------


@pytest.mark.parametrize(("filename", "name", "version"), [
    ("hello_world-1.1-py3-none-any.whl", "hello-world", "1.1"),
    ("Hello.World-1.1.tar.gz", "hello_world", "1.1"),
    ("foo-1.0+local-py3-none-any.whl", "foo", "1.0+local"),
    ("foo-1.0_beta_2.tar.gz", "foo", "1.0-beta 2"),          # runs become one '_'
    ("foo-1.0.TAR.GZ", "foo", "1.0"),                        # case-insensitive ending
    ("foo-1.0.tar.bz2", "foo", "1.0"),                       # devpi allows any .bz2
    ("foo-1.0.doc.zip", "foo", "1.0"),
    ("foo-docs-1.0.tar.gz", "foo", "1.0"),                   # a prefix is enough (devpi)
    *((f"foo-1.0{ext}", "foo", "1.0") for ext in
      (".exe", ".tar.gz", ".bz2", ".rpm", ".deb", ".zip", ".tgz", ".egg", ".dmg", ".msi")),
])
def test_check_release_filename_accepts(filename: str, name: str, version: str) -> None:
    check_release_filename(filename, name, version)


@pytest.mark.parametrize("filename", [
    "foo-1.0.whl", "foo-1.0-py3-any.whl", "foo-1.0-x-py3-none-any.whl", "foo-1.0_local-py3-none-any.whl",
    "foo-1.0-1-2-py3-none-any.whl", "foo--1.0-py3-none-any.whl", "foo-1.0--none-any.whl",
])
def test_check_release_filename_refuses_wheels_with_invalid_names(filename: str) -> None:
    # packaging's wheel naming rule (issue 19 item 7): pip would not install them either
    with pytest.raises(InvalidInput, match="is not a valid wheel filename"):
        check_release_filename(filename, "foo", "1.0")


def test_check_release_filename_version_missing_message() -> None:
    with pytest.raises(InvalidInput) as info:
        check_release_filename("foo-1.0.tar.gz", "foo", "1.1")
    assert info.value.message == "filename 'foo-1.0.tar.gz' does not contain version '1.1'"


def test_check_release_filename_wheel_escaping_is_not_applied_to_the_filename() -> None:
    with pytest.raises(InvalidInput, match="does not contain version"):
        check_release_filename("foo-1.0-local.tar.gz", "foo", "1.0+local")


@pytest.mark.parametrize("filename", ["foo-1.0.tar.xz", "foo-1.0.tar", "foo-1.0.whl.asc", "foo-1.0.gz"])
def test_check_release_filename_invalid_archive_message(filename: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_release_filename(filename, "foo", "1.0")
    assert info.value.message == f"'{filename}' is not a valid archive name"


def test_check_release_filename_project_mismatch_message() -> None:
    with pytest.raises(InvalidInput) as info:
        check_release_filename("other-1.0.tar.gz", "Foo_Bar", "1.0")
    assert info.value.message == "filename 'other-1.0.tar.gz' does not match project name 'Foo_Bar'"


def test_check_release_filename_checks_in_devpi_order() -> None:
    # version before archive name before project name
    with pytest.raises(InvalidInput, match="does not contain version"):
        check_release_filename("other-1.0.tar.xz", "foo", "2.0")
    with pytest.raises(InvalidInput, match="is not a valid archive name"):
        check_release_filename("other-1.0.tar.xz", "foo", "1.0")


def test_check_release_filename_messages_quote_like_devpi_repr() -> None:
    with pytest.raises(InvalidInput) as info:
        check_release_filename("it's-1.0.tar.gz", "foo", "1.0")
    assert info.value.message == "filename \"it's-1.0.tar.gz\" does not match project name 'foo'"


@pytest.mark.parametrize("filename", [
    "../foo-1.0.tar.gz", "a/foo-1.0.tar.gz", "/foo-1.0.tar.gz", "foo\\foo-1.0.tar.gz",
    "foo-1.0.tar.gz\x00.txt", "foo-1.0\n.tar.gz", ".foo-1.0.tar.gz", "..", "foo-1.0..tar.gz", "",
])
def test_check_release_filename_refuses_path_tricks_first(filename: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_release_filename(filename, "foo", "9.9")  # the version check would fail too
    assert info.value.message.startswith(f"invalid filename {filename!r}: ")
    assert not any(char in info.value.message for char in "\x00\r\n")


def test_check_plain_filename_refuses_names_beyond_255_bytes() -> None:
    assert check_plain_filename("a" * 248 + ".tar.gz") == "a" * 248 + ".tar.gz"
    with pytest.raises(InvalidInput, match="longer than 255 bytes"):
        check_plain_filename("a" * 249 + ".tar.gz")
    with pytest.raises(InvalidInput, match="longer than 255 bytes"):
        check_plain_filename("ä" * 125 + ".tar.gz")  # 132 characters, 257 bytes


def test_check_plain_filename_returns_plain_names() -> None:
    assert check_plain_filename("foo-1.0.tar.gz") == "foo-1.0.tar.gz"
    assert check_plain_filename("föö-1.0.tar.gz") == "föö-1.0.tar.gz"


# -- check_registration (model.md 1.2) --------------------------------------------------


@pytest.mark.parametrize(("name", "version", "reason"), [
    ("", "1.0", 'Missing required field "name"'),
    ("", "", 'Missing required field "name"'),
    ("foo", "", 'Missing required field "version"'),
    ("foo bar", "1.0", "Invalid package name. Names must contain only ASCII letters, digits, "
                       "underscores, hyphens, and periods"),
    ("föö", "1.0", "Invalid package name. Names must contain only ASCII letters, digits, "
                   "underscores, hyphens, and periods"),
    ("a/b", "1.0", "Invalid package name. Names must contain only ASCII letters, digits, "
                   "underscores, hyphens, and periods"),
    ("_foo", "1.0", "Invalid package name. Names must start with an ASCII letter or digit"),
    ("-foo", "1.0", "Invalid package name. Names must start with an ASCII letter or digit"),
    ("foo.", "1.0", "Invalid package name. Names must end with an ASCII letter or digit"),
    ("foo_", "1.0", "Invalid package name. Names must end with an ASCII letter or digit"),
    *(("foo", f"1.0{c}", "Invalid package name or version (URL safety)") for c in '<>%#"'),
])
def test_check_registration_messages(name: str, version: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_registration(name, version)
    assert info.value.message == f"invalid metadata: {reason}"


@given(name=st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,198}[A-Za-z0-9])?\Z"),
       version=st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs")), min_size=1, max_size=200)
       .filter(lambda v: not any(c in v for c in '<>%#"')))
def test_check_registration_accepts_valid_names_with_url_safe_versions(name: str, version: str) -> None:
    check_registration(name, version)


@pytest.mark.parametrize("version", ["1.0\r\n", "1.0\n", "1.0\x00", "\r", "1.0\x7f", "1.0\u200b", "1.0\ud800"])
def test_check_registration_refuses_versions_with_control_characters(version: str) -> None:
    # issue 19 item 7: CR/LF would reach reason phrases and logs, NUL cannot be stored
    with pytest.raises(InvalidInput, match="control characters"):
        check_registration("foo", version)


def test_check_registration_refuses_names_and_versions_no_file_could_hold() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        check_registration("a" * 201, "1.0")
    with pytest.raises(InvalidInput, match="longer than"):
        check_registration("foo", "1" * 10_000)


# -- metadata_from_form, version data (model.md 7.1) ---------------------------------------

SPEC_KEYS = (
    "name version metadata_version summary home_page author author_email maintainer "
    "maintainer_email license description keywords platform* classifiers* download_url "
    "supported_platform* comment provides* requires* obsoletes* project_urls* provides_dist* "
    "obsoletes_dist* requires_dist* requires_external* requires_python description_content_type "
    "provides_extras* dynamic* license_expression license_file*").split()


def test_metadata_keys_are_the_spec_list() -> None:
    assert METADATA_KEYS == tuple(key.rstrip("*") for key in SPEC_KEYS)
    assert LIST_KEYS == {key.rstrip("*") for key in SPEC_KEYS if key.endswith("*")}


def test_metadata_from_form_takes_only_present_metadata_keys() -> None:
    form = {":action": ["file_upload"], "name": ["foo"], "version": ["1.0"], "summary": ["S"],
            "md5_digest": ["abc"], "pyversion": ["source"], "content": ["..."]}
    assert metadata_from_form(form) == {"name": "foo", "version": "1.0", "summary": "S"}


def test_metadata_from_form_collects_list_fields_dropping_empty_ones() -> None:
    form = {"classifiers": ["A :: B", "", "C :: D"], "requires_dist": ["x>=1"],
            "project_urls": ["Home, https://example.org"], "dynamic": [""]}
    assert metadata_from_form(form) == {
        "classifiers": ["A :: B", "C :: D"], "requires_dist": ["x>=1"],
        "project_urls": ["Home, https://example.org"], "dynamic": []}


def test_metadata_from_form_stores_unknown_as_empty_for_plain_fields() -> None:
    form = {"summary": ["UNKNOWN"], "license": ["UNKNOWN "], "platform": ["UNKNOWN"]}
    # devpi: only non-list fields; "UNKNOWN " is not the literal
    assert metadata_from_form(form) == {"summary": "", "license": "UNKNOWN ", "platform": ["UNKNOWN"]}


def test_metadata_from_form_takes_the_first_of_repeated_plain_fields() -> None:
    assert metadata_from_form({"summary": ["one", "two"], "author": []}) == {"summary": "one", "author": ""}


def _form(**fields: Any) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in fields.items()}


def test_new_version_data_full_has_every_key_with_defaults() -> None:
    data = new_version_data("Hello_World", "1.1", metadata_from_form(_form(summary="S")), full=True)
    assert set(data) == set(METADATA_KEYS)
    assert data["name"] == "Hello_World" and data["version"] == "1.1" and data["summary"] == "S"
    assert all(data[k] == [] for k in LIST_KEYS)
    assert all(data[k] == "" for k in set(METADATA_KEYS) - LIST_KEYS - {"name", "version", "summary"})


def test_new_version_data_minimal_has_only_given_keys() -> None:
    assert new_version_data("foo", "1.0", {}, full=False) == {"name": "foo", "version": "1.0"}
    assert new_version_data("foo", "1.0", {"summary": "S"}, full=False) == {
        "name": "foo", "version": "1.0", "summary": "S"}


def test_new_version_data_name_and_version_are_the_arguments() -> None:
    data = new_version_data("foo", "1.0", {"name": "other", "version": "2"}, full=True)
    assert (data["name"], data["version"]) == ("foo", "1.0")


def test_new_version_data_ignores_internal_keys_and_copies_lists() -> None:
    form = {"classifiers": ["A"], "+elinks": [{"rel": "releasefile"}]}
    data = new_version_data("foo", "1.0", form, full=True)
    assert "+elinks" not in data
    data["classifiers"].append("B")
    assert form["classifiers"] == ["A"]


def test_update_version_data_replaces_only_present_fields_and_keeps_internal_keys() -> None:
    links = [{"rel": "releasefile", "entrypath": "a/b/+f/x", "_log": []}]
    existing = new_version_data("foo", "1.0", {"summary": "old", "classifiers": ["A"]}, full=True)
    existing["+elinks"] = links
    updated = update_version_data(existing, {"summary": "new", "requires_python": ">=3.8",
                                             "+elinks": []})
    assert updated["summary"] == "new" and updated["requires_python"] == ">=3.8"
    assert updated["classifiers"] == ["A"]
    assert updated["+elinks"] == links
    assert existing["summary"] == "old"  # not changed in place


def test_update_version_data_result_shares_nothing_mutable() -> None:
    existing = {"name": "foo", "version": "1.0", "+elinks": [{"_log": []}]}
    updated = update_version_data(existing, {})
    updated["+elinks"][0]["_log"].append({"what": "upload"})
    assert existing["+elinks"] == [{"_log": []}]


def test_update_version_data_without_a_record_starts_from_a_full_default() -> None:
    updated = update_version_data(None, {"name": "foo", "version": "1.0", "summary": "S"})
    assert set(updated) == set(METADATA_KEYS)
    assert (updated["name"], updated["summary"], updated["classifiers"]) == ("foo", "S", [])


def test_submit_replaces_while_upload_updates() -> None:
    existing = new_version_data("foo", "1.0", {"summary": "S", "license": "MIT"}, full=True)
    form = metadata_from_form(_form(name="foo", version="1.0", summary="T"))
    assert new_version_data("foo", "1.0", form, full=True)["license"] == ""
    assert update_version_data(existing, form)["license"] == "MIT"


# -- paths, file names, logs (model.md 8.1, 8.3) -------------------------------------------


def test_relpath_matches_the_spec_example() -> None:
    assert relpath("alice", "dev", SHA, "hello_world-1.1-py3-none-any.whl") == \
        "alice/dev/+f/22d/a8a99162b93fa/hello_world-1.1-py3-none-any.whl"


@given(user=st.from_regex(r"\A[a-z0-9]{1,8}\Z"), index=st.from_regex(r"\A[a-z0-9]{1,8}\Z"),
       digest=st.from_regex(r"\A[0-9a-f]{64}\Z"), filename=st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,10}\.whl\Z"))
def test_relpath_layout(user: str, index: str, digest: str, filename: str) -> None:
    parts = relpath(user, index, digest, filename).split("/")
    assert parts == [user, index, "+f", digest[:3], digest[3:16], filename]


@pytest.mark.parametrize("digest", ["", "abc", "xyz" * 10, "0" * 15])
def test_relpath_refuses_what_is_not_a_hex_digest(digest: str) -> None:
    with pytest.raises(ValueError, match="not a hex digest"):
        relpath("alice", "dev", digest, "foo-1.0.tar.gz")


@pytest.mark.parametrize("filename", ["../x.tar.gz", "a/b.tar.gz", ".hidden.tar.gz"])
def test_relpath_refuses_filenames_that_are_paths(filename: str) -> None:
    with pytest.raises(InvalidInput, match="invalid filename"):
        relpath("alice", "dev", SHA, filename)


def test_doczip_filename() -> None:
    assert doczip_filename("hello-world", "1.1") == "hello-world-1.1.doc.zip"
    assert doczip_filename("Hello_World", "1.1") == "hello-world-1.1.doc.zip"


@pytest.mark.parametrize("version", ["1.0/../../x", "..", "1\\0"])
def test_doczip_filename_refuses_versions_that_make_a_path(version: str) -> None:
    with pytest.raises(InvalidInput, match="invalid filename"):
        doczip_filename("foo", version)


def test_toxresult_filename_from_a_time_tuple() -> None:
    when = time.gmtime(calendar.timegm((2024, 5, 1, 10, 4, 46, 0, 0, 0)))
    assert toxresult_filename("hello_world-1.1-py3-none-any.whl", when, 0) == \
        "hello_world-1.1-py3-none-any.whl.toxresult-20240501100446-0"


def test_toxresult_filename_from_a_log_when_list_with_count() -> None:
    assert toxresult_filename("foo-1.0.tar.gz", [2001, 2, 3, 4, 5, 6], 12) == \
        "foo-1.0.tar.gz.toxresult-20010203040506-12"


def test_toxresult_filename_refuses_negative_counts() -> None:
    with pytest.raises(ValueError):
        toxresult_filename("foo-1.0.tar.gz", [2001, 2, 3, 4, 5, 6], -1)


def test_log_entry_has_utc_when_list_and_extras() -> None:
    now = calendar.timegm((2024, 5, 1, 23, 59, 58, 0, 0, 0)) + 0.75
    assert log_entry("upload", "alice", now, dst="alice/dev") == {
        "what": "upload", "who": "alice", "when": [2024, 5, 1, 23, 59, 58], "dst": "alice/dev"}
    assert log_entry("upload", None, now)["who"] is None


# -- version order (model.md 1.3) ------------------------------------------------------------


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


@given(pep440_versions(), pep440_versions())
def test_version_order_agrees_with_packaging_for_pep440(a: str, b: str) -> None:
    assert _cmp(version_sort_key(a), version_sort_key(b)) == _cmp(Version(a), Version(b))


legacy_versions = st.text(alphabet="0123456789.-abcxyz_ ", min_size=1, max_size=12).filter(
    lambda v: not _parses(v))


def _parses(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


@given(legacy_versions, pep440_versions())
def test_legacy_versions_sort_below_every_pep440_version(legacy: str, version: str) -> None:
    assert version_sort_key(legacy) < version_sort_key(version)


@given(st.lists(st.one_of(legacy_versions, pep440_versions()), min_size=1, max_size=8))
def test_version_keys_order_totally(versions: list[str]) -> None:
    ordered = sorted(versions, key=version_sort_key)
    keys = [version_sort_key(v) for v in ordered]
    assert all(a <= b for a, b in zip(keys, keys[1:]))
    assert latest_version(versions) in versions
    assert version_sort_key(latest_version(versions) or "") == keys[-1]


@pytest.mark.parametrize("ascending", [
    ["foo", "1.0-SNAPSHOT", "1.0.x", "1.0.y", "1.1-SNAPSHOT", "2.0.x"],   # legacy among itself
    ["1.0dev-x", "1.0.rc-x", "1.0-x", "1.0.1-x"],     # setuptools: dev < rc(c) < final < next
    ["0.9", "1.0.dev0", "1.0a1", "1.0rc1", "1.0", "1.0+local", "1.0.post1", "1!0.1"],
])
def test_version_order_examples(ascending: list[str]) -> None:
    assert sorted(reversed(ascending), key=version_sort_key) == ascending


def test_legacy_trailing_zeros_do_not_count() -> None:
    assert version_sort_key("1.0.x") == version_sort_key("1.x")
    assert version_sort_key("x1.0") == version_sort_key("x1.0.0") == version_sort_key("x1")
    assert version_sort_key("x1.0") < version_sort_key("x1.0.1")


def test_latest_version_includes_prereleases() -> None:
    assert latest_version(["1.0", "2.0rc1", "1.5"]) == "2.0rc1"
    assert latest_version(["10.0", "9.0"]) == "10.0"
    assert latest_version(["foo", "0.1"]) == "0.1"
    assert latest_version([]) is None


def test_version_sort_key_ignores_case() -> None:
    assert version_sort_key("1.0RC1") == version_sort_key("1.0rc1")


def test_mirrored_versions_follow_the_stages_and_shadow_theirs() -> None:
    stage = {"1.0": {"version": "1.0", "+elinks": ["stage"]}}
    first = {"1.0": {"version": "1.0", "+elinks": ["m1"]}, "2.0": {"version": "2.0"}}
    second = {"2.0": {"version": "2.0", "+elinks": ["m2"]}}
    merged = with_mirrored(stage, [first, second])
    assert merged["1.0"]["+elinks"] == ["stage"]
    assert merged["1.0"]["+shadowing"] == [first["1.0"]]
    assert merged["2.0"] is first["2.0"] and merged["2.0"]["+shadowing"] == [second["2.0"]]
