"""A watched browser page: what a test must never see happen in it (a dialog, a script
error, a Content Security Policy violation, a request to another host), and the checks
that no markup from users' data became live markup in a page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Dialog, Locator, Page, Request, Response

# In the page: what the hostile data would have done had it run, and what it would have
# left in the DOM had the page not escaped or sanitised it.
INJECTED = """() => {
    const live = [];
    for (const el of document.querySelectorAll('*')) {
        for (const attr of el.attributes) {
            const value = attr.value.replace(/[\\s\\x00-\\x1f]/g, '').toLowerCase();
            if (attr.name.startsWith('on')) live.push(el.tagName + ' ' + attr.name);
            if (['href', 'src', 'action', 'formaction', 'xlink:href', 'data'].includes(attr.name)
                    && (value.startsWith('javascript:') || value.startsWith('data:text/html')))
                live.push(el.tagName + ' ' + attr.name + '=' + attr.value);
        }
        if (el.tagName === 'SCRIPT' && !el.src) live.push('inline script');
    }
    return {xss: window.__xss === undefined ? null : String(window.__xss),
            title: document.title, live: live};
}"""

WRITTEN: list[Path] = []  # the screenshots of this run


class Watch:
    """One page of a fresh browser context, with everything it reports recorded."""

    def __init__(self, page: Page, base: str, screenshots: Path) -> None:
        self.page = page
        self.base = base
        self.screenshots = screenshots
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.foreign: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on("request", self._request)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    def _request(self, request: Request) -> None:
        if not (request.url.startswith(self.base + "/") or request.url == self.base
                or request.url.startswith(("data:", "about:", "blob:"))):
            self.foreign.append(request.url)

    def goto(self, path: str) -> Response:
        """Open ``path`` (below the server root); the response (any status)."""
        response = self.page.goto(self.base + path)
        assert response is not None, path
        return response

    def log_in(self, user: str, password: str) -> None:
        """Log in through the login page, from the "Log in" link of the page shown now."""
        from playwright.sync_api import expect

        nav = self.page.locator('header nav[aria-label="main"]')
        nav.get_by_role("link", name="Log in").click()
        self.page.locator('input[name="username"]').fill(user)
        self.page.locator('input[name="password"]').fill(password)
        self.page.get_by_role("button", name="Log in").click()
        expect(self.page.locator("#logout-form")).to_be_visible()

    def download(self, link: Locator, directory: Path) -> tuple[str, bytes]:
        """Click ``link``, which downloads a file: its suggested name and its bytes."""
        with self.page.expect_download() as started:
            link.click()
        target = directory / "download"
        started.value.save_as(target)
        return started.value.suggested_filename, target.read_bytes()

    def shot(self, name: str) -> Path:
        """A full-page screenshot ``name``.png of the page as it is now."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        target = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        WRITTEN.append(target)
        return target

    def injected(self) -> list[str]:
        """What of the hostile data became live in the page (empty: nothing). Frames are
        uploaded documentation, whose own scripts may run (in their sandbox)."""
        state: dict[str, Any] = self.page.evaluate(INJECTED)
        found = [f"live markup: {what}" for what in state["live"]]
        if state["xss"] is not None:
            found.append(f"window.__xss = {state['xss']}")
        if "XSS" in state["title"]:
            found.append(f"title {state['title']!r}")
        return found

    def assert_quiet(self) -> None:
        assert not self.dialogs, f"a dialog opened: {self.dialogs}"
        assert not self.errors, f"script errors: {self.errors}"
        assert not self.violations, f"policy violations (injected markup?): {self.violations}"
        assert not self.foreign, f"requests to other hosts: {self.foreign}"


def assert_strict_policy(response: Response) -> None:
    """The page came with a Content Security Policy that runs no inline or foreign script."""
    policy = response.header_value("content-security-policy")
    assert policy, f"{response.url}: no Content-Security-Policy"
    directives = {words[0].lower(): words[1:] for words in
                  (part.split() for part in policy.split(";")) if words}
    scripts = directives.get("script-src", directives.get("default-src"))
    assert scripts is not None, f"{response.url}: {policy!r} does not restrict scripts"
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(scripts), \
        f"{response.url}: {policy!r}"


def sandbox_of(policy: str | None) -> set[str] | None:
    """The sandbox flags of a Content-Security-Policy header (None: no sandbox directive)."""
    for part in (policy or "").split(";"):
        words = part.split()
        if words and words[0].lower() == "sandbox":
            return set(words[1:])
    return None
