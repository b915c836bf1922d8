"""The forms that change things, in a real browser: editing an index's title and
description, deleting a version of a volatile index, and that neither a form on another
site nor a script in uploaded documentation can use a logged-in person's session to
change anything (the CSRF token, SameSite cookies, the docs' sandbox). Also the test
results of a release file, with their output behind a disclosure."""

from __future__ import annotations

import pytest

from tests.browser import data
from tests.browser.watch import Watch
from tests.support import Daemon, call

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

PASSWORD = "alice-forms-pw"
VICTIM = "/alice/dev/victim/1.0"
# Documentation that, once a logged-in person opens it, tries to yank its own release
# and to read the page holding the CSRF token.
ATTACK = """<!doctype html><html><head><title>Attack</title></head><body><h1 id="h">docs</h1>
<form id="f" method="post" action="../+web/yank"><input name="yanked" value="1"></form>
<script>
const h = document.getElementById('h');
const release = location.href.split('/+doc/')[0];
fetch(release + '/+web/yank', {method: 'POST', credentials: 'include',
      headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'yanked=1'})
  .then(r => { h.dataset.post = 'answered'; }, e => { h.dataset.post = 'refused'; });
fetch(release, {credentials: 'include'}).then(r => r.text())
  .then(t => { h.dataset.read = t.includes('csrf_token') ? 'read' : 'empty'; },
        e => { h.dataset.read = 'blocked'; });
document.getElementById('f').submit();  // the sandbox has no allow-forms
</script></body></html>"""
REPORT = {"host": "ci-host", "platform": "linux", "testenvs": {
    "py311": {"python": {"version": "3.11.7"}, "setup": [],
              "test": [{"command": ["pytest", "-q"], "retcode": 0, "output": "3 passed"}]},
    "py312": {"python": {"version": "3.12.1"}, "setup": [],
              "test": [{"command": ["pytest", "-q"], "retcode": 1,
                        "output": "AssertionError: boom-output"}]}}}


@pytest.fixture(scope="module")
def site(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> str:
    """alice/dev (volatile) holds victim 1.0 (attacking docs, a test report) and
    deleteme 1.0."""
    url, work = daemon.url, tmp_path_factory.mktemp("forms-dists")
    alice = data.user(url, "alice", PASSWORD)
    data.index(url, alice, "alice/dev", title="Before", volatile=True)
    data.release(url, "alice/dev", alice, work, "victim", "1.0", "The victim.")
    data.docs(url, "alice/dev", alice, "victim", "1.0", {"index.html": ATTACK})
    data.toxresult(url, "alice/dev", alice, "victim", "1.0", REPORT)
    data.release(url, "alice/dev", alice, work, "deleteme", "1.0", "Soon gone.")
    return url


def _yanked(url: str) -> bool:
    status, reply, _ = call(url + VICTIM)
    assert status == 200, reply
    return bool(reply["result"].get("yanked"))


def test_editing_an_index_through_its_form(watch: Watch, site: str) -> None:
    page = watch.page
    watch.goto("/alice/dev")
    expect(page.locator("#index-edit")).to_have_count(0)  # not for anonymous visitors
    watch.log_in("alice", PASSWORD)
    page.get_by_text("Edit title and description").click()
    page.locator('#index-edit [name="title"]').fill("Alice's <b>renamed</b> index")
    page.locator('#index-edit [name="description"]').fill("Where alice develops.")
    watch.shot("index-edit")
    page.locator("#index-edit").get_by_role("button").click()
    expect(page).to_have_url(site + "/alice/dev")
    expect(page.locator("main")).to_contain_text("Alice's <b>renamed</b> index")
    expect(page.locator("main b")).to_have_count(0)
    watch.goto("/")
    expect(page.locator("main")).to_contain_text("Where alice develops.")
    reply = call(site + "/alice/dev")[1]
    assert reply["result"]["title"] == "Alice's <b>renamed</b> index", reply


def test_deleting_a_version_through_its_form(watch: Watch, site: str) -> None:
    page = watch.page
    watch.goto("/alice/dev/deleteme/1.0")
    expect(page.locator("#delete-form")).to_have_count(0)
    watch.log_in("alice", PASSWORD)
    page.locator("#delete-form").get_by_role("button").click()
    expect(page.locator("main h1")).not_to_have_text("deleteme 1.0")
    assert call(site + "/alice/dev/deleteme/1.0")[0] == 404


def test_test_results_show_per_environment(watch: Watch, site: str) -> None:
    page = watch.page
    watch.goto(VICTIM)
    results = page.locator("#toxresults")
    expect(results).to_contain_text("ci-host")
    expect(results.locator("tr", has_text="py311")).to_contain_text("passed")
    expect(results.locator("tr", has_text="py312")).to_contain_text("failed")
    output = results.locator("tr", has_text="py312").get_by_text("AssertionError: boom-output")
    expect(output).to_be_hidden()  # behind a link, not spread over the page
    results.locator("tr", has_text="py312").get_by_text("output", exact=True).click()
    expect(output).to_be_visible()
    watch.shot("version-toxresults")


def test_a_form_on_another_site_changes_nothing(watch: Watch, site: str) -> None:
    page = watch.page
    watch.goto(VICTIM)
    watch.log_in("alice", PASSWORD)
    forged = (f'<!doctype html><form method="post" action="{site}{VICTIM}/+web/yank">'
              '<input name="yanked" value="1"><input name="csrf_token" value="guess">'
              '<button>win a prize</button></form>')
    page.route("http://evil.test/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body=forged))
    page.goto("http://evil.test/prize")
    with page.expect_navigation(url=f"{site}{VICTIM}/+web/yank"):  # answered, whatever
        page.get_by_role("button", name="win a prize").click()
    assert not _yanked(site)
    watch.foreign.remove("http://evil.test/prize")  # the one other host this test asks


def test_documentation_cannot_use_the_session(watch: Watch, site: str) -> None:
    """A logged-in owner opens the docs; their script's requests carry no session, the
    page with the token stays unreadable, their form is not submitted."""
    page = watch.page
    watch.goto(VICTIM)
    watch.log_in("alice", PASSWORD)
    watch.goto(VICTIM + "/+d/index.html")
    heading = page.frame_locator("#docs-frame").locator("#h")
    expect(heading).to_have_attribute("data-post", "refused")
    expect(heading).to_have_attribute("data-read", "blocked")
    page.wait_for_timeout(300)
    assert not _yanked(site)
    expect(page.locator("#logout-form")).to_be_visible()  # still logged in, still here
