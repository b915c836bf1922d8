"""A mirror index in a real browser: root/pypi mirroring a fake PyPI shows its mirror
settings and only the projects cached so far (never upstream's whole list), a project's
versions newest first, and a file downloaded through the server from upstream."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.browser.watch import Watch
from tests.support import Daemon, call, make_wheel, point_pypi_at, serving_fake_pypi

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
expect = sync_api.expect

INIT_OPTIONS: list[str] = []  # the daemon of this module has root/pypi
WHEEL = "mirpkg-2.0-py3-none-any.whl"


@attrs.frozen
class Mirror:
    url: str
    upstream: str
    wheel: bytes  # mirpkg 2.0's wheel, as upstream has it


@pytest.fixture(scope="module")
def mirror(daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    """root/pypi mirrors a fake PyPI with mirpkg 1.0 and 2.0 and neverasked 1.0; mirpkg's
    page has been asked for once (so it is cached), neverasked's never."""
    built: list[Path] = []

    def dists(directory: Path) -> list[Path]:
        built.extend([make_wheel(directory, "mirpkg", "1.0"), make_wheel(directory, "mirpkg", "2.0"),
                      make_wheel(directory, "neverasked", "1.0")])
        return built

    with serving_fake_pypi(tmp_path_factory.mktemp("browser-fakepypi"), dists) as upstream:
        point_pypi_at(daemon.url, upstream.url, "packages", "pkg-pass", "stable")
        status, reply, _ = call(daemon.url + "/root/pypi/+simple/mirpkg/",
                                headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert status == 200, reply
        yield Mirror(daemon.url, upstream.url, built[1].read_bytes())


def test_a_mirror_shows_what_it_cached(watch: Watch, mirror: Mirror, tmp_path: Path) -> None:
    page = watch.page
    watch.goto("/")
    page.locator("#indexes").get_by_role("link", name="root/pypi", exact=True).click()
    expect(page.locator("main h1")).to_have_text("root/pypi")
    expect(page.locator("#index-config")).to_contain_text("mirror")
    expect(page.locator("#index-config")).to_contain_text(mirror.upstream)
    projects = page.locator("#projects")
    expect(projects.get_by_role("link", name="mirpkg", exact=True)).to_be_visible()
    expect(projects).not_to_contain_text("neverasked")  # cached so far, not upstream's list
    watch.shot("mirror-index")
    projects.get_by_role("link", name="mirpkg", exact=True).click()
    expect(page.locator("main h1")).to_have_text("mirpkg")
    versions = page.locator("#versions tbody tr td:first-child a")
    expect(versions).to_have_text(["2.0", "1.0"])  # newest first
    watch.shot("mirror-project")
    versions.first.click()
    expect(page.locator("main h1")).to_have_text("mirpkg 2.0")
    name, content = watch.download(page.locator("#files").get_by_role("link", name=WHEEL), tmp_path)
    assert name == WHEEL and hashlib.sha256(content).digest() == hashlib.sha256(mirror.wheel).digest()
    assert not watch.injected()
