"""root/pypi as a caching mirror of a fake PyPI (its own process): the real pip installs a
dependency tree through it, again from the cache when the fake is gone (also after a
restart of the daemon), private names shadow the mirror's unless whitelisted, and a
file whose hash upstream got wrong is never stored (on sqlite and on PostgreSQL with
workers, through the module-wide ``daemon``)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_uploads import pip, twine
from tests.fakepypi import FakePyPI
from tests.support import (
    Daemon, call, login, make_sdist, make_wheel, point_pypi_at, serving_fake_pypi,
)

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    def dists(d: Path) -> list[Path]:
        return [make_wheel(d, "mirapp", "1.0", requires=["mirlib>=1.0"]),
                make_wheel(d, "mirlib", "1.0"), make_wheel(d, "mirlib", "2.0"),
                make_sdist(d, "mirlib", "2.0"), make_wheel(d, "shadowed", "3.0"),
                make_wheel(d, "badhash", "1.0"), make_wheel(d, "unfetched", "1.0"),
                make_wheel(d, "neverasked", "1.0")]

    with serving_fake_pypi(tmp_path_factory.mktemp("fakepypi"), dists) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def mirror(daemon: Daemon, fake: FakePyPI) -> Daemon:
    """root/pypi pointed at the fake; packages/stable (bases root/pypi) for private uploads."""
    point_pypi_at(daemon.url, fake.url, "packages", "pkg-pass", "stable")
    return daemon


def page(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=JSON)) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, {}, dict(e.headers)


def install(index: str, target: Path, *names: str, ok: bool = True) -> str:
    return pip("install", "--index-url", index, "--target", str(target), *names, ok=ok)


def test_pip_installs_a_dependency_tree_through_the_mirror(mirror: Daemon, fake: FakePyPI,
                                                           tmp_path: Path) -> None:
    out = install(mirror.url + "/root/pypi/+simple/", tmp_path / "t", "mirapp")
    assert "mirapp-1.0" in out and "mirlib-2.0" in out
    status, data, _ = page(mirror.url + "/root/pypi/+simple/mirlib/")
    assert status == 200 and data["versions"] == ["1.0", "2.0"]
    assert {f["filename"] for f in data["files"]} == {
        "mirlib-1.0-py3-none-any.whl", "mirlib-2.0-py3-none-any.whl", "mirlib-2.0.tar.gz"}
    fetched = [r["path"] for r in fake.requests() if r["path"].startswith("/files/")]
    # again, into a new target: pages young enough and files stored, upstream not asked
    install(mirror.url + "/root/pypi/+simple/", tmp_path / "t2", "mirapp")
    assert [r["path"] for r in fake.requests() if r["path"].startswith("/files/")] == fetched


def test_unknown_projects_are_404(mirror: Daemon) -> None:
    assert page(mirror.url + "/root/pypi/+simple/no-such-project/")[0] == 404


def test_the_mirror_lists_the_projects_it_holds(mirror: Daemon) -> None:
    projects = call(mirror.url + "/root/pypi")[1]["result"]["projects"]
    assert {"mirapp", "mirlib"} <= set(projects) and "no-such-project" not in projects


def test_uv_installs_through_the_mirror_and_status_counts(mirror: Daemon, tmp_path: Path) -> None:
    import subprocess

    from tests.support import bin_path

    done = subprocess.run(
        [bin_path("uv"), "pip", "install", "--no-cache", "--target", str(tmp_path / "t"),
         "--index-url", mirror.url + "/root/pypi/+simple/", "mirapp"],
        capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "t" / "mirlib").is_dir()
    status = call(mirror.url + "/+status")[1]["result"]
    counts = {k: v for k, v in status["mirror"].items() if k not in ("upstream", "offline")}
    assert set(counts) == {"page_hits", "page_fetches", "page_errors", "page_prefetches",
                           "file_fetches", "file_errors"} and all(
        isinstance(v, int) for v in counts.values())
    assert set(status["mirror"]["upstream"]) == {"requests", "errors", "retries"}
    assert status["mirror"]["offline"] is False


def test_a_wrong_hash_upstream_is_never_stored(mirror: Daemon, fake: FakePyPI,
                                               tmp_path: Path) -> None:
    status, data, _ = page(mirror.url + "/root/pypi/+simple/badhash/")
    assert status == 200
    fake.set(truncate=True)
    try:
        install(mirror.url + "/root/pypi/+simple/", tmp_path / "t", "badhash", ok=False)
    finally:
        fake.set(truncate=None)
    url = urllib.parse.urljoin(mirror.url + "/root/pypi/+simple/badhash/", data["files"][0]["url"])
    with urllib.request.urlopen(url) as r:  # fetched whole this time, and checked
        body = r.read()
    import hashlib
    assert hashlib.sha256(body).hexdigest() == data["files"][0]["hashes"]["sha256"]


def test_private_uploads_shadow_the_mirror_unless_whitelisted(mirror: Daemon,
                                                              tmp_path: Path) -> None:
    index = mirror.url + "/packages/stable/+simple/"
    assert page(index + "shadowed/")[1]["versions"] == ["3.0"]  # the mirror's
    twine(mirror.url + "/packages/stable/", make_wheel(tmp_path, "shadowed", "0.1"))
    assert page(index + "shadowed/")[1]["versions"] == ["0.1"]  # the private one only
    auth = login(mirror.url, "packages", "pkg-pass")
    assert call(mirror.url + "/packages/stable", "PATCH", ["mirror_whitelist+=shadowed"],
                auth)[0] == 200
    assert page(index + "shadowed/")[1]["versions"] == ["0.1", "3.0"]
    # devpi 7's spellings of the same: a project's inheritance_rules, the index's rules
    project = mirror.url + "/packages/stable/shadowed"
    assert call(project, "PATCH", ["inheritance_rules-=allow all"], auth)[0] == 200
    assert page(index + "shadowed/")[1]["versions"] == ["0.1"]
    status, body, _ = call(project, "PATCH", ["inheritance_rules=allow all"], auth)
    assert (status, body["result"]) == (200, {"inheritance_rules": ["allow all"]})
    assert call(project + "?v=2", "GET")[1]["result"]["config"] == {
        "inheritance_rules": ["allow all"]}
    assert page(index + "shadowed/")[1]["versions"] == ["0.1", "3.0"]
    assert call(project, "PATCH", {}, auth)[0] == 200
    assert page(index + "shadowed/")[1]["versions"] == ["0.1"]
    assert call(mirror.url + "/packages/stable", "PATCH",
                ["project_inheritance_rules=allow all"], auth)[0] == 200
    assert page(index + "shadowed/")[1]["versions"] == ["0.1", "3.0"]
    assert call(mirror.url + "/packages/stable", "PATCH",
                ["project_inheritance_rules=block type:remote if local_exists"], auth)[0] == 200
    assert page(index + "shadowed/")[1]["versions"] == ["0.1"]
    assert call(mirror.url + "/packages/stable", "PATCH", ["mirror_whitelist+=shadowed"],
                auth)[0] == 200
    # a name only the mirror has comes through the private index too
    assert "mirlib-2.0" in install(index, tmp_path / "t", "mirlib")


def test_external_urls_send_clients_upstream_for_files_not_stored(mirror: Daemon,
                                                                  fake: FakePyPI) -> None:
    root = login(mirror.url, "root", "")
    assert call(mirror.url + "/root/pypi", "PATCH", ["mirror_use_external_urls=True"],
                root)[0] == 200
    try:
        status, data, _ = page(mirror.url + "/root/pypi/+simple/unfetched/")
        assert status == 200
        url = urllib.parse.urljoin(mirror.url + "/root/pypi/+simple/unfetched/",
                                   data["files"][0]["url"])

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.build_opener(NoRedirect).open(url)
        assert e.value.code == 302
        assert e.value.headers["Location"].startswith(fake.url.rsplit("/simple/", 1)[0])
    finally:
        assert call(mirror.url + "/root/pypi", "PATCH", ["mirror_use_external_urls=False"],
                    root)[0] == 200


def test_deleting_a_cached_project_makes_it_fetched_again(mirror: Daemon, fake: FakePyPI) -> None:
    def asked() -> int:
        return len([r for r in fake.requests() if r["path"] == "/simple/badhash/"])

    assert page(mirror.url + "/root/pypi/+simple/badhash/")[0] == 200
    before = asked()
    root = login(mirror.url, "root", "")
    assert call(mirror.url + "/root/pypi/badhash", "DELETE", None, root)[0] == 403  # no force
    assert call(mirror.url + "/root/pypi/badhash?force", "DELETE", None, root)[0] == 200
    assert call(mirror.url + "/root/pypi/badhash?force", "DELETE", None, root)[0] == 404
    for _ in range(3):  # whichever worker answers asks upstream again, once
        status, data, _ = page(mirror.url + "/root/pypi/+simple/badhash/")
        assert status == 200 and data["versions"] == ["1.0"]
    assert before < asked() <= before + 3


def test_deleting_a_mirrored_version_or_file_drops_the_downloads_only(mirror: Daemon,
                                                                     tmp_path: Path) -> None:
    install(mirror.url + "/root/pypi/+simple/", tmp_path / "t", "mirlib==1.0")
    status, data, _ = page(mirror.url + "/root/pypi/+simple/mirlib/")
    wheel = next(f for f in data["files"] if f["filename"] == "mirlib-1.0-py3-none-any.whl")
    url = urllib.parse.urljoin(mirror.url + "/root/pypi/+simple/mirlib/", wheel["url"])
    path = urllib.parse.urlsplit(url).path
    root = login(mirror.url, "root", "")

    def download() -> bytes:
        with urllib.request.urlopen(url) as r:
            return r.read()

    def delete(target: str) -> int:
        # a first download's response ends before it is stored: retry while it is not
        for _ in range(50):
            status = call(mirror.url + target, "DELETE", None, root)[0]
            if status not in (404, 410):
                return status
            time.sleep(0.1)
        return status

    body = download()
    assert delete("/root/pypi/mirlib/1.0?force") == 200
    assert call(mirror.url + "/root/pypi/mirlib/9.9?force", "DELETE", None, root)[0] == 404
    assert download() == body  # the link stays: fetched again
    assert delete(path + "?force") == 200
    assert download() == body  # and again
    assert page(mirror.url + "/root/pypi/+simple/mirlib/")[0] == 200


def test_refresh_asks_upstream_again(mirror: Daemon, fake: FakePyPI) -> None:
    def asked() -> int:
        return len([r for r in fake.requests() if r["path"] == "/simple/mirapp/"])

    assert page(mirror.url + "/root/pypi/+simple/mirapp/")[0] == 200
    before = asked()
    request = urllib.request.Request(mirror.url + "/root/pypi/+simple/mirapp/refresh",
                                     data=b"", method="POST")
    with urllib.request.urlopen(request) as r:  # follows the redirect to the page
        assert r.status == 200 and r.url.endswith("/root/pypi/+simple/mirapp/")
    # asked by the refresh; with workers, the page request may land on a process that
    # has not seen the page yet and asks once more
    assert before + 1 <= asked() <= before + 2


def test_the_cache_serves_while_upstream_is_down_also_after_a_restart(
        mirror: Daemon, fake: FakePyPI, tmp_path: Path) -> None:
    install(mirror.url + "/root/pypi/+simple/", tmp_path / "warm", "mirapp")
    fake.kill()
    try:
        install(mirror.url + "/root/pypi/+simple/", tmp_path / "t", "mirapp")
        mirror.stop()
        mirror.start()
        out = install(mirror.url + "/root/pypi/+simple/", tmp_path / "t2", "mirapp")
        assert "mirlib-2.0" in out
        status, _, headers = page(mirror.url + "/root/pypi/+simple/mirapp/")
        assert status == 200 and "no-cache" in headers.get("Cache-Control", "")
        # upstream lists it, but its page was never fetched: nothing to stand in
        assert page(mirror.url + "/root/pypi/+simple/neverasked/")[0] == 502
        # not in upstream's list (kept from before the outage): 404, upstream not asked
        assert page(mirror.url + "/root/pypi/+simple/never-seen/")[0] == 404
    finally:
        fake.start()


def test_the_daemon_logged_no_unhandled_errors(mirror: Daemon) -> None:
    """Last of the module: outages, broken and concurrent downloads left no traceback."""
    log = mirror.log.read_text(errors="replace")
    assert "Unhandled" not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.skipif(not os.environ.get("DEVPI_TWISTED_REAL_PYPI"),
                    reason="opt-in: set DEVPI_TWISTED_REAL_PYPI=1 to install from the real PyPI")
def test_requests_installs_from_the_real_pypi(tmp_path: Path) -> None:
    from tests.support import init_serverdir

    serverdir = tmp_path / "state"
    init_serverdir(serverdir)  # root/pypi mirrors https://pypi.org/simple/
    daemon = Daemon(serverdir, "--request-timeout", "30").start()
    try:
        out = install(daemon.url + "/root/pypi/+simple/", tmp_path / "t", "requests")
        assert "Successfully installed" in out and "requests" in out
        assert page(daemon.url + "/root/pypi/+simple/requests/")[0] == 200
    finally:
        daemon.stop()
