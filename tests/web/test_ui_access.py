"""Permissions and actions of the web pages (issue 22, item 3): a private index and
everything in it appears on no page for who may not read it (crawled from ``/``), and
appears after login; the actions (edit an index, yank and un-yank, delete a version of
a volatile index) are offered to those allowed, need the session's CSRF token, call
the domain's permission checks and answer 303 back to the page."""

from __future__ import annotations

from collections import deque
from typing import Any

from tests.web.ui_site import BROWSER, Site, links_of, site, text_of

__all__ = ["site"]  # the fixture

SECRETS = ("alice/private", "secretpkg", "the secret description")


def crawl(site: Site, headers: dict[str, Any] | None = None, limit: int = 80) -> dict[str, str]:
    """path -> HTML of every page reachable by links from ``/`` (on this server)."""
    seen: dict[str, str] = {}
    todo = deque(["/"])
    while todo and len(seen) < limit:
        path = todo.popleft()
        if path in seen:
            continue
        reply = site.page(path, headers=headers)
        seen[path] = reply.body.decode("utf-8", "replace")
        if not (reply.header("Content-Type") or "").startswith("text/html"):
            continue
        for link in links_of(seen[path]):
            if link.startswith("http://testserver/") and "+f/" not in link \
                    and "+logout" not in link:
                todo.append(link[len("http://testserver"):].split("#")[0])
    return seen


def test_nothing_private_appears_for_the_anonymous(site: Site) -> None:
    pages = crawl(site)
    assert "/alice/prod/pkg/1.0" in pages and "/alice/dev/pkg/1.0/+d/index.html" in pages
    for path, html in pages.items():
        for secret in SECRETS:
            assert secret not in html, (path, secret)
    assert site.page("/alice/private").code == 401
    assert site.page("/alice/private/secretpkg").code == 401
    assert site.page("/alice/prod/secretpkg").code == 404  # not through the base either
    assert site.page("/alice/prod/secretpkg/1.0").code == 404


def test_nor_for_a_user_who_may_not_read_it(site: Site) -> None:
    bob = site.session("bob")
    pages = crawl(site, {"Cookie": bob["Cookie"]}, limit=30)
    for path, html in pages.items():
        for secret in SECRETS:
            assert secret not in html, (path, secret)
        assert ">Log out</button>" in html or not html.startswith("<!doctype")
    assert site.page("/alice/private", headers={"Cookie": bob["Cookie"]}).code == 403


def test_the_private_index_appears_after_login(site: Site) -> None:
    alice = site.session("alice")
    cookie = {"Cookie": alice["Cookie"]}
    root = text_of(site.page("/", headers=cookie))
    assert '<a href="http://testserver/alice/private">alice/private</a>' in root
    assert 'id="logout-form"' in root and alice["csrf"] in root
    prod = text_of(site.page("/alice/prod", headers=cookie))
    assert "alice/private" in prod  # its bases
    assert "secretpkg" in text_of(site.page("/alice/prod/secretpkg", headers=cookie))
    version = text_of(site.page("/alice/private/secretpkg/1.0", headers=cookie))
    assert "the secret description" in version


def test_the_bases_chain_leaves_out_what_the_visitor_may_not_read(site: Site) -> None:
    html = text_of(site.page("/alice/prod"))
    assert '<a href="http://testserver/alice/dev">alice/dev</a>' in html
    assert "private" not in html


# -- actions -------------------------------------------------------------------------


def test_the_owner_sees_the_forms(site: Site) -> None:
    alice = site.session("alice")
    cookie = {"Cookie": alice["Cookie"]}
    index = text_of(site.page("/alice/dev", headers=cookie))
    assert 'id="index-edit"' in index and 'name="title"' in index
    assert 'name="description"' in index
    assert f'name="csrf_token" value="{alice["csrf"]}"' in index
    version = text_of(site.page("/alice/dev/pkg/1.0", headers=cookie))
    assert 'id="yank-form"' in version and ">Yank</button>" in version
    assert 'id="delete-form"' in version  # alice/dev is volatile
    prod = text_of(site.page("/alice/prod/pkg/0.9", headers=cookie))
    assert 'id="yank-form"' in prod and 'id="delete-form"' not in prod  # not volatile
    inherited = text_of(site.page("/alice/prod/pkg/1.0", headers=cookie))
    assert 'id="yank-form"' not in inherited  # it is alice/dev's to yank
    bob = {"Cookie": site.session("bob")["Cookie"]}
    assert 'id="yank-form"' not in text_of(site.page("/alice/dev/pkg/1.0", headers=bob))
    assert 'id="index-edit"' not in text_of(site.page("/alice/dev", headers=bob))


