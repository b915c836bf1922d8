"""The web pages' pure parts: descriptions through readme-renderer (sanitised, headings
demoted), tox report summaries of any JSON, dates and relative times, sizes, ``latest``
and ``stable``, which project URLs may be links."""

from __future__ import annotations

import pytest

from devpi_twisted.storage.values import VersionData
from devpi_twisted.web.ui import shaping
from devpi_twisted.web.ui.describe import Rendered, render_description, summarise_tox
from devpi_twisted.web.ui.templating import ago, parse_time, size, utc


def test_descriptions_by_content_type() -> None:
    assert "<em>x</em>" in render_description("*x*", "text/markdown")
    assert "<em>x</em>" in render_description("*x*", "text/x-rst")
    assert "<em>x</em>" in render_description("*x*", "")  # rst by default
    plain = render_description("*x* <b>", "text/plain")
    assert "<em>" not in plain and "&lt;b&gt;" in plain
    assert "<td>" in render_description("| a |\n|---|\n| b |", "text/markdown; variant=GFM")
    broken = render_description("`unclosed\n\n.. bad:: directive", "text/x-rst")
    assert "unclosed" in broken  # shown as text rather than lost


@pytest.mark.parametrize("text,ctype", [
    ('<script>alert(1)</script><a href="javascript:alert(2)">x</a><img src=x onerror=alert(3)>',
     "text/markdown"),
    ('.. raw:: html\n\n   <script>alert(1)</script>\n\n`x <javascript:alert(2)>`_\n', "text/x-rst"),
    ('<iframe src="//evil"></iframe><form action="//evil"><input></form><style>*{}</style>',
     "text/markdown"),
])
def test_descriptions_are_sanitised(text: str, ctype: str) -> None:
    html = render_description(text, ctype).lower()
    for bad in ("<script", 'href="javascript:', "onerror=", "<iframe", "<form", "<style"):
        assert bad not in html, bad  # (text may say these words, escaped)


def test_rendered_descriptions_are_kept_by_content_hash() -> None:
    kept = Rendered(size=2)
    keys = [Rendered.key(t, "text/plain") for t in ("a", "b", "c")]
    assert len(set(keys)) == 3 and Rendered.key("a", "text/x-rst") != keys[0]
    for key in keys:
        kept.put(key, key)
    assert kept.get(keys[0]) is None and kept.get(keys[2]) == keys[2]


@pytest.mark.parametrize("data,problem", [
    (b"not json", "not JSON"), (b"[1, 2]", "not a JSON object"), (b"\xff\xfe", "not JSON"),
    (b"[" * 100_000, "not JSON"), (b'{"testenvs": 5}', ""), (b'{"testenvs": {"a": 5}}', ""),
    (b'{"testenvs": {"a": {"test": [{"retcode": "x", "command": 5}]}}}', ""),
])
def test_tox_reports_of_any_shape(data: bytes, problem: str) -> None:
    assert summarise_tox(data).problem == problem


def test_tox_pass_and_fail() -> None:
    report = summarise_tox(b'{"host": "h", "testenvs": {"ok": {"test": [{"retcode": 0}]}, '
                           b'"bad": {"setup": [{"retcode": 1}], "test": [{"retcode": 0}]}, '
                           b'"none": {}}}')
    assert [(e.name, e.passed) for e in report.envs] == [("ok", True), ("bad", False),
                                                          ("none", False)]


def test_times() -> None:
    now = 1_700_000_000.0
    assert utc("2023-11-14T22:13:20.000000Z") == "2023-11-14 22:13 UTC"
    assert utc([2023, 11, 14, 22, 13, 20]) == "2023-11-14 22:13 UTC"
    assert parse_time("garbage") is None and parse_time([2023, 13, 40, 0, 0, 0]) is None
    assert utc(None) == "" and ago("", now) == ""
    assert ago(now - 3 * 86400, now) == "3 days ago"
    assert ago(now - 1, now) == "just now"
    assert ago(now - 3600, now) == "1 hour ago"
    assert ago(now + 7200, now) == "in 2 hours"
    assert ago(now - 400 * 86400, now) == "1 year ago"


def test_sizes() -> None:
    assert size(150) == "150 bytes" and size(2048) == "2.0 KiB"
    assert size(5 * 1024 ** 3) == "5.0 GiB" and size(None) == "" and size(-1) == ""


def _release(version: str) -> shaping.Release:
    return shaping.Release("a/b", version, VersionData({"name": "p", "version": version}))


def test_latest_and_stable() -> None:
    releases = shaping.first_wins([("a/b", [(v, _release(v).data)
                                            for v in ("1.0", "2.0b1", "1.5", "junk")])])
    assert [r.version for r in releases] == ["2.0b1", "1.5", "1.0", "junk"]
    assert shaping.resolve(releases, "latest").version == "2.0b1"
    assert shaping.resolve(releases, "stable").version == "1.5"
    assert shaping.resolve(releases, "1.0").version == "1.0"
    assert shaping.resolve(releases, "9") is None
    assert shaping.resolve([_release("1.0rc1")], "stable") is None
    assert shaping.resolve([_release("latest")], "latest").version == "latest"


def test_only_http_urls_are_links() -> None:
    urls = shaping.project_urls({"home_page": "javascript:alert(1)", "project_urls": [
        "Docs, https://d.example", "Bad, data:text/html,x", "https://bare.example", "Odd, "]})
    assert urls == [("Homepage", "javascript:alert(1)", None),
                    ("Docs", "https://d.example", "https://d.example"),
                    ("Bad", "data:text/html,x", None),
                    ("URL", "https://bare.example", "https://bare.example"),
                    ("Odd", "", None)]
