"""Markup in what users upload never runs in a visitor's browser: ``<script>``,
``onerror=`` and ``javascript:`` links in descriptions (Markdown and reStructuredText),
metadata, index and user titles, versions, search queries, paths and the ``next`` of the
login page stay text or are sanitised away; uploaded documentation runs its scripts only
in a sandbox (an opaque origin, no dialogs, no access to the server's pages or cookies).

Every payload would set ``window.__xss`` (or a title with "XSS") and open a dialog; the
tests check that neither happened, that no live script, event handler or ``javascript:``
URL reached the DOM, and that no Content Security Policy violation was reported (which
would mean markup got through and only the policy stopped it)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from tests.browser import data
from tests.browser.watch import Watch, assert_strict_policy, sandbox_of
from tests.support import Daemon

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

PASSWORD = "mallory-pw"
SCRIPT = "<script>window.__xss='{0}';alert('{0}')</script>"
IMG = "<img src=x onerror=\"window.__xss='{0}';alert('{0}')\">"
MARKDOWN = f"""# Hostile {SCRIPT.format('md-heading')}

{IMG.format('md-img')}

[click me](javascript:window.__xss='md-link';alert(1))

<a id="raw-js" href="javascript:alert('md-raw-link')">raw link</a>
<a href="&#106;avascript:alert('md-entity-link')">entity link</a>
<iframe src="javascript:alert('md-iframe')"></iframe>
<svg onload="alert('md-svg')"></svg>
<form action="javascript:alert('md-form')"><button>go</button></form>
<object data="data:text/html,<script>alert('md-object')</script>"></object>
<style>body {{ display: none }}</style>
<div style="background:url(javascript:alert('md-style'))">styled</div>

{SCRIPT.format('md-script')}
"""
RST = f"""Hostile
=======

.. raw:: html

   {SCRIPT.format('rst-raw')}

`click here <javascript:alert('rst-link')>`_

.. image:: javascript:alert('rst-image')

