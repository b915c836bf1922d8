"""Module-wide fixtures of the browser tests: one headless chromium and one daemon per
module; a fresh browser context per test, watched for dialogs, script errors, Content
Security Policy violations and requests to other hosts.

Chromium is Debian's (``/usr/bin/chromium``, or ``DEVPI_TWISTED_CHROMIUM``), driven by
Playwright through ``executable_path``: Playwright's own browser downloads are never
used. Without chromium or Playwright the tests skip, which a full run of
scripts/run-tests turns into a failure (DEVPI_TWISTED_REQUIRE_BROWSER, tests/conftest.py).
Screenshots of every page type go to ``test-results/screenshots/`` (or
``$DEVPI_TWISTED_TEST_RESULTS/screenshots``); the path is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import Daemon, init_serverdir

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.browser.watch import Watch

CHROMIUM = os.environ.get("DEVPI_TWISTED_CHROMIUM", "/usr/bin/chromium")
# No GPU, no QUIC, nothing fetched in the background (the machine may have no network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 15_000  # a page, a click, a wait: every step of a test


def screenshots_dir(config: pytest.Config) -> Path:
    base = os.environ.get("DEVPI_TWISTED_TEST_RESULTS")
    return (Path(base) if base else config.rootpath / "test-results") / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium for the module (each test gets its own context)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: sudo apt-get install chromium")
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon on sqlite for the module (root has the empty password), initialised
    with the module's ``INIT_OPTIONS`` (default: no root/pypi)."""
    serverdir = tmp_path_factory.mktemp("browser-server") / "state"
    init_serverdir(serverdir, *getattr(request.module, "INIT_OPTIONS", ["--no-root-pypi"]))
    running = Daemon(serverdir).start()
    yield running
    running.stop()


@pytest.fixture
def watch(browser: Browser, daemon: Daemon, request: pytest.FixtureRequest) -> Iterator[Watch]:
    """A fresh context and page on ``daemon``; after the test, no dialog may have opened,
    no script error happened, no policy been violated and no other host been asked."""
    from tests.browser.watch import Watch

    context = browser.new_context(accept_downloads=True, base_url=daemon.url)
    context.set_default_timeout(TIMEOUT_MS)
    page: Page = context.new_page()
    watched = Watch(page, daemon.url, screenshots_dir(request.config))
    yield watched
    context.close()
    watched.assert_quiet()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    from tests.browser.watch import WRITTEN

    if WRITTEN:
        terminalreporter.write_line(f"browser screenshots ({len(WRITTEN)}): "
                                    f"{screenshots_dir(config)}")
