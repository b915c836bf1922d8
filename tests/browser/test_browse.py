"""A person browsing a real daemon in headless chromium: from ``/`` down to a file and
its download, rendered Markdown and reStructuredText descriptions, the documentation
frame, search for a word of a description and of the docs, logging in through the login
page, yanking a release through its form, a private index that shows only after login.
Every page type is screenshot; every page carries the common layout and a strict
script policy (issue 22, "Tests in a real browser")."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.browser import data
from tests.browser.watch import Watch, assert_strict_policy, sandbox_of
from tests.support import Daemon

if TYPE_CHECKING:
    from playwright.sync_api import Locator

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

PASSWORD = "alice-browser-pw"
# "marmalade" is only in mdpkg's description, "ocelot" only in its documentation,
# "quasar" only in the description of secretpkg on the private index.
MARKDOWN = """## Marmalade heading

A *marmalade* sandwich with `spread()` inside.

```python
x = 1
```
"""
RST = """Pangolin guide
==============

Some *emphasis* and ``literal`` text.

Usage
-----

* item one
"""
DOCS = {
    "index.html": "<!doctype html><html><head><title>mdpkg docs</title></head><body>"
                  "<h1>mdpkg documentation</h1><p><a href='guide.html'>Guide</a></p></body></html>",
    "guide.html": "<!doctype html><html><head><title>Guide</title></head><body>"
                  "<h1>The guide</h1><p>Feeding the ocelot daily.</p></body></html>",
}

# the page keeps its one h1: descriptions' headings may be moved down some levels
HEADINGS = ":is(h1, h2, h3, h4, h5, h6)"
MANY = 101  # projects: more than one page of an index


@attrs.frozen
class Site:
    url: str
    wheel: bytes  # mdpkg 1.0's wheel


@pytest.fixture(scope="module")
def site(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """alice/dev (based on alice/base, holding basepkg 3.0) holds mdpkg 1.0 (Markdown,
    with docs), rstpkg 2.0 (reStructuredText) and yankme 0.1; alice/private (only alice
    may read it) holds secretpkg 1.0; alice/many holds MANY projects."""
    url, work = daemon.url, tmp_path_factory.mktemp("browser-dists")
    alice = data.user(url, "alice", PASSWORD, title="Alice")
    data.index(url, alice, "alice/base")
    data.post(url, "alice/base", alice, [(":action", "submit"), ("name", "basepkg"),
                                         ("version", "3.0")])
    data.index(url, alice, "alice/dev", title="Alice's development index", bases="alice/base")
    wheel = data.release(url, "alice/dev", alice, work, "mdpkg", "1.0", MARKDOWN, "text/markdown",
                         summary="A package described in Markdown")
    data.docs(url, "alice/dev", alice, "mdpkg", "1.0", DOCS)
    data.release(url, "alice/dev", alice, work, "rstpkg", "2.0", RST, "text/x-rst",
                 summary="A package described in reStructuredText")
    data.release(url, "alice/dev", alice, work, "yankme", "0.1", "Soon yanked.")
    data.index(url, alice, "alice/private", acl_read="alice")
    data.release(url, "alice/private", alice, work, "secretpkg", "1.0", "Private quasar notes.")
    data.index(url, alice, "alice/many")
    for number in range(MANY):
        data.post(url, "alice/many", alice, [(":action", "submit"), ("name", f"many{number:03}"),
                                             ("version", "1.0")])
    return Site(url, wheel)


def test_from_the_root_down_to_a_downloaded_file(watch: Watch, site: Site, tmp_path: Path) -> None:
    page = watch.page
    assert_strict_policy(watch.goto("/"))
    expect(page.locator("main h1")).to_have_text("Indexes")
    watch.shot("root")
    page.locator("#indexes").get_by_role("link", name="alice/dev", exact=True).click()
    expect(page).to_have_url(site.url + "/alice/dev")
    expect(page.locator("main h1")).to_have_text("alice/dev")
    expect(page.locator("#index-config")).to_be_visible()
    watch.shot("index")
    page.locator("#projects").get_by_role("link", name="mdpkg", exact=True).click()
    expect(page).to_have_url(site.url + "/alice/dev/mdpkg")
    expect(page.locator("main h1")).to_have_text("mdpkg")
    watch.shot("project")
    page.locator("#versions").get_by_role("link", name="1.0", exact=True).click()
    expect(page).to_have_url(site.url + "/alice/dev/mdpkg/1.0")
    expect(page.locator("main h1")).to_have_text("mdpkg 1.0")
    watch.shot("version")
    digest = hashlib.sha256(site.wheel).hexdigest()
    row = page.locator("#files tr", has_text="mdpkg-1.0-py3-none-any.whl")
    expect(row).to_contain_text(digest)
    name, content = watch.download(row.get_by_role("link", name="mdpkg-1.0-py3-none-any.whl"),
                                   tmp_path)
    assert name == "mdpkg-1.0-py3-none-any.whl" and content == site.wheel
    assert not watch.injected()


def test_a_markdown_description_is_rendered(watch: Watch, site: Site) -> None:
    assert_strict_policy(watch.goto("/alice/dev/mdpkg/1.0"))
    description = watch.page.locator("#description")
    expect(description.locator(HEADINGS, has_text="Marmalade heading")).to_have_count(1)
    expect(description.locator("em")).to_have_text("marmalade")
    expect(description.locator("code", has_text="spread()")).to_have_count(1)
    expect(description.locator("pre")).to_contain_text("x = 1")
    expect(description).not_to_contain_text("## ")
    expect(description).not_to_contain_text("```")
    expect(watch.page.locator("#pip-snippet")).to_contain_text("mdpkg")
    expect(watch.page.locator("#uv-snippet")).to_contain_text("mdpkg")


def test_a_restructuredtext_description_is_rendered(watch: Watch, site: Site) -> None:
    assert_strict_policy(watch.goto("/alice/dev/rstpkg/2.0"))
    description = watch.page.locator("#description")
    title = description.locator(HEADINGS, has_text="Pangolin guide")
    section = description.locator(HEADINGS, has_text="Usage")
    expect(title).to_have_count(1)
    expect(section).to_have_count(1)
    level = "e => Number(e.tagName.slice(1))"
    assert title.evaluate(level) < section.evaluate(level)  # a section under the title
    expect(description.locator("em")).to_have_text("emphasis")
    expect(description.locator("code, tt, .literal", has_text="literal")).to_have_count(1)
    expect(description.locator("li")).to_have_text("item one")
    expect(description).not_to_contain_text("====")
    expect(description).not_to_contain_text("``")
    watch.shot("version-rst")


def test_the_docs_open_in_a_sandboxed_frame(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/alice/dev/mdpkg/1.0")
    page.locator("#docs-link").click()
    expect(page).to_have_url(site.url + "/alice/dev/mdpkg/1.0/+d/index.html")
    frame_element = page.locator("iframe#docs-frame")
    expect(frame_element).to_have_attribute("sandbox", "allow-scripts")
    expect(frame_element).to_have_attribute("src", re.compile(r"/alice/dev/mdpkg/1\.0/\+doc/index\.html$"))
    frame = page.frame_locator("#docs-frame")
    expect(frame.locator("h1")).to_have_text("mdpkg documentation")
    expect(page.locator('header nav[aria-label="main"]')).to_be_visible()
    watch.shot("docs")
    frame.get_by_role("link", name="Guide").click()
    expect(frame.locator("h1")).to_have_text("The guide")
    raw = page.request.get(site.url + "/alice/dev/mdpkg/1.0/+doc/index.html")
    assert raw.ok
    flags = sandbox_of(raw.headers.get("content-security-policy"))
    assert flags is not None and "allow-same-origin" not in flags, raw.headers


def _search(watch: Watch, word: str) -> Locator:
    """Search ``word`` through the search form of the page shown now; the first result's
    link, once there is one (the search index may trail the upload a little)."""
    page = watch.page
    form = page.locator('header form[role="search"]')
    form.locator("#search-query").fill(word)
    form.locator("#search-query").press("Enter")
    expect(page).to_have_url(re.compile(r"/\+search\?query=" + word))
    expect(page.locator("main h1")).to_have_text("Search")
    deadline = time.monotonic() + 20
    while page.locator("#results li").count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.locator("#results li").first.locator("mark").first).to_have_text(
        re.compile(word, re.IGNORECASE))
    expect(page.locator("#result-count")).to_be_visible()
    return page.locator("#results li").first.get_by_role("link").first


def test_search_finds_a_word_of_a_description(watch: Watch, site: Site) -> None:
    watch.goto("/")
    link = _search(watch, "marmalade")
    watch.shot("search")
    assert watch.page.locator("#results li").count() == 1
    link.click()
    expect(watch.page).to_have_url(site.url + "/alice/dev/mdpkg/1.0")
    expect(watch.page.locator("main h1")).to_have_text("mdpkg 1.0")


def test_search_finds_a_word_of_the_docs(watch: Watch, site: Site) -> None:
    watch.goto("/")
    link = _search(watch, "ocelot")
    assert watch.page.locator("#results li").count() == 1
    link.click()
    expect(watch.page).to_have_url(site.url + "/alice/dev/mdpkg/1.0/+d/guide.html")
    expect(watch.page.frame_locator("#docs-frame").locator("h1")).to_have_text("The guide")


def test_search_shows_a_private_index_only_to_its_readers(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/")
    watch.log_in("alice", PASSWORD)
    expect(_search(watch, "quasar")).to_have_attribute(
        "href", re.compile(r"/alice/private/secretpkg/1\.0$"))
    page.locator("#logout-form").get_by_role("button").click()
    expect(page.locator("header").get_by_role("link", name="Log in")).to_be_visible()
    watch.goto("/+search?query=quasar")
    expect(page.locator("main h1")).to_have_text("Search")
    expect(page.locator("#results li")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("secretpkg")


def test_logging_in_through_the_login_page(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/alice/dev")
    page.locator('header nav[aria-label="main"]').get_by_role("link", name="Log in").click()
    page.locator('input[name="username"]').fill("alice")
    page.locator('input[name="password"]').fill("wrong")
    watch.shot("login")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.locator('input[name="username"]').fill("alice")
    page.locator('input[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(site.url + "/alice/dev")  # back where the person came from
    expect(page.locator("#logout-form")).to_be_visible()
    page.locator("#logout-form").get_by_role("button").click()
    expect(page.locator("header").get_by_role("link", name="Log in")).to_be_visible()


def test_a_private_index_shows_only_after_login(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/")
    expect(page.locator("#indexes").get_by_role("link", name="alice/dev", exact=True)).to_be_visible()
    expect(page.locator("#indexes").get_by_role("link", name="alice/private")).to_have_count(0)
    # a page saying so, with the "Log in" link: no Basic challenge (no password dialog)
    refused = watch.goto("/alice/private/secretpkg/1.0")
    assert refused.status in (401, 403, 404), refused.status
    assert "www-authenticate" not in refused.headers, refused.headers
    expect(page.locator("main")).not_to_contain_text("quasar")
    watch.shot("refused")
    watch.log_in("alice", PASSWORD)  # and back to the page asked for
    expect(page).to_have_url(site.url + "/alice/private/secretpkg/1.0")
    expect(page.locator("#description")).to_contain_text("quasar")
    watch.goto("/")
    page.locator("#indexes").get_by_role("link", name="alice/private", exact=True).click()
    expect(page.locator("#projects").get_by_role("link", name="secretpkg")).to_be_visible()


def test_yanking_a_release_through_its_form(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/alice/dev/yankme/0.1")
    expect(page.locator("#yank-form")).to_have_count(0)  # not for anonymous visitors
    watch.log_in("alice", PASSWORD)
    expect(page).to_have_url(site.url + "/alice/dev/yankme/0.1")
    button = page.locator("#yank-form button")
    expect(button).to_have_text("Yank")
    button.click()
    expect(page).to_have_url(site.url + "/alice/dev/yankme/0.1")
    expect(button).to_have_text("Un-yank")
    watch.shot("version-yanked")
    watch.goto("/alice/dev/yankme")
    expect(page.locator("#versions tr", has_text="0.1")).to_contain_text(re.compile("yanked", re.I))
    watch.goto("/alice/dev/yankme/0.1")
    button.click()
    expect(button).to_have_text("Yank")


def test_an_inherited_version_names_its_index(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/alice/dev")
    page.locator("#index-config").get_by_role("link", name="alice/base", exact=True).click()
    expect(page).to_have_url(site.url + "/alice/base")
    watch.goto("/alice/dev/basepkg")
    row = page.locator("#versions tr", has_text="3.0")
    expect(row.get_by_role("link", name="alice/base", exact=True)).to_be_visible()
    row.get_by_role("link", name="3.0", exact=True).click()
    expect(page.locator("main h1")).to_have_text("basepkg 3.0")


def test_a_long_index_is_paged(watch: Watch, site: Site) -> None:
    page = watch.page
    watch.goto("/alice/many")
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += page.locator("#projects tbody tr td:first-child a").all_inner_texts()
        if page.locator('a[rel="next"]').count() == 0:
            break
        page.locator('a[rel="next"]').click()
        expect(page.locator('a[rel="prev"]')).to_have_count(1)
    assert pages > 1 and sorted(seen) == [f"many{n:03}" for n in range(MANY)], (pages, seen)
    page.locator('a[rel="prev"]').click()
    expect(page.locator('a[rel="next"]')).to_have_count(1)


PAGES = ["/", "/alice", "/alice/dev", "/alice/dev/mdpkg", "/alice/dev/mdpkg/1.0",
         "/alice/dev/mdpkg/latest", "/alice/dev/mdpkg/stable", "/alice/dev/mdpkg/1.0/+d/index.html",
         "/+search?query=marmalade", "/+login", "/+status", "/+web/metrics"]
SHOTS = {"/alice": "user", "/+status": "status", "/+web/metrics": "metrics"}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_the_common_layout(watch: Watch, site: Site, path: str) -> None:
    """The markup contract of issue 22: doctype, language, title, the main navigation with
    home link, search form and login link, one h1 in main, a footer, the one stylesheet,
    no inline script or style, a strict script policy."""
    page = watch.page
    response = watch.goto(path)
    assert response.status == 200, path
    assert_strict_policy(response)
    assert response.text().lstrip()[:15].lower() == "<!doctype html>"
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.title()
    nav = page.locator('header nav[aria-label="main"]')
    expect(nav.get_by_role("link", name="devpi-twisted")).to_have_attribute("href", re.compile(r"/$"))
    search = nav.locator('form[role="search"]')
    expect(search).to_have_attribute("method", re.compile("get", re.I))
    expect(search).to_have_attribute("action", re.compile(r"/\+search$"))
    expect(search.locator('input#search-query[type="search"][name="query"]')).to_have_count(1)
    expect(page.locator('label[for="search-query"]')).to_have_count(1)
    expect(nav.get_by_role("link", name="Log in")).to_have_count(1)
    expect(page.locator("main h1")).to_have_count(1)
    expect(page.locator("footer")).to_have_count(1)
    sheets = page.eval_on_selector_all('link[rel="stylesheet"]', "els => els.map(e => e.href)")
    assert sheets == [site.url + "/+static/style.css"], sheets
    expect(page.locator("style, [style]")).to_have_count(0)
    assert not watch.injected()
    if path in SHOTS:
        watch.shot(SHOTS[path])
    if path.endswith(("/latest", "/stable")):
        expect(page.locator("main h1")).to_have_text("mdpkg 1.0")


PHONE = {"width": 390, "height": 844}  # a phone held upright, in CSS pixels
PHONE_PAGES = {"/": "phone-root", "/alice/dev": "phone-index", "/alice/dev/mdpkg": "phone-project",
               "/alice/dev/mdpkg/1.0": "phone-version", "/+search?query=marmalade": "phone-search"}


@pytest.mark.parametrize("path", sorted(PHONE_PAGES))
def test_pages_fit_a_phone(watch: Watch, site: Site, path: str) -> None:
    """On a phone's width nothing makes the page scroll sideways (long hashes and names
    wrap, wide tables scroll inside themselves) and the navigation stays usable."""
    page = watch.page
    page.set_viewport_size(PHONE)
    assert watch.goto(path).status == 200
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= PHONE["width"], (path, wide)
    nav = page.locator('header nav[aria-label="main"]')
    expect(nav.locator("input#search-query")).to_be_in_viewport()
    expect(nav.get_by_role("link", name="Log in")).to_be_in_viewport()
    watch.shot(PHONE_PAGES[path])