{IMG.format('rst-text')}
"""
# what the documentation tries: it may run (allow-scripts) but not reach the server's pages
DOC_SCRIPT = """<script>
const h = document.getElementById('h');
h.dataset.ran = 'yes';
try { parent.document.title = 'XSS'; h.dataset.parent = 'reached'; }
catch (e) { h.dataset.parent = 'blocked'; }
try { top.__xss = 'doc-top'; h.dataset.top = String(top.__xss); }
catch (e) { h.dataset.top = 'blocked'; }
try { h.dataset.cookie = 'read:' + document.cookie; } catch (e) { h.dataset.cookie = 'blocked'; }
try { localStorage.setItem('x', '1'); h.dataset.storage = 'reached'; }
catch (e) { h.dataset.storage = 'blocked'; }
alert('doc-alert');
</script>"""
DOCS = {
    "index.html": "<!doctype html><html><head><title>Hostile docs</title></head><body>"
                  f"<h1 id='h'>Hostile docs</h1>{DOC_SCRIPT}{IMG.format('doc-img')}"
                  "<a id='js' href=\"javascript:alert('doc-link')\">js link</a></body></html>",
}
ODD_VERSION = "1.0'onmouseover='alert(1)'x=' "
JS_VERSION = "javascript:alert('version')"
BASE = "/mallory/xss/xsspkg"


@pytest.fixture(scope="module")
def hostile(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """mallory (title with a script) owns mallory/xss (title and description with markup),
    holding xsspkg 1.0 (hostile Markdown, metadata, docs, test report), 2.0 (hostile
    reStructuredText), 3.0 (hostile plain text) and two registrations with hostile
    version strings."""
    url, work = daemon.url, tmp_path_factory.mktemp("hostile-dists")
    mallory = data.user(url, "mallory", PASSWORD, title=SCRIPT.format("user-title"),
                        description=IMG.format("user-description"))
    data.index(url, mallory, "mallory/xss", title=SCRIPT.format("index-title"),
               description=IMG.format("index-description"))
    data.release(url, "mallory/xss", mallory, work, "xsspkg", "1.0", MARKDOWN, "text/markdown",
                 summary=SCRIPT.format("summary"), author=IMG.format("author"),
                 home_page="javascript:alert('home-page')", license=SCRIPT.format("license"),
                 keywords='"><script>alert(1)</script>', project_urls="Docs, javascript:alert(2)",
                 requires_python='<script>alert("rp")</script>')
    data.docs(url, "mallory/xss", mallory, "xsspkg", "1.0", DOCS)
    data.toxresult(url, "mallory/xss", mallory, "xsspkg", "1.0", {
        "host": SCRIPT.format("tox-host"), "platform": IMG.format("tox-platform"),
        "testenvs": {IMG.format("tox-env"): {"setup": [], "test": [{
            "command": [SCRIPT.format("tox-command")], "retcode": 1,
            "output": SCRIPT.format("tox-output")}]}}})
    data.release(url, "mallory/xss", mallory, work, "xsspkg", "2.0", RST, "text/x-rst")
    data.release(url, "mallory/xss", mallory, work, "xsspkg", "3.0",
                 SCRIPT.format("plain") + IMG.format("plain"), "text/plain")
    for version in (ODD_VERSION, JS_VERSION):
        data.post(url, "mallory/xss", mallory, [(":action", "submit"), ("name", "xsspkg"),
                                                ("version", version), ("summary", "odd")])
    return url


PAGES = {
    "root": "/",
    "user": "/mallory",
    "index": "/mallory/xss",
    "project": BASE,
    "markdown": BASE + "/1.0",
    "rst": BASE + "/2.0",
    "plain": BASE + "/3.0",
    "odd-version": f"{BASE}/{quote(ODD_VERSION, safe='')}",
    "js-version": f"{BASE}/{quote(JS_VERSION, safe='')}",
    "search-hit": "/+search?query=hostile",
    "search-query": "/+search?query=" + quote(SCRIPT.format("query"), safe=""),
    "not-found": "/mallory/xss/" + quote(IMG.format("path"), safe=""),
    "no-such-version": f"{BASE}/" + quote(SCRIPT.format("version-path"), safe=""),
    "doc-path": f"{BASE}/1.0/+d/" + quote(IMG.format("doc-path") + ".html", safe=""),
    "login-next": "/+login?next=" + quote("javascript:alert('next')", safe=""),
}


@pytest.mark.parametrize("name", PAGES)
def test_hostile_markup_never_runs(watch: Watch, hostile: str, name: str) -> None:
    response = watch.goto(PAGES[name])
    assert response.status < 500, response.status
    for link in watch.page.locator("main a").all():  # a click would run a javascript: link
        if link.is_visible() and not (link.get_attribute("href") or "").startswith(("/", "http")):
            link.click(no_wait_after=True, timeout=2000)
    watch.page.wait_for_timeout(100)
    assert not watch.injected()
    watch.shot(f"hostile-{name}")
    if "text/html" in (response.header_value("content-type") or ""):
        assert_strict_policy(response)  # error pages too: they may repeat what was asked


def test_hostile_titles_show_as_text(watch: Watch, hostile: str) -> None:
    watch.goto("/")
    expect(watch.page.locator("main")).to_contain_text(SCRIPT.format("index-title"))
    watch.goto(BASE + "/1.0")
    expect(watch.page.locator("#metadata")).to_contain_text(SCRIPT.format("summary"))
    expect(watch.page.locator("#description")).to_contain_text("click me")
    expect(watch.page.locator("#toxresults")).to_contain_text(SCRIPT.format("tox-host"))
    expect(watch.page.locator("#toxresults")).to_contain_text(IMG.format("tox-env"))
    assert not watch.injected()


def test_a_plain_text_description_shows_its_markup_as_text(watch: Watch, hostile: str) -> None:
    watch.goto(BASE + "/3.0")
    expect(watch.page.locator("#description")).to_contain_text(SCRIPT.format("plain"))
    assert not watch.injected()


def test_the_docs_run_only_in_their_sandbox(watch: Watch, hostile: str) -> None:
    page = watch.page
    watch.goto(BASE + "/1.0/+d/index.html")
    title = page.title()
    frame_element = page.locator("iframe#docs-frame")
    expect(frame_element).to_have_attribute("sandbox", "allow-scripts")
    heading = page.frame_locator("#docs-frame").locator("#h")
    expect(heading).to_have_attribute("data-ran", "yes")  # their scripts run (search, menus)
    expect(heading).to_have_attribute("data-parent", "blocked")
    expect(heading).to_have_attribute("data-top", "blocked")
    expect(heading).to_have_attribute("data-cookie", "blocked")
    expect(heading).to_have_attribute("data-storage", "blocked")
    page.frame_locator("#docs-frame").locator("#js").click()
    page.wait_for_timeout(200)
    assert page.title() == title
    assert not watch.injected()
    watch.shot("hostile-docs")


def test_raw_doc_files_are_served_in_a_sandbox(watch: Watch, hostile: str) -> None:
    """Opened directly (not framed), a doc page still gets an opaque origin: the sandbox
    of its Content-Security-Policy header, without allow-same-origin or modals."""
    response = watch.goto(BASE + "/1.0/+doc/index.html")
    flags = sandbox_of(response.header_value("content-security-policy"))
    assert flags is not None, response.headers
    assert not flags & {"allow-same-origin", "allow-modals", "allow-top-navigation",
                        "allow-popups-to-escape-sandbox"}, flags
    heading = watch.page.locator("#h")
    expect(heading).to_have_attribute("data-cookie", "blocked")
    expect(heading).to_have_attribute("data-storage", "blocked")


def test_a_login_never_leads_to_a_javascript_url(watch: Watch, hostile: str) -> None:
    watch.goto(PAGES["login-next"])
    watch.page.locator('input[name="username"]').fill("mallory")
    watch.page.locator('input[name="password"]').fill(PASSWORD)
    watch.page.get_by_role("button", name="Log in").click()
    expect(watch.page).to_have_url(re.compile("^" + re.escape(hostile + "/")))
    assert not watch.injected()
