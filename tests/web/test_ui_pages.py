"""The web pages (issue 22) in memory: every page type and its markup contract (the
ids the browser tests rely on), content negotiation (JSON, simple pages and installers
get what they got before), links under an X-Outside-Url prefix, hostile markup
escaped, bad input answered 4xx, the security headers, the search renderer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twisted.web.test.requesthelper import DummyRequest

from devpi_twisted.model.search import SearchHit, SearchResults
from devpi_twisted.web.helpers import RequestHelpers
from devpi_twisted.web.projects import DOCS_POLICY
from devpi_twisted.web.site import ServerInfo
from devpi_twisted.web.ui.webapp import WebApp
from tests.pg import PgCluster
from tests.web.ui_site import HOSTILE, Site, links_of, make_site, site, text_of

__all__ = ["site"]  # the fixture


def test_root_lists_the_indexes_and_the_layout(site: Site) -> None:
    html = text_of(site.page("/"))
    assert html.startswith("<!doctype html>")
    assert '<html lang="en">' in html and "<title>" in html and "<footer>" in html
    assert '<nav aria-label="main">' in html and 'id="search-query"' in html
    assert 'action="http://testserver/+search"' in html
    assert html.count("<h1>") == 1 and "<h1>Indexes</h1>" in html
    assert '<table id="indexes">' in html
    assert '<a href="http://testserver/alice/dev">alice/dev</a>' in html
    assert '<a href="http://testserver/root/pypi">root/pypi</a>' in html
    assert 'href="http://testserver/+static/style.css"' in html
    assert "<script" not in html.replace("&lt;script", "")
    assert ">Log in</a>" in html


def test_user_page(site: Site) -> None:
    html = text_of(site.page("/alice"))
    assert "<h1>alice</h1>" in html and "alice/dev" in html and "alice/prod" in html
    assert site.page("/nobody").code == 404


def test_index_page_shows_config_bases_and_projects(site: Site) -> None:
    html = text_of(site.page("/alice/dev"))
    assert "<h1>alice/dev</h1>" in html and '<dl id="index-config">' in html
    assert "Alice&#39;s &lt;dev&gt;" in html
    assert '<table id="projects">' in html
    assert '<a href="http://testserver/alice/dev/pkg">pkg</a>' in html
    assert '<a href="http://testserver/alice/dev/pkg/2.0b1">2.0b1</a>' in html  # latest
    assert 'id="index-edit"' not in html  # not for the anonymous
    from tests.web.test_fuzz import _sdist
    from tests.web.ui_site import upload
    upload(site.server, "alice/dev", site.auth["alice"], "Pkg", "3.0", "Pkg-3.0.tar.gz",
           _sdist("Pkg", "3.0"))
    assert '<a href="http://testserver/alice/dev/pkg/3.0">3.0</a>' in text_of(
        site.page("/alice/dev"))  # the kept latest version follows the upload
    prod = text_of(site.page("/alice/prod", headers=site.auth["alice"]))
    assert '<a href="http://testserver/alice/dev">alice/dev</a>' in prod  # bases linked
    assert '<a href="http://testserver/alice/private">alice/private</a>' in prod


def test_a_mirror_index_page_shows_only_the_cached_projects(site: Site) -> None:
    html = text_of(site.page("/root/pypi"))
    assert "<h1>root/pypi</h1>" in html and "mirror_url" in html
    assert "0 projects cached from the mirror so far" in html


def test_index_pages_are_paged(tmp_path: Path) -> None:
    made = make_site(tmp_path)
    server = made.server
    from tests.web.ui_site import upload
    from tests.web.test_fuzz import _sdist
    for n in range(105):
        upload(server, "alice/dev", made.auth["alice"], f"p{n:03d}", "1.0",
               f"p{n:03d}-1.0.tar.gz", _sdist(f"p{n:03d}", "1.0"))
    first = text_of(made.page("/alice/dev"))
    assert 'rel="next" href="http://testserver/alice/dev?page=2"' in first
    assert 'rel="prev"' not in first and "page 1 of 2" in first
    second = text_of(made.page("/alice/dev?page=2"))
    assert 'rel="prev" href="http://testserver/alice/dev?page=1"' in second
    assert 'rel="next"' not in second
    assert len(re.findall(r'<tr><td><a href="http://testserver/alice/dev/', first)) == 100
    assert len(re.findall(r'<tr><td><a href="http://testserver/alice/dev/', second)) == 6
    server.storage.close()


def test_project_page_lists_versions_newest_first_with_their_index(site: Site) -> None:
    html = text_of(site.page("/alice/prod/pkg"))
    assert "<h1>pkg</h1>" in html and '<table id="versions">' in html
    versions = re.findall(r'<a href="http://testserver/alice/prod/pkg/([^"]+)">', html)
    assert versions == ["2.0b1", "1.0", "0.9"]
    assert html.count("(inherited)") == 2  # 2.0b1 and 1.0 come from alice/dev
    assert "<time datetime=" in html and "UTC" in html
    # a normalised name redirects as the JSON view does
    assert site.page("/alice/prod/PKG").code == 302


def test_version_page_contract(site: Site) -> None:
    html = text_of(site.page("/alice/dev/pkg/1.0"))
    assert "<h1>pkg 1.0</h1>" in html
    for marker in ('<section id="description"', '<dl id="metadata">', '<table id="files">',
                   '<section id="toxresults"', 'id="pip-snippet"', 'id="uv-snippet"',
                   '<a id="docs-link" href="http://testserver/alice/dev/pkg/1.0/+d/index.html"'):
        assert marker in html, marker
    assert ("pip install --index-url http://testserver/alice/dev/+simple/ pkg==1.0"
            in html)
    assert "uv pip install --index-url http://testserver/alice/dev/+simple/ pkg==1.0" in html
    assert "<em>world</em>" in html  # Markdown rendered
    assert '<h3 id="user-content-hello-world">' in html  # its headings below the page's
    main = html.split("<main>", 1)[1].split("</main>", 1)[0]
    assert main.count("<h1") == 1
    assert "&gt;=3.9" in html and "attrs&gt;=23" in html and "MIT" in html
    assert "Programming Language :: Python :: 3" in html
    assert '<a href="https://example.org/src"' in html
    assert ">pkg-1.0.tar.gz</a>" in html and "150 bytes" in html
    assert '<td class="pass">passed</td>' in html and '<td class="fail">failed</td>' in html
    assert "1 passed &lt;b&gt;" in html  # the tox output, escaped
    assert "(just now)" in html
    site.server.clock.advance(3 * 86400 + 60)
    assert "(3 days ago)" in text_of(site.page("/alice/dev/pkg/1.0"))
    assert 'id="yank-form"' not in html and 'id="delete-form"' not in html  # anonymous


def test_rst_and_plain_descriptions(site: Site) -> None:
    html = text_of(site.page("/alice/dev/pkg/2.0b1"))
    assert "<em>emphasis</em>" in html


def test_latest_and_stable(site: Site) -> None:
    assert "<h1>pkg 2.0b1</h1>" in text_of(site.page("/alice/dev/pkg/latest"))
    assert "<h1>pkg 1.0</h1>" in text_of(site.page("/alice/dev/pkg/stable"))
    # the JSON API keeps its meaning: no such version
    assert site.server.client.get("/alice/dev/pkg/latest").code == 404


def test_docs_frame(site: Site) -> None:
    reply = site.page("/alice/dev/pkg/1.0/+d/index.html")
    html = text_of(reply)
    assert ('<iframe id="docs-frame" sandbox="allow-scripts" '
            'src="http://testserver/alice/dev/pkg/1.0/+doc/index.html"') in html
    assert text_of(site.page("/alice/dev/pkg/1.0/+d/")).count('id="docs-frame"') == 1
    doc = site.page("/alice/dev/pkg/1.0/+doc/index.html")
    assert doc.code == 200 and doc.header("Content-Security-Policy") == DOCS_POLICY.decode()
    assert doc.header("X-Content-Type-Options") == "nosniff"
    assert site.page("/alice/dev/pkg/2.0b1/+d/index.html").code == 404  # no docs
    for name in ("latest", "stable"):  # the newest version with docs
        html = text_of(site.page(f"/alice/dev/pkg/{name}/+d/api/x.html"))
        assert 'src="http://testserver/alice/dev/pkg/1.0/+doc/api/x.html"' in html
    assert site.page("/alice/prod/pkg/latest/+d/index.html").code == 404  # none on prod


def test_status_metrics_and_login_pages(site: Site) -> None:
    status = text_of(site.page("/+status"))
    assert "<h1>Status</h1>" in status and "serial" in status and "replication" in status
    metrics = text_of(site.page("/+web/metrics"))
    assert "<h1>Metrics</h1>" in metrics and 'id="metrics"' in metrics
    login = site.page("/+login?next=/alice/dev")
    html = text_of(login)
    assert "<h1>Log in</h1>" in html and 'name="username"' in html
    assert 'name="password"' in html and ">Log in</button>" in html
    assert 'value="/alice/dev"' in html
    assert "frame-ancestors 'none'" in login.header("Content-Security-Policy")


def test_static_stylesheet(site: Site) -> None:
    reply = site.page("/+static/style.css")
    assert reply.code == 200 and reply.header("Content-Type").startswith("text/css")
    assert b"@import" not in reply.body and b"http" not in reply.body  # nothing from elsewhere
    assert site.page("/+static/../setup.py").code == 404
    assert site.page("/+static/nothing.css").code == 404


@pytest.mark.parametrize("path", ["/", "/alice", "/alice/dev", "/alice/dev/pkg",
                                  "/alice/dev/pkg/1.0", "/alice/dev/pkg/1.0/+d/index.html",
                                  "/+status", "/+web/metrics", "/+login"])
def test_pages_have_a_strict_policy(site: Site, path: str) -> None:
    reply = site.page(path)
    assert reply.code == 200
    policy = reply.header("Content-Security-Policy")
    for part in ("default-src 'none'", "style-src 'self'", "form-action 'self'",
                 "frame-src 'self'", "base-uri 'none'"):
        assert part in policy
    assert "unsafe-inline" not in policy
    assert reply.header("X-Content-Type-Options") == "nosniff"
    html = reply.body.decode()
    assert "<script" not in html.replace("&lt;script", "")
    assert " style=" not in html and "<style" not in html


# -- content negotiation ---------------------------------------------------------

JSON_PATHS = ["/", "/alice", "/alice/dev", "/alice/dev/pkg", "/alice/dev/pkg/1.0", "/+status"]


@pytest.mark.parametrize("accept", ["application/json", "text/html, application/json"])
def test_json_clients_get_json(site: Site, accept: str) -> None:
    for path in JSON_PATHS:
        reply = site.server.client.get(path, headers={"Accept": [accept]})
        assert reply.code == 200, (path, reply.body[:200])
        assert reply.header("Content-Type") == "application/json", path
        assert "result" in reply.json


@pytest.mark.parametrize("accept", ["", "*/*"])
def test_clients_asking_for_nothing_in_particular_get_json(site: Site, accept: str) -> None:
    for path in ("/", "/alice", "/alice/dev", "/alice/dev/pkg/1.0", "/+status"):
        reply = site.server.client.get(path, headers={"Accept": [accept]})
        assert reply.header("Content-Type") == "application/json", path
    # as before: the project view asks for JSON explicitly
    assert site.server.client.get("/alice/dev/pkg", headers={"Accept": [accept]}).code == 415


@pytest.mark.parametrize("agent", ["pip/24.0 {}", "uv/0.4.0", "setuptools/68"])
def test_installers_keep_their_pages(site: Site, agent: str) -> None:
    headers = {"User-Agent": [agent], "Accept": ["text/html"]}
    for path, simple in (("/alice/dev", "/alice/dev/+simple/"),
                         ("/alice/dev/pkg", "/alice/dev/+simple/pkg/")):
        reply = site.server.client.get(path, headers=headers)
        expected = site.server.client.get(simple, headers=headers)
        assert reply.code == 200 and reply.body.startswith(b"<!DOCTYPE html>"), path
        # the same page (its links relative to where it was asked)
        assert reply.body.replace(b"../", b"") == expected.body.replace(b"../", b"")


def test_simple_pages_are_unchanged_for_browsers(site: Site) -> None:
    reply = site.page("/alice/dev/+simple/pkg/")
    assert reply.code == 200 and reply.body.startswith(b"<!DOCTYPE html>")
    assert b"stylesheet" not in reply.body


def test_devpi_client_and_twine_get_json(site: Site) -> None:
    for agent in ("devpi-client/7.0.0 (py3.11; linux)", "twine/5.0.0"):
        reply = site.server.client.get("/alice/dev", headers={"User-Agent": [agent],
                                                              "Accept": ["application/json"]})
        assert reply.json["type"] == "indexconfig"


# -- outside URL, hostile markup, bad input -------------------------------------


def test_links_follow_the_outside_url_prefix(site: Site) -> None:
    prefix = "https://example.com/devpi"
    for path in ("/", "/alice/dev", "/alice/prod/pkg", "/alice/dev/pkg/1.0"):
        reply = site.page("/devpi" + path, headers={"X-Outside-Url": [prefix]})
        html = text_of(reply)
        for link in links_of(html):
            assert link.startswith(prefix + "/") or link.startswith("#") \
                or link.startswith("https://example.org/"), (path, link)
        assert f'action="{prefix}/+search"' in html
        if path != "/":
            assert f"{prefix}/+login?next={path}\"" in html


def test_hostile_markup_is_escaped(site: Site) -> None:
    for path in ("/", "/alice", "/alice/dev", "/alice/dev/pkg/1.0"):
        html = text_of(site.page(path))
        assert "<script>" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
        assert "javascript:" not in html.replace("javascript:alert(6)</li>", "")
    root = text_of(site.page("/"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in root  # the index description
    version = text_of(site.page("/alice/dev/pkg/1.0"))
    assert "<li>Evil: javascript:alert(6)</li>" in version  # shown, never linked
    assert HOSTILE not in version


@pytest.mark.parametrize("path,code", [
    ("/alice/dev/pkg/9.9", 404), ("/alice/dev/nothing", 404), ("/alice/nothing", 404),
    ("/alice/dev?page=abc", 400), ("/alice/dev?page=0", 400), ("/alice/dev?page=99", 404),
    ("/alice/dev?page=99999999999999999999", 400), ("/alice/dev/pkg/9.9/+d/index.html", 404),
    ("/alice/dev/pkg/%3Cscript%3E", 404), ("/alice/dev/nothing/latest", 404),
])
def test_bad_input_is_4xx(site: Site, path: str, code: int) -> None:
    reply = site.page(path)
    assert reply.code == code, (path, reply.body[:300])
    assert b"<script>" not in reply.body
    assert "default-src 'none'" in reply.header("Content-Security-Policy")


# -- search ------------------------------------------------------------------------


def test_the_search_renderer(site: Site) -> None:
    hit = SearchHit("alice", "dev", "pkg", "1.0", "description", "pkg 1.0",
                  (("a ", False), ("<b>word</b>", True), (" here", False)),
                  "/alice/dev/pkg/1.0", 1.0)
    results = SearchResults('q"<x>', (hit,), 41, 1, 20)
    request = DummyRequest([b"+search"])
    request.requestHeaders.setRawHeaders(b"Host", [b"testserver"])
    request.isSecure = lambda: False  # type: ignore[method-assign]  # (DummyRequest lacks it)
    request.path = b"/+search"
    helpers = RequestHelpers(site.server.ops, ServerInfo(uuid="u", serverdir="/"))
    web = WebApp(site.server.ops, None, None, helpers)  # type: ignore[arg-type]  # (unused)
    html = web.search(request, results).decode()
    assert request.responseHeaders.getRawHeaders(b"Content-Security-Policy")
    assert "<h1>Search</h1>" in html and '<ol id="results"' in html
    assert '<p id="result-count">41 results' in html
    assert '<a href="http://testserver/alice/dev/pkg/1.0">pkg 1.0</a>' in html
    assert "<mark>&lt;b&gt;word&lt;/b&gt;</mark>" in html
    assert 'rel="next"' in html and "q%22%3Cx%3E" in html
    assert "<x>" not in html
    request.args = {b"query": [b"x"], b"index": [b"dev"], b"user": [b"alice"]}
    html = web.search(request, results).decode()
    assert "in user alice in index dev" in html
    assert 'href="http://testserver/+search?user=alice&amp;index=dev&amp;query=' in html


def test_versions_with_markup_characters_are_escaped_and_quoted(site: Site) -> None:
    from tests.web.test_fuzz import _sdist
    from tests.web.ui_site import upload
    for version in ("1.0'x", "1.0&x"):
        upload(site.server, "alice/dev", site.auth["alice"], "pkg", version,
               f"pkg-{version}.tar.gz", _sdist("pkg", version))
    html = text_of(site.page("/alice/dev/pkg"))
    assert '<a href="http://testserver/alice/dev/pkg/1.0%26x">1.0&amp;x</a>' in html
    assert '<a href="http://testserver/alice/dev/pkg/1.0%27x">1.0&#39;x</a>' in html
    version = text_of(site.page("/alice/dev/pkg/1.0%26x"))
    assert "<h1>pkg 1.0&amp;x</h1>" in version
    assert "pkg-1.0%26x.tar.gz#sha256=" in version and ">pkg-1.0&amp;x.tar.gz</a>" in version
    assert "pkg==1.0&amp;x" in version


def test_every_page_type_on_postgresql(tmp_path: Path, pg_cluster: PgCluster) -> None:
    made = make_site(tmp_path, pg=(pg_cluster, pg_cluster.create_database()))
    try:
        for path, marker in (("/", 'id="indexes"'), ("/alice", "<h1>alice</h1>"),
                             ("/alice/prod", 'id="projects"'), ("/alice/prod/pkg", 'id="versions"'),
                             ("/alice/dev/pkg/1.0", 'id="toxresults"'),
                             ("/alice/dev/pkg/1.0/+d/index.html", 'id="docs-frame"'),
                             ("/+status", "<h1>Status</h1>")):
            html = text_of(made.page(path))
            assert marker in html, path
            assert "secretpkg" not in html and "alice/private" not in html, path
    finally:
        made.server.storage.close()


def test_mirror_pages_from_the_cache(site: Site) -> None:
    """A mirror's cached projects (never its whole upstream list) with their latest
    version; an inheriting index shows which versions come from the mirror."""
    from tests.support import result_of
    page = {"links": [{"filename": f"mirrored-{v}.tar.gz", "sha256": "ab" * 32,
                       "entrypath": f"root/pypi/+f/abc/def0123456789a/mirrored-{v}.tar.gz"}
                      for v in ("1.0", "1.1", "2.0rc1")], "serial": 1}
    result_of(site.server.storage.write_mirror_project("root", "pypi", "mirrored", page, {}))
    index = text_of(site.page("/root/pypi"))
    assert "1 project cached from the mirror so far" in index
    assert '<a href="http://testserver/root/pypi/mirrored/2.0rc1">2.0rc1</a>' in index
    project = text_of(site.page("/root/pypi/mirrored"))
    versions = re.findall(r'<a href="http://testserver/root/pypi/mirrored/([^"]+)">', project)
    assert versions == ["2.0rc1", "1.1", "1.0"]
    version = text_of(site.page("/root/pypi/mirrored/stable"))
    assert "<h1>mirrored 1.1</h1>" in version and ">mirrored-1.1.tar.gz</a>" in version
    assert 'id="yank-form"' not in version
    reply = site.server.client.request("PATCH", "/alice/dev", ["bases=root/pypi"],
                                       headers=site.auth["alice"])
    assert reply.code == 200, reply.body
    inherited = text_of(site.page("/alice/dev/mirrored"))
    assert '<a href="http://testserver/root/pypi">root/pypi</a> <span class="inherited">' \
        in inherited


def test_installers_asking_for_html_get_no_web_page(site: Site) -> None:
    """pip, uv and the like never get the web interface: what they got before."""
    pip = {"User-Agent": ["pip/24.0"], "Accept": ["text/html"]}
    for path in ("/", "/alice", "/alice/dev/pkg/1.0", "/+status"):
        reply = site.server.client.get(path, headers=pip)
        assert reply.code == 404 and b"<nav" not in reply.body, path