def test_yank_and_unyank(site: Site) -> None:
    alice = site.session("alice")
    path = "/alice/dev/pkg/1.0"
    reply = site.post_form(path + "/+web/yank",
                           {"csrf_token": alice["csrf"], "yanked": "1", "reason": "broken <b>"},
                           alice)
    assert reply.code == 303 and reply.header("Location") == "http://testserver" + path
    html = text_of(site.page(path, headers={"Cookie": alice["Cookie"]}))
    assert ">Un-yank</button>" in html and "broken &lt;b&gt;" in html
    assert "yanked" in text_of(site.page("/alice/dev/pkg"))
    simple = site.server.client.get("/alice/dev/+simple/pkg/", headers={"Accept": ["text/html"]})
    assert b'data-yanked="broken &lt;b&gt;"' in simple.body
    reply = site.post_form(path + "/+web/yank", {"csrf_token": alice["csrf"], "yanked": "0"},
                           alice)
    assert reply.code == 303
    assert ">Yank</button>" in text_of(site.page(path, headers={"Cookie": alice["Cookie"]}))


def test_actions_need_the_csrf_token(site: Site) -> None:
    alice = site.session("alice")
    for path, fields in (("/alice/dev/pkg/1.0/+web/yank", {"yanked": "1"}),
                         ("/alice/dev/pkg/1.0/+web/delete", {}),
                         ("/alice/dev/+web/edit", {"title": "x"})):
        assert site.post_form(path, fields, alice).code == 403, path
        assert site.post_form(path, {**fields, "csrf_token": "forged"}, alice).code == 403
    assert "<h1>pkg 1.0</h1>" in text_of(site.page("/alice/dev/pkg/1.0"))
    assert "yanked-mark" not in text_of(site.page("/alice/dev/pkg/1.0"))


def test_actions_need_the_permission(site: Site) -> None:
    bob = site.session("bob")
    for path in ("/alice/dev/pkg/1.0/+web/yank", "/alice/dev/pkg/1.0/+web/delete",
                 "/alice/dev/+web/edit"):
        assert site.post_form(path, {"csrf_token": bob["csrf"], "title": "x"}, bob).code == 403
        assert site.post_form(path, {"title": "x"}, None).code in (401, 403), path
    assert "<h1>pkg 1.0</h1>" in text_of(site.page("/alice/dev/pkg/1.0"))


def test_delete_a_version_of_a_volatile_index(site: Site) -> None:
    alice = site.session("alice")
    reply = site.post_form("/alice/dev/pkg/2.0b1/+web/delete", {"csrf_token": alice["csrf"]},
                           alice)
    assert reply.code == 303 and reply.header("Location") == "http://testserver/alice/dev/pkg"
    assert site.page("/alice/dev/pkg/2.0b1").code == 404
    # not on a non-volatile index
    reply = site.post_form("/alice/prod/pkg/0.9/+web/delete", {"csrf_token": alice["csrf"]},
                           alice)
    assert reply.code == 403
    assert site.page("/alice/prod/pkg/0.9").code == 200


def test_edit_an_index(site: Site) -> None:
    alice = site.session("alice")
    reply = site.post_form("/alice/dev/+web/edit", {"csrf_token": alice["csrf"],
                                                    "title": "New <title>",
                                                    "description": "about"}, alice)
    assert reply.code == 303 and reply.header("Location") == "http://testserver/alice/dev"
    html = text_of(site.page("/alice/dev"))
    assert "New &lt;title&gt;" in html and "about" in html
    config = site.server.client.get("/alice/dev").json["result"]
    assert config["title"] == "New <title>" and config["description"] == "about"
    too_long = site.post_form("/alice/dev/+web/edit", {"csrf_token": alice["csrf"],
                                                       "title": "x" * 201}, alice)
    assert too_long.code == 400


def test_hostile_posts_to_the_actions_are_never_5xx(site: Site) -> None:
    alice = site.session("alice")
    bodies = [(b"", "application/x-www-form-urlencoded"), (b'{"yanked": true}', "application/json"),
              (b"%ff%fe=%00&csrf_token=" + alice["csrf"].encode(), "application/x-www-form-urlencoded"),
              (b"a=" + b"x" * 70_000, "application/x-www-form-urlencoded"),
              (b"&".join(b"f%d=1" % i for i in range(100)), "application/x-www-form-urlencoded"),
              (b"csrf_token=" + alice["csrf"].encode() + b"&reason=" + b"r" * 600,
               "application/x-www-form-urlencoded")]
    paths = ["/alice/dev/pkg/1.0/+web/yank", "/alice/dev/pkg/9.9/+web/yank",
             "/alice/dev/pkg/9.9/+web/delete", "/alice/nothing/+web/edit",
             "/root/pypi/pkg/1.0/+web/yank", "/alice/dev/pkg/1.0/+web/other"]
    for path in paths:
        for body, ctype in bodies:
            for cookie in ({"Cookie": alice["Cookie"]}, {}):
                reply = site.server.client.request(
                    "POST", path, raw=body, headers={"Content-Type": [ctype], **cookie})
                allowed = (303,) if path.endswith("1.0/+web/yank") and cookie else ()
                assert 400 <= reply.code < 500 or reply.code in allowed, \
                    (path, body[:40], reply.code, reply.body[:200])


