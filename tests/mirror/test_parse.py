"""Parsing upstream simple pages, PEP 503 HTML and PEP 691 JSON (spec/mirror.md 2 and 5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devpi_twisted.mirror.parse import (
    MAX_FILENAME_LENGTH,
    MAX_URL_LENGTH,
    PageError,
    UpstreamLink,
    parse_project_page,
)
from devpi_twisted.mirror.parse_list import parse_project_list

PAGE = "https://pypi.example/simple/foo/"
FILES = "https://files.example/packages/ab/cd/"
LIST = "https://pypi.example/simple/"
HTML = "text/html"
JSON = "application/vnd.pypi.simple.v1+json"
SHA256 = "0123456789abcdef" * 4
MD5 = "fedcba9876543210" * 2


def html_page(*anchors: str, head: str = "") -> bytes:
    return (f"<!DOCTYPE html><html><head>{head}<title>Links</title></head><body>"
            + "<br/>\n".join(anchors) + "</body></html>").encode()


def json_page(*files: dict[str, Any], meta: Any = None) -> bytes:
    page: dict[str, Any] = {"meta": meta or {"api-version": "1.1"}, "name": "foo",
                            "files": list(files)}
    return json.dumps(page).encode()


def html_links(*anchors: str, project: str = "foo", head: str = "") -> list[UpstreamLink]:
    return parse_project_page(html_page(*anchors, head=head), HTML, PAGE, project)


def json_links(*files: dict[str, Any], project: str = "foo") -> list[UpstreamLink]:
    return parse_project_page(json_page(*files), JSON, PAGE, project)


def names(links: list[UpstreamLink]) -> list[str]:
    return [link.filename for link in links]


def a(href: str, text: str = "x", extra: str = "") -> str:
    return f'<a href="{href}"{extra}>{text}</a>'


# -- HTML: URLs and base href --------------------------------------------------------


def test_html_link_is_resolved_against_the_page_and_carries_the_fragment_hash() -> None:
    links = html_links(a(f"../../files/foo-1.0.tar.gz#sha256={SHA256}", "foo-1.0.tar.gz"))
    assert links == [UpstreamLink(
        filename="foo-1.0.tar.gz", url="https://pypi.example/files/foo-1.0.tar.gz",
        hash_algo="sha256", hash_value=SHA256)]


def test_html_absolute_href_on_another_host_is_kept() -> None:
    links = html_links(a(f"{FILES}foo-1.0.tar.gz#md5={MD5}"))
    assert [(link.url, link.hash_algo, link.hash_value) for link in links] == [
        (f"{FILES}foo-1.0.tar.gz", "md5", MD5)]


def test_html_base_href_is_resolved_against_the_page_and_applies_to_every_link() -> None:
    links = html_links(a("foo-1.0.tar.gz"), a("sub/foo-1.1.tar.gz"),
                       head='<base href="../../packages/"><base href="https://other.example/">')
    assert [link.url for link in links] == [
        "https://pypi.example/packages/foo-1.0.tar.gz",
        "https://pypi.example/packages/sub/foo-1.1.tar.gz"]


def test_html_absolute_base_href() -> None:
    links = html_links(a("/x/foo-1.0.zip"), head=f'<base href="{FILES}">')
    assert [link.url for link in links] == ["https://files.example/x/foo-1.0.zip"]


def test_html_entities_in_href_are_unescaped_and_the_query_is_kept() -> None:
    links = html_links(a("foo-1.0.tar.gz?a=1&amp;b=2#sha256=" + SHA256))
    assert links[0].url == "https://pypi.example/simple/foo/foo-1.0.tar.gz?a=1&b=2"
    assert links[0].filename == "foo-1.0.tar.gz"


def test_html_filename_is_percent_decoded() -> None:
    links = html_links(a("foo-1.0%2Bcpu.tar.gz"), a(" foo-1.1.tar.gz\n"))
    assert names(links) == ["foo-1.0+cpu.tar.gz", "foo-1.1.tar.gz"]
    assert links[0].url == PAGE + "foo-1.0%2Bcpu.tar.gz"


def test_html_anchor_without_href_is_ignored() -> None:
    assert html_links('<a name="foo-1.0.tar.gz">foo-1.0.tar.gz</a>') == []


def test_html_first_of_repeated_attributes_counts() -> None:
    links = html_links('<a href="foo-1.0.zip" href="foo-2.0.zip">x</a>')
    assert names(links) == ["foo-1.0.zip"]


# -- hashes ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fragment", "expected"), [
    (f"#sha256={SHA256}", ("sha256", SHA256)),
    (f"#SHA256={SHA256.upper()}", ("sha256", SHA256)),
    (f"#md5={MD5}", ("md5", MD5)),
    (f"#sha512={'ab' * 64}", ("sha512", "ab" * 64)),
    ("", (None, None)),
    ("#egg=foo", (None, None)),
    (f"#sha256={SHA256[:-1]}", (None, None)),        # wrong length
    (f"#sha256={SHA256[:-1]}g", (None, None)),       # not hex
    (f"#blake3={SHA256}", (None, None)),             # nothing we could verify it with
    (f"#md5={MD5}&egg=foo", (None, None)),
])
def test_html_hash_comes_from_a_usable_fragment(fragment: str,
                                                expected: tuple[str | None, str | None]) -> None:
    [link] = html_links(a("foo-1.0.tar.gz" + fragment))
    assert (link.hash_algo, link.hash_value) == expected
    assert link.url == PAGE + "foo-1.0.tar.gz"


# -- requires-python, yanked, core metadata (HTML) -------------------------------------


@pytest.mark.parametrize(("attribute", "expected"), [
    ("", None),
    (' data-requires-python=""', None),
    (' data-requires-python=" "', None),
    (' data-requires-python="&gt;=3.8"', ">=3.8"),
    (' data-requires-python="&gt;=2.7, !=3.0.*, &lt;4"', ">=2.7, !=3.0.*, <4"),
    (" data-requires-python='>=3.9'", ">=3.9"),
])
def test_html_requires_python_is_unescaped_and_empty_means_none(attribute: str,
                                                                expected: str | None) -> None:
    [link] = html_links(a("foo-1.0.tar.gz", extra=attribute))
    assert link.requires_python == expected


@pytest.mark.parametrize(("attribute", "expected"), [
    ("", False),
    (" data-yanked", True),
    (' data-yanked=""', True),
    (' data-yanked="broken &amp; insecure"', "broken & insecure"),
])
def test_html_yanked(attribute: str, expected: bool | str) -> None:
    [link] = html_links(a("foo-1.0.tar.gz", extra=attribute))
    assert link.yanked == expected


@pytest.mark.parametrize(("attribute", "expected"), [
    ("", False),
    (' data-core-metadata="true"', True),
    (f' data-core-metadata="sha256={SHA256}"', f"sha256={SHA256}"),
    (f' data-core-metadata="SHA256={SHA256.upper()}"', f"sha256={SHA256}"),
    (f' data-core-metadata="md5={MD5}"', True),
    (' data-dist-info-metadata="true"', True),
    (f' data-dist-info-metadata="sha256={SHA256}"', f"sha256={SHA256}"),
    (f' data-core-metadata="sha256={SHA256}" data-dist-info-metadata="true"', f"sha256={SHA256}"),
    (' data-core-metadata="false" data-dist-info-metadata="true"', False),
    (' data-core-metadata="false"', False),
    (' data-core-metadata', False),
    (' data-core-metadata="sha256=xyz"', False),
])
def test_html_core_metadata(attribute: str, expected: bool | str) -> None:
    [link] = html_links(a("foo-1.0-py3-none-any.whl", extra=attribute))
    assert link.core_metadata == expected


def test_html_has_no_size_or_upload_time() -> None:
    [link] = html_links(a("foo-1.0.tar.gz", extra=' data-size="12"'))
    assert (link.size, link.upload_time) == (None, None)


# -- HTML: content types and broken pages ------------------------------------------------


def test_html_page_is_decoded_with_the_declared_charset() -> None:
    body = '<a href="foo-1.0.zip" data-yanked="caf\xe9">x</a>'.encode("latin-1")
    [link] = parse_project_page(body, "text/html; charset=ISO-8859-1", PAGE, "foo")
    assert link.yanked == "caf\xe9"


@pytest.mark.parametrize("content_type", ["text/html; charset=no-such-codec",
                                          "text/html; charset=base64", "", "text/plain"])
def test_html_page_with_unknown_charset_or_type_is_read_as_utf8(content_type: str) -> None:
    body = '<a href="foo-1.0.zip" data-yanked="caf\xe9">x</a>'.encode()
    [link] = parse_project_page(body, content_type, PAGE, "foo")
    assert link.yanked == "caf\xe9"


def test_html_page_with_invalid_utf8_still_parses() -> None:
    body = b'<p>\xff\xfe</p><a href="foo-1.0.zip">x</a>'
    assert names(parse_project_page(body, HTML, PAGE, "foo")) == ["foo-1.0.zip"]


@pytest.mark.parametrize("body", [b"<![foo]><a href='foo-1.0.zip'>x</a>", b"<![ x ]]>"])
def test_html_page_with_broken_marked_section_is_a_page_error(body: bytes) -> None:
    with pytest.raises(PageError):
        parse_project_page(body, HTML, PAGE, "foo")


def test_pypi_html_media_type_is_parsed_as_html() -> None:
    body = html_page(a("foo-1.0.zip"))
    assert names(parse_project_page(body, "application/vnd.pypi.simple.v1+html", PAGE,
                                    "foo")) == ["foo-1.0.zip"]


def test_empty_html_page_has_no_links() -> None:
    assert parse_project_page(b"", HTML, PAGE, "foo") == []


# -- JSON ---------------------------------------------------------------------------------


def test_json_file_carries_every_field() -> None:
    [link] = json_links({
        "filename": "foo-1.0-py3-none-any.whl", "url": "../../files/foo-1.0-py3-none-any.whl",
        "hashes": {"sha256": SHA256}, "requires-python": ">=3.8", "yanked": "bad build",
        "core-metadata": {"sha256": SHA256}, "size": 1234,
        "upload-time": "2024-01-02T03:04:05.123456Z", "provenance": None})
    assert link == UpstreamLink(
        filename="foo-1.0-py3-none-any.whl",
        url="https://pypi.example/files/foo-1.0-py3-none-any.whl", hash_algo="sha256",
        hash_value=SHA256, requires_python=">=3.8", yanked="bad build",
        core_metadata=f"sha256={SHA256}", size=1234, upload_time="2024-01-02T03:04:05.123456Z")


def test_json_minimal_file_has_defaults() -> None:
    [link] = json_links({"url": f"{FILES}foo-1.0.tar.gz", "hashes": {}})
    assert link == UpstreamLink(filename="foo-1.0.tar.gz", url=f"{FILES}foo-1.0.tar.gz",
                                hash_algo=None, hash_value=None)


def test_json_filename_comes_from_the_url_not_the_filename_field() -> None:
    [link] = json_links({"filename": "other-1.0.zip", "url": f"{FILES}foo-1.0%2Bx.zip"})
    assert link.filename == "foo-1.0+x.zip"


@pytest.mark.parametrize(("hashes", "url_suffix", "expected"), [
    ({"md5": MD5, "sha256": SHA256}, "", ("sha256", SHA256)),
    ({"md5": MD5, "sha512": "ab" * 64}, "", ("md5", MD5)),
    ({"sha256": SHA256.upper()}, "", ("sha256", SHA256)),
    ({"blake2b_256": SHA256, "md5": MD5}, "", ("md5", MD5)),
    ({"sha256": "nothex", "md5": MD5}, "", ("md5", MD5)),
    ({}, "", (None, None)),
    ({}, f"#md5={MD5}", ("md5", MD5)),
    ({"md5": MD5}, f"#sha256={SHA256}", ("md5", MD5)),
])
def test_json_hash_is_sha256_else_the_first_usable_entry(
        hashes: dict[str, str], url_suffix: str,
        expected: tuple[str | None, str | None]) -> None:
    [link] = json_links({"url": "foo-1.0.tar.gz" + url_suffix, "hashes": hashes})
    assert (link.hash_algo, link.hash_value) == expected
    assert link.url == PAGE + "foo-1.0.tar.gz"


@pytest.mark.parametrize(("value", "expected"), [
    (None, False), (False, False), (True, True), ("", True), ("use 2.0", "use 2.0")])
def test_json_yanked(value: Any, expected: bool | str) -> None:
    file = {"url": "foo-1.0.tar.gz", "hashes": {}}
    if value is not None:
        file["yanked"] = value
    assert json_links(file)[0].yanked == expected


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, False),
    ({"core-metadata": False}, False),
    ({"core-metadata": None}, False),
    ({"core-metadata": True}, True),
    ({"core-metadata": {"sha256": SHA256}}, f"sha256={SHA256}"),
    ({"core-metadata": {"sha256": SHA256.upper(), "md5": MD5}}, f"sha256={SHA256}"),
    ({"core-metadata": {}}, True),
    ({"core-metadata": {"md5": MD5}}, True),
    ({"dist-info-metadata": True}, True),
    ({"dist-info-metadata": {"sha256": SHA256}}, f"sha256={SHA256}"),
    ({"core-metadata": False, "dist-info-metadata": True}, False),
    ({"core-metadata": {"sha256": SHA256}, "dist-info-metadata": True}, f"sha256={SHA256}"),
])
def test_json_core_metadata(fields: dict[str, Any], expected: bool | str) -> None:
    [link] = json_links({"url": "foo-1.0-py3-none-any.whl", "hashes": {}, **fields})
    assert link.core_metadata == expected


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("&gt;=3", "&gt;=3"),
                                                  (">=3.8", ">=3.8")])
def test_json_requires_python_is_taken_as_given(value: str | None, expected: str | None) -> None:
    [link] = json_links({"url": "foo-1.0.tar.gz", "hashes": {}, "requires-python": value})
    assert link.requires_python == expected


@pytest.mark.parametrize("content_type", [
    "application/vnd.pypi.simple.v1+json; charset=utf-8",
    "Application/Vnd.PyPI.Simple.V1+JSON",
    " application/vnd.pypi.simple.v1+json ;q=1"])
def test_json_content_type_ignores_parameters_and_case(content_type: str) -> None:
    body = json_page({"url": "foo-1.0.tar.gz", "hashes": {}})
    assert names(parse_project_page(body, content_type, PAGE, "foo")) == ["foo-1.0.tar.gz"]


def test_json_body_sent_as_html_is_not_parsed_as_json() -> None:
    body = json_page({"url": "foo-1.0.tar.gz", "hashes": {}})
    assert parse_project_page(body, "application/json", PAGE, "foo") == []


@pytest.mark.parametrize("meta", [None, {}, {"api-version": "1.0"}, {"api-version": "1.1"},
                                  {"api-version": "1.99", "_last-serial": 7}, {"api-version": "1"}])
def test_json_api_version_1_is_accepted(meta: Any) -> None:
    page: dict[str, Any] = {"files": [{"url": "foo-1.0.tar.gz", "hashes": {}}]}
    if meta is not None:
        page["meta"] = meta
    body = json.dumps(page).encode()
    assert names(parse_project_page(body, JSON, PAGE, "foo")) == ["foo-1.0.tar.gz"]


@pytest.mark.parametrize("meta", [{"api-version": "2.0"}, {"api-version": "0.9"},
                                  {"api-version": "10.0"}, {"api-version": 1.0},
                                  {"api-version": None}, {"api-version": "one"},
                                  {"api-version": "1.x"}, {"api-version": ""}, "1.0", []])
def test_json_unsupported_api_version_is_a_page_error(meta: Any) -> None:
    body = json.dumps({"meta": meta, "files": []}).encode()
    with pytest.raises(PageError):
        parse_project_page(body, JSON, PAGE, "foo")


@pytest.mark.parametrize("body", [
    b"", b"{", b"<html></html>", b"\xff\xfe\xfd", b"[]", b'"files"', b"null",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"meta": {"api-version": "1.0"}}',
    b'{"files": {}}',
    b'{"files": ["foo-1.0.tar.gz"]}',
    b'{"files": [{"hashes": {}}]}',
    b'{"files": [{"url": 5}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "hashes": []}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "hashes": {"sha256": 5}}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "requires-python": 3}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "yanked": 1}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "core-metadata": "true"}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "size": "12"}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "size": -1}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "size": true}]}',
    b'{"files": [{"url": "foo-1.0.tar.gz", "size": 1' + b"0" * 5000 + b"}]}",
    b'{"files": [{"url": "foo-1.0.tar.gz", "upload-time": 1700000000}]}',
])
def test_malformed_json_page_is_a_page_error(body: bytes) -> None:
    with pytest.raises(PageError):
        parse_project_page(body, JSON, PAGE, "foo")


def test_json_page_in_utf16_is_read() -> None:
    body = json.dumps({"files": [{"url": "foo-1.0.tar.gz"}]}).encode("utf-16")
    assert names(parse_project_page(body, JSON, PAGE, "foo")) == ["foo-1.0.tar.gz"]


# -- which files belong to the project ----------------------------------------------------


@pytest.mark.parametrize(("project", "filename"), [
    ("foo", "foo-1.0.tar.gz"),
    ("foo", "Foo-1.0.zip"),
    ("foo", "FOO-2024.1.tgz"),
    ("foo", "foo-1.0-py3-none-any.whl"),
    ("foo", "foo-1.0-1-cp312-cp312-manylinux_2_17_x86_64.whl"),
    ("foo", "foo-1.0-py2.7.egg"),
    ("foo", "foo-1.0.win32.exe"),
    ("foo", "foo-1.0.win-amd64-py2.7.msi"),
    ("foo", "foo-1.0-macosx10.6.dmg"),
    ("foo", "foo-1.0-1.noarch.rpm"),
    ("foo", "foo_1.0-1_all.deb"),
    ("foo", "foo-1.0.doc.zip"),
    ("foo", "foo-1.0.tar"),
    ("foo", "foo-1.0.tar.bz2"),
    ("foo", "foo-v1.0.tar.gz"),
    ("foo", "foo-1!2.0.tar.gz"),
    ("foo", "foo-1.0.TAR.GZ"),
    ("Foo", "foo-1.0.tar.gz"),
    ("foo-bar", "foo-bar-1.0.tar.gz"),
    ("foo-bar", "foo_bar-1.0.tar.gz"),
    ("foo-bar", "Foo.Bar-1.0.zip"),
    ("foo-bar", "foo_bar-1.0-py3-none-any.whl"),
    ("Foo.Bar", "foo-bar-1.0.tar.gz"),
    ("foo_bar", "FOO__BAR-1.0.tar.gz"),
    ("zope.interface", "zope.interface-6.0-cp311-cp311-win_amd64.whl"),
    ("zope-interface", "zope.interface-6.0.tar.gz"),
])
def test_files_of_the_project_are_kept(project: str, filename: str) -> None:
    assert names(html_links(a(filename), project=project)) == [filename]
    assert names(json_links({"url": filename}, project=project)) == [filename]


@pytest.mark.parametrize(("project", "filename"), [
    ("foo", "foo-bar-1.0.tar.gz"),
    ("foo", "foo_bar-1.0.tar.gz"),
    ("foo", "foo.bar-1.0.zip"),
    ("foo", "foobar-1.0.tar.gz"),
    ("foo", "foo_bar-1.0-py3-none-any.whl"),
    ("foo", "foobar-1.0-py3-none-any.whl"),
    ("foo", "bar-1.0.tar.gz"),
    ("foo", "afoo-1.0.tar.gz"),
    ("foo", "foo.tar.gz"),
    ("foo", "foo-.tar.gz"),
    ("foo", "foo-latest.tar.gz"),
    ("foo", "foo.whl"),
    ("foo", "foo-py3-none-any.whl"),
    ("foo-bar", "foo-1.0.tar.gz"),
    ("foo-bar", "foo-1.0-py3-none-any.whl"),
])
def test_files_of_other_projects_are_dropped(project: str, filename: str) -> None:
    assert html_links(a(filename), project=project) == []
    assert json_links({"url": filename}, project=project) == []


@pytest.mark.parametrize("filename", [
    "foo-1.0.tar.xz", "foo-1.0.tar.gz.asc", "foo-1.0-py3-none-any.whl.metadata", "foo-1.0.txt",
    "foo-1.0", "foo-1.0.gz", "foo-1.0.bz2", "foo-1.0.tar.gz.sig", "foo-1.0.tar.gz.provenance",
    "foo-1.0.7z", "foo-1.0.apk"])
def test_other_file_types_are_dropped(filename: str) -> None:
    assert html_links(a(filename)) == []
    assert json_links({"url": filename}) == []


@pytest.mark.parametrize("href", [
    "ftp://files.example/foo-1.0.tar.gz",
    "file:///srv/foo-1.0.tar.gz",
    "javascript:alert(1)//foo-1.0.tar.gz",
    "data:text/plain,foo-1.0.tar.gz",
    "mailto:foo-1.0.tar.gz@example.com",
    "git+https://files.example/foo-1.0.tar.gz",
    "http:///foo-1.0.tar.gz",
    "https://[::1/foo-1.0.tar.gz",
])
def test_non_http_urls_are_dropped(href: str) -> None:
    assert html_links(a(href)) == []
    assert json_links({"url": href}) == []


@pytest.mark.parametrize("href", ["http://files.example/foo-1.0.tar.gz",
                                  "HTTPS://files.example/foo-1.0.tar.gz",
                                  "//files.example/foo-1.0.tar.gz"])
def test_http_and_https_urls_are_kept(href: str) -> None:
    assert names(html_links(a(href))) == ["foo-1.0.tar.gz"]


@pytest.mark.parametrize("href", [
    "foo-1.0.tar.gz/", "a%2Ffoo-1.0.tar.gz", "a%5Cfoo-1.0.tar.gz", "..", ".", "%2E%2E",
    "foo-1.0%00.tar.gz", "foo-1.0%0A.tar.gz", "foo-1.0%7F.tar.gz", "foo-1.0%C2%85.tar.gz",
    "foo-1.0%C0.tar.gz", "foo-1.0%FF.tar.gz", "foo-" + "1" * MAX_FILENAME_LENGTH + ".tar.gz",
    "foo-1.0.tar.gz?" + "x" * MAX_URL_LENGTH, "foo 1.0.tar.gz", "foo-1.0.tar.gz\x00",
])
def test_links_with_unsafe_filenames_or_urls_are_dropped(href: str) -> None:
    assert json_links({"url": href}) == []


def test_html_links_with_control_characters_in_the_url_are_dropped() -> None:
    assert html_links(a("foo-1.0\x01.tar.gz"), a("foo-&#0;1.0.tar.gz")) == []


# -- duplicates and order -----------------------------------------------------------------


def test_upstream_order_is_kept() -> None:
    anchors = [a(f"foo-{v}.tar.gz") for v in ("2.0", "1.0", "10.0", "1.5")]
    assert names(html_links(*anchors)) == [
        "foo-2.0.tar.gz", "foo-1.0.tar.gz", "foo-10.0.tar.gz", "foo-1.5.tar.gz"]


def test_first_of_duplicate_filenames_is_kept() -> None:
    links = html_links(a(f"a/foo-1.0.tar.gz#sha256={SHA256}"),
                       a(f"b/foo-1.0.tar.gz#md5={MD5}", extra=' data-requires-python=">=3"'))
    assert [link.url for link in links] == [PAGE + "a/foo-1.0.tar.gz"]


def test_later_duplicate_with_hash_replaces_one_without_in_place() -> None:
    links = html_links(a("a/foo-1.0.tar.gz", extra=' data-requires-python=">=3"'),
                       a("foo-2.0.tar.gz"),
                       a("b/foo-1.0.tar.gz"),
                       a(f"c/foo-1.0.tar.gz#md5={MD5}"),
                       a(f"d/foo-1.0.tar.gz#sha256={SHA256}"))
    assert [link.url for link in links] == [PAGE + "c/foo-1.0.tar.gz", PAGE + "foo-2.0.tar.gz"]


def test_later_duplicate_with_requires_python_replaces_one_with_neither() -> None:
    links = json_links({"url": "a/foo-1.0.tar.gz"},
                       {"url": "b/foo-1.0.tar.gz", "requires-python": ">=3.8"},
                       {"url": "c/foo-1.0.tar.gz", "requires-python": ">=3.9"})
    assert [(link.url, link.requires_python) for link in links] == [
        (PAGE + "b/foo-1.0.tar.gz", ">=3.8")]


def test_later_duplicate_with_only_requires_python_does_not_replace_one_with_hash() -> None:
    links = json_links({"url": "a/foo-1.0.tar.gz", "hashes": {"md5": MD5}},
                       {"url": "b/foo-1.0.tar.gz", "requires-python": ">=3.8"})
    assert [link.url for link in links] == [PAGE + "a/foo-1.0.tar.gz"]


def test_dropped_links_do_not_count_as_duplicates() -> None:
    links = html_links(a(f"ftp://x.example/foo-1.0.tar.gz#sha256={SHA256}"),
                       a("foo-1.0.tar.gz"))
    assert [(link.url, link.hash_value) for link in links] == [(PAGE + "foo-1.0.tar.gz", None)]


# -- the project list ---------------------------------------------------------------------


def test_json_project_list_maps_normalized_to_given_names() -> None:
    body = json.dumps({"meta": {"api-version": "1.1", "_last-serial": 3}, "projects": [
        {"name": "Foo.Bar", "_last-serial": 1}, {"name": "baz_qux"}, {"name": "foo-bar"}]})
    assert parse_project_list(body.encode(), JSON, LIST) == {
        "foo-bar": "Foo.Bar", "baz-qux": "baz_qux"}


def test_json_project_list_skips_unusable_names() -> None:
    body = json.dumps({"projects": [{"name": ""}, {"name": "a b"}, {"name": "x\x00"},
                                    {"name": "a/b"}, {"name": "n" * 300}, {"name": "ok"}]})
    assert parse_project_list(body.encode(), JSON, LIST) == {"ok": "ok"}


@pytest.mark.parametrize("body", [
    b"{", b"[]", b"{}", b'{"projects": {}}', b'{"projects": ["foo"]}',
    b'{"projects": [{"name": 1}]}', b'{"projects": [{}]}',
    b'{"meta": {"api-version": "2.0"}, "projects": []}',
    b'{"meta": {"api-version": "0.1"}, "projects": []}'])
def test_malformed_json_project_list_is_a_page_error(body: bytes) -> None:
    with pytest.raises(PageError):
        parse_project_list(body, JSON, LIST)


def test_html_project_list_names_come_from_anchor_text() -> None:
    body = html_page(a("foo-bar/", "Foo.Bar"), a("/simple/baz/", " <b>Baz</b>\n"),
                     a("q/", "A &amp; B"), a("zzz/", "zzz"))
    assert parse_project_list(body, HTML, LIST) == {
        "foo-bar": "Foo.Bar", "baz": "Baz", "zzz": "zzz"}   # "A & B" has a space


def test_html_project_list_falls_back_to_the_last_path_segment() -> None:
    body = html_page(a("foo-bar/", ""), a("https://pypi.example/simple/Baz%5FQux", " "))
    assert parse_project_list(body, HTML, LIST) == {"foo-bar": "foo-bar", "baz-qux": "Baz_Qux"}


def test_html_project_list_keeps_the_first_spelling() -> None:
    body = html_page(a("foo/", "Foo"), a("foo/", "foo"), a("FOO/", "FOO"))
    assert parse_project_list(body, HTML, LIST) == {"foo": "Foo"}


@pytest.mark.parametrize(("href", "accepted"), [
    ("foo/", True),
    ("./foo/", True),
    ("/simple/foo/", True),
    ("https://pypi.example/simple/foo/", True),
    ("https://PyPI.example:443/simple/foo/", True),
    ("//pypi.example/simple/foo/", True),
    ("https://other.example/simple/foo/", False),
    ("http://pypi.example/simple/foo/", False),
    ("https://pypi.example:8443/simple/foo/", False),
    ("https://pypi.example/other/foo/", False),
    ("https://pypi.example/simplefoo/", False),
    ("https://pypi.example/simple/", False),
    ("../foo/", False),
    ("/", False),
    ("#top", False),
    ("https://pypi.example:99999/simple/foo/", False),
    ("https://[::1/simple/foo/", False),
])
def test_html_project_list_accepts_links_below_the_list_on_the_same_host(
        href: str, accepted: bool) -> None:
    body = html_page(a(href, "foo"))
    assert parse_project_list(body, HTML, LIST) == ({"foo": "foo"} if accepted else {})


def test_html_project_list_below_a_list_url_without_trailing_slash() -> None:
    body = html_page(a("https://pypi.example/simple/foo/", "foo"),
                     a("https://pypi.example/simplex/", "bar"))
    assert parse_project_list(body, HTML, "https://pypi.example/simple") == {"foo": "foo"}


def test_html_project_list_honours_base_href() -> None:
    body = html_page(a("foo/", "foo"), head='<base href="https://cdn.example/simple/">')
    assert parse_project_list(body, HTML, LIST) == {}
    assert parse_project_list(html_page(a("../foo/", "foo")), HTML, LIST) == {}
    body = html_page(a("../foo/", "foo"), head='<base href="/simple/projects/">')
    assert parse_project_list(body, HTML, LIST) == {"foo": "foo"}


PLAIN_LIST = [a("foo-bar/", "Foo.Bar"), a("q/", "A &amp; B"), a("r/", "R&eacute;sum&eacute;"),
              a("sp/", "  spaced\n"), a("empty%5Fname/", ""), a("deep/er/", "deeper"),
              a("foo-bar/", "foo_bar")]


def test_a_plain_html_project_list_is_read_without_the_parser_alike() -> None:
    from devpi_twisted.mirror.parse_list import _html_project_names, _plain_project_names

    text = html_page(*PLAIN_LIST).decode()
    plain = _plain_project_names(text, LIST)
    assert plain is not None  # the fast way
    assert plain == list(_html_project_names(text, LIST)) == [
        "Foo.Bar", "A & B", "R\u00e9sum\u00e9", "spaced", "empty_name", "deeper", "foo_bar"]
    assert parse_project_list(text.encode(), HTML, LIST) == {
        "foo-bar": "Foo.Bar", "r\u00e9sum\u00e9": "R\u00e9sum\u00e9", "spaced": "spaced",
        "empty-name": "empty_name", "deeper": "deeper"}
    assert _plain_project_names(text, LIST[:-1]) is None  # no trailing slash: the parser's


@pytest.mark.parametrize("odd", [
    a("hidden/", "hidden").join(["<!-- ", " -->"]),  # a comment: no anchor for a parser
    '<base href="https://cdn.example/simple/">',
    a("../up/", "up"), a("./here/", "here"),
    '<A HREF="upper/">upper</A>', a("attr/", "attr", extra=' class="x"'),
    "<a href='single/'>single</a>", a("nested/", "<b>nested</b>"),
    "<script>var s = '<a href=\"s/\">s</a>';</script>",
])
def test_any_other_html_project_list_goes_to_the_parser(
        odd: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from devpi_twisted.mirror import parse_list as parse

    text = html_page(*PLAIN_LIST, odd).decode()
    assert parse._plain_project_names(text, LIST) is None
    assert parse._plain_project_names(text.replace(odd, ""), LIST) is not None
    read = parse_project_list(text.encode(), HTML, LIST)
    monkeypatch.setattr(parse, "_plain_project_names", lambda text, url: None)
    assert read == parse_project_list(text.encode(), HTML, LIST)  # the parser's answer


def test_html_project_list_with_broken_markup_is_a_page_error() -> None:
    with pytest.raises(PageError):
        parse_project_list(b"<![bogus]>", HTML, LIST)


def test_requirements_are_taken_from_core_metadata_headers_without_extras() -> None:
    from devpi_twisted.mirror.requirements import parse_requirements

    metadata = (b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n"
                b"Requires-Dist: Foo_Bar (>=1.0)\n"
                b'Requires-Dist: baz>=2; python_version >= "3.8"\n'
                b'Requires-Dist: pytest; extra == "test"\n'
                b"Requires-Dist: foo-bar\n"
                b"Requires-Dist: !!not a requirement\n"
                b"Requires-Dist: qux[x] ; sys_platform == 'win32' and extra == 'dev'\n"
                b"\nThe description.\nRequires-Dist: not-a-header\n")
    assert parse_requirements(metadata) == ["foo-bar", "baz"]
    assert parse_requirements(b"\xff\xfe\x00not metadata") == []
    many = b"".join(b"Requires-Dist: p%d\n" % i for i in range(500))
    assert len(parse_requirements(b"Name: x\n" + many)) == 200
