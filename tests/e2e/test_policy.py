"""Supply-chain policy end to end (issue 23) with the real pip and uv, against a fake
PyPI whose upload times are set per file: with ``min_release_age=7d`` a version
uploaded an hour ago is not installed and the one before is; an exempt project gets
its newest; a constrained index installs only allowed versions; a blocked version can
be neither installed nor downloaded, also through an inheriting index and after it was
cached (on sqlite and on PostgreSQL with workers, through the module-wide ``daemon``)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_private_index import _uv
from tests.e2e.test_uploads import pip
from tests.fakepypi import FakePyPI
from tests.support import Daemon, call, login, make_wheel, point_pypi_at

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
DAY = 86400
USER, PASSWORD = "pol", "pol-pass"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    work = tmp_path_factory.mktemp("fakepypi")
    dists = work / "dists"
    dists.mkdir()
    old, young = time.time() - 30 * DAY, time.time() - 3600
    with FakePyPI(work / "fake") as upstream:
        for name, version, when in [("agelib", "1.0", old), ("agelib", "2.0", young),
                                    ("urgent", "1.0", old), ("urgent", "2.0", young),
                                    ("conlib", "1.0", old), ("conlib", "2.0", old),
                                    ("conlib", "3.0", old), ("otherlib", "1.0", old),
                                    ("blocklib", "1.0", old), ("blocklib", "2.0", old),
                                    ("seenlib", "1.0", old)]:
            upstream.add(make_wheel(dists, name, version), uploaded=when)
        upstream.start()
        yield upstream


@pytest.fixture(scope="module")
def policy(daemon: Daemon, fake: FakePyPI) -> Daemon:
    """pol/aged (7 days, urgent exempt), pol/constrained (conlib<3, nothing else),
    pol/plain: all inheriting root/pypi."""
    point_pypi_at(daemon.url, fake.url, USER, PASSWORD, "plain")
    auth = login(daemon.url, USER, PASSWORD)
    for name, body in [("aged", {"min_release_age": "7d", "min_release_age_exempt": ["Urgent"]}),
                       ("constrained", {"constraints": ["conlib<3", "blocklib"]})]:
        status, reply, _ = call(f"{daemon.url}/{USER}/{name}", "PUT",
                                {"bases": "root/pypi", **body}, auth)
        assert status == 200, reply
    return daemon


def index(daemon: Daemon, name: str) -> str:
    return f"{daemon.url}/{USER}/{name}/+simple/"


def installed(target: Path, module: str) -> str:
    return (target / module / "__init__.py").read_text()


def test_pip_and_uv_install_the_newest_version_old_enough(policy: Daemon, tmp_path: Path) -> None:
    pip("install", "--index-url", index(policy, "aged"), "--target", str(tmp_path / "p"),
        "agelib", "urgent")
    assert installed(tmp_path / "p", "agelib") == "VERSION = '1.0'\n"
    assert installed(tmp_path / "p", "urgent") == "VERSION = '2.0'\n"  # exempt
    _uv("pip", "install", "--no-cache", "--index-url", index(policy, "aged"), "--target",
        str(tmp_path / "u"), "agelib", cwd=tmp_path)
    assert installed(tmp_path / "u", "agelib") == "VERSION = '1.0'\n"
    pip("install", "--index-url", index(policy, "aged"), "--target", str(tmp_path / "x"),
        "agelib==2.0", ok=False)
    # the plain index is not held back
    pip("install", "--index-url", index(policy, "plain"), "--target", str(tmp_path / "n"),
        "agelib")
    assert installed(tmp_path / "n", "agelib") == "VERSION = '2.0'\n"
    code, why, _ = call(f"{policy.url}/{USER}/aged/agelib?policy")
    assert code == 200 and why["result"][0]["version"] == "2.0"
    assert why["result"][0]["rules"][0]["detail"].startswith("age until ")


def test_a_constrained_index_installs_only_allowed_versions(policy: Daemon,
                                                            tmp_path: Path) -> None:
    pip("install", "--index-url", index(policy, "constrained"), "--target",
        str(tmp_path / "p"), "conlib")
    assert installed(tmp_path / "p", "conlib") == "VERSION = '2.0'\n"
    _uv("pip", "install", "--no-cache", "--index-url", index(policy, "constrained"),
        "--target", str(tmp_path / "u"), "conlib", cwd=tmp_path)
    assert installed(tmp_path / "u", "conlib") == "VERSION = '2.0'\n"
    pip("install", "--index-url", index(policy, "constrained"), "--target",
        str(tmp_path / "x"), "otherlib", ok=False)  # not listed
    code, why, _ = call(f"{policy.url}/{USER}/constrained/conlib?policy")
    assert code == 200 and [h["version"] for h in why["result"]] == ["3.0"]


def _file_url(daemon: Daemon, simple: str, filename: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(simple, headers=JSON)) as r:
        files = json.loads(r.read())["files"]
    url = next(f["url"] for f in files if f["filename"] == filename)
    return urllib.parse.urljoin(simple, url)


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_blocked_version_is_neither_installed_nor_downloaded(policy: Daemon,
                                                               tmp_path: Path) -> None:
    pip("install", "--index-url", index(policy, "plain"), "--target", str(tmp_path / "c"),
        "blocklib")  # 2.0 is cached now
    url = _file_url(policy, index(policy, "plain") + "blocklib/", "blocklib-2.0-py3-none-any.whl")
    root = login(policy.url, "root", "")
    code, reply, _ = call(policy.url + "/root/pypi/+block", "POST",
                          {"project": "blocklib", "version": "2.0", "reason": "CVE-2026-1"}, root)
    assert code == 200, reply
    for name in ("plain", "constrained"):
        pip("install", "--index-url", index(policy, name), "--target", str(tmp_path / name),
            "blocklib")
        assert installed(tmp_path / name, "blocklib") == "VERSION = '1.0'\n"
    _uv("pip", "install", "--no-cache", "--index-url", index(policy, "plain"), "--target",
        str(tmp_path / "u"), "blocklib==2.0", cwd=tmp_path, ok=False)
    code, body = _status(url)
    assert code == 403 and b"CVE-2026-1" in body and b"blocked by root" in body
    code, why, _ = call(f"{policy.url}/{USER}/plain/blocklib?policy")
    assert why["result"][0]["rules"][0]["rule"] == "blocked"
    code, reply, _ = call(policy.url + "/root/pypi/+unblock", "POST",
                          {"project": "blocklib", "version": "2.0"}, root)
    assert code == 200, reply
    assert _status(url)[0] == 200
    pip("install", "--index-url", index(policy, "plain"), "--target", str(tmp_path / "again"),
        "blocklib")
    assert installed(tmp_path / "again", "blocklib") == "VERSION = '2.0'\n"


def test_without_an_upload_time_the_age_counts_from_when_the_mirror_first_saw_it(
        policy: Daemon, fake: FakePyPI, tmp_path: Path) -> None:
    fake.set(only="html")  # PEP 503 HTML: no upload-time
    try:
        pip("install", "--index-url", index(policy, "aged"), "--target", str(tmp_path / "p"),
            "seenlib", ok=False)
        # (asked while upstream still gives no upload time: another worker may ask it again)
        code, why, _ = call(f"{policy.url}/{USER}/aged/seenlib?policy")
    finally:
        fake.set(only=None)
    assert code == 200 and why["result"][0]["version"] == "1.0"
    until = why["result"][0]["rules"][0]["until"]
    assert until > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * DAY))