def test_a_browser_is_asked_to_log_in_with_a_page_not_a_password_dialog(site: Site) -> None:
    for path in ("/alice/private", "/alice/private/secretpkg", "/alice/private/secretpkg/1.0"):
        reply = site.page(path)
        assert reply.code == 401 and reply.header("WWW-Authenticate") is None, path
        html = reply.body.decode()
        assert html.startswith("<!doctype html>") and '<nav aria-label="main">' in html
        assert f'href="http://testserver/+login?next={path}"' in html
        assert "default-src 'none'" in reply.header("Content-Security-Policy")
        assert "secretpkg" not in html.replace(path, "")
    # installers, JSON clients and documentation keep the Basic challenge
    for headers in ({"User-Agent": ["pip/24.0"], "Accept": ["text/html"]},
                    {"Accept": ["application/json"]}):
        reply = site.server.client.get("/alice/private", headers=headers)
        assert reply.code == 401 and reply.header("WWW-Authenticate") == 'Basic realm="devpi"'
    reply = site.page("/alice/private/+simple/secretpkg/")
    assert reply.code == 401 and reply.header("WWW-Authenticate") == 'Basic realm="devpi"'


def test_error_pages_are_in_the_layout(site: Site) -> None:
    reply = site.page("/alice/dev/nothing/<script>")
    assert reply.code == 404
    html = reply.body.decode()
    assert "<h1>404 Not Found</h1>" in html and '<nav aria-label="main">' in html
    assert "<script>" not in html and "default-src 'none'" in reply.header(
        "Content-Security-Policy")
    installer = site.server.client.get("/alice/dev/+simple/nothing/",
                                       headers={"User-Agent": ["pip/24.0"],
                                                "Accept": ["text/html"]})
    assert installer.code == 404 and b"<nav" not in installer.body  # as before


PAGE_TEMPLATES = ["/{}", "/alice/{}", "/alice/dev/{}", "/alice/dev/pkg/{}", "/alice/dev/{}/latest",
                  "/alice/dev/pkg/{}/+d/{}", "/alice/dev/pkg/1.0/+d/{}", "/+static/{}",
                  "/alice/dev?page={}", "/+search?query={}", "/+login?next={}",
                  "/alice/dev/pkg/{}/+web/yank", "/alice/dev/{}/+web/edit", "/root/pypi/{}"]


def test_no_generated_browser_request_gets_a_5xx_or_a_traceback(site: Site) -> None:
    from hypothesis import HealthCheck, given, settings, strategies as st
    from twisted.logger import globalLogPublisher

    from tests.web.test_fuzz import _NoFailures, _segment, texts

    problems: list[str] = []
    observer = _NoFailures(problems)
    alice = site.session("alice")
    sessions = [{"Cookie": alice["Cookie"]}, {}]

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(PAGE_TEMPLATES), st.lists(texts.map(_segment), min_size=2,
                                                     max_size=2),
           st.sampled_from(["GET", "HEAD", "POST"]), st.sampled_from([0, 1]))
    def run(template: str, parts: list[str], method: str, who: int) -> None:
        problems.clear()
        headers = {**sessions[who], "Content-Type": ["application/x-www-form-urlencoded"]}
        reply = site.server.client.request(
            method, template.format(*parts), raw=f"csrf_token={alice['csrf']}".encode()
            if method == "POST" else None,
            headers={**BROWSER, **headers})
        assert reply.code < 500, (template, parts, method, reply.code, reply.body[:300])
        assert not problems, problems

    globalLogPublisher.addObserver(observer)
    try:
        run()
    finally:
        globalLogPublisher.removeObserver(observer)


def test_log_out_from_a_page(site: Site) -> None:
    alice = site.session("alice")
    html = text_of(site.page("/alice/dev", headers={"Cookie": alice["Cookie"]}))
    assert '<form id="logout-form" method="post" action="http://testserver/+logout">' in html
    assert 'name="next" value="/alice/dev"' in html
    reply = site.post_form("/+logout", {"csrf_token": alice["csrf"], "next": "/alice/dev"}, alice)
    assert reply.code == 303 and reply.header("Location") == "http://testserver/alice/dev"
    assert any("Max-Age=0" in c for c in reply.headers.getRawHeaders("Set-Cookie"))
    assert site.post_form("/+logout", {"next": "/"}, alice).code == 403  # no CSRF token
