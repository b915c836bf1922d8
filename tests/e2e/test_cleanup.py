"""``devpi-twisted cleanup`` beside a running daemon, on sqlite (files under +files,
access time in the file's atime) and on PostgreSQL (bodies and access time in the
database): mirrored files unused for N days or beyond a size budget go, least
recently used first; private uploads never; a download marks a file used; a
removed file is fetched from upstream again on the next download."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_uploads import pip, twine
from tests.fakepypi import FakePyPI
from tests.support import Daemon, bin_path, call, init_serverdir, login, make_wheel, serving_fake_pypi

DAY = 86400
PACKAGES = ("cleanold", "cleanused", "cleannew", "cleanbig", "cleanmid")


class Site:
    def __init__(self, daemon: Daemon, storage: list[str], cluster: Any, database: str,
                 fake: FakePyPI) -> None:
        self.daemon = daemon
        self.storage = storage
        self.cluster = cluster
        self.database = database
        self.fake = fake

    def blobs(self, like: str) -> dict[str, int]:
        """key -> size of stored bodies whose key contains ``like``."""
        if self.cluster is None:
            root = self.daemon.serverdir / "+files"
            return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*")
                    if p.is_file() and like in p.relative_to(root).as_posix()}
        out = self.cluster.psql(self.database,
                                f"SELECT key, size FROM blobs WHERE key LIKE '%{like}%'")
        return {k: int(s) for k, s in (line.split("|") for line in out.split())}

    def stored(self, filename: str) -> dict[str, int]:
        """key -> size of the stored bodies of ``filename``."""
        return {k: v for k, v in self.blobs(filename).items() if k.endswith("/" + filename)}

    def stored_soon(self, filename: str, timeout: float = 10.0) -> dict[str, int]:
        """``stored``, once the body is there: a first download's client may have all
        of it before the daemon has stored it."""
        deadline = time.monotonic() + timeout
        while not (found := self.stored(filename)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def age(self, like: str, days: float) -> None:
        """Make the bodies matching ``like`` look last used ``days`` ago."""
        when = time.time() - days * DAY
        if self.cluster is None:
            for key in self.blobs(like):
                os.utime(self.daemon.serverdir / "+files" / key, (when, when))
        else:
            self.cluster.psql(self.database, f"UPDATE blobs SET accessed_at = {when} "
                                             f"WHERE key LIKE '%{like}%'")

    def cleanup(self, *args: str, ok: bool = True) -> str:
        done = subprocess.run([bin_path("devpi-twisted"), "cleanup", "--serverdir",
                               str(self.daemon.serverdir), *self.storage, *args],
                              capture_output=True, text=True, timeout=120)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done.stdout + done.stderr

    def download(self, project: str, dest: Path) -> Path:
        pip("download", "--no-deps", "--index-url", self.daemon.url + "/packages/stable/+simple/",
            "--dest", str(dest), project)
        (found,) = dest.glob(f"{project}-*.whl")
        return found


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakePyPI]:
    with serving_fake_pypi(tmp_path_factory.mktemp("fakepypi"),
                           lambda d: [make_wheel(d, name, "1.0") for name in PACKAGES]) as upstream:
        yield upstream


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         fake: FakePyPI) -> Iterator[Site]:
    serverdir = tmp_path_factory.mktemp("cleanup") / "state"
    storage: list[str] = []
    cluster, database = None, ""
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        storage = ["--storage", cluster.storage_option(database)]
    init_serverdir(serverdir, *storage)
    daemon = Daemon(serverdir, *storage).start()
    try:
        root = login(daemon.url, "root", "")
        assert call(daemon.url + "/root/pypi", "PATCH", [f"mirror_url={fake.url}"], root)[0] == 200
        assert call(daemon.url + "/packages", "PUT", {"password": "pkg-pass"})[0] == 201
        auth = login(daemon.url, "packages", "pkg-pass")
        assert call(daemon.url + "/packages/stable", "PUT", {"bases": "root/pypi"}, auth)[0] == 200
        yield Site(daemon, storage, cluster, database, fake)
    finally:
        daemon.stop()


def upstream_fetches(site: Site, name: str) -> int:
    return sum(1 for r in site.fake.requests() if r["path"].endswith(".whl") and name in r["path"])


def test_old_mirror_files_go_private_uploads_and_used_files_stay(site: Site,
                                                                 tmp_path: Path) -> None:
    twine(site.daemon.url + "/packages/stable/", make_wheel(tmp_path, "cleanprivate", "1.0"))
    for name in ("cleanold", "cleanused", "cleannew"):
        site.download(name, tmp_path / "first" / name)
    for name in ("cleanold", "cleanused", "cleannew"):
        assert len(site.stored_soon(f"{name}-1.0-py3-none-any.whl")) == 1
    for like in ("cleanold", "cleanused", "cleanprivate"):
        site.age(like, 40)
    site.download("cleanused", tmp_path / "again")  # a download marks it used today

    listed = site.cleanup("--days", "30", "--dry-run")
    assert "would remove root/pypi/" in listed and "cleanold-1.0-py3-none-any.whl" in listed
    assert "cleanused" not in listed and "cleannew" not in listed and "cleanprivate" not in listed
    assert len(site.stored("cleanold-1.0-py3-none-any.whl")) == 1  # a dry run removes nothing

    done = site.cleanup("--days", "30")
    assert "removed 1 mirror files" in done, done
    assert site.stored("cleanold-1.0-py3-none-any.whl") == {}
    assert len(site.stored("cleanused-1.0-py3-none-any.whl")) == 1
    assert len(site.stored("cleannew-1.0-py3-none-any.whl")) == 1
    assert len(site.stored("cleanprivate-1.0-py3-none-any.whl")) == 1
    assert len(site.stored("cleanold-1.0-py3-none-any.whl.metadata")) <= 1  # kept if extracted

    # the running daemon fetches the removed file from upstream again
    before = upstream_fetches(site, "cleanold")
    again = site.download("cleanold", tmp_path / "refetched")
    assert again.read_bytes() == (tmp_path / "first" / "cleanold" / again.name).read_bytes()
    assert upstream_fetches(site, "cleanold") == before + 1
    assert len(site.stored_soon("cleanold-1.0-py3-none-any.whl")) == 1
    site.download("cleanprivate", tmp_path / "private")


def test_size_budget_removes_least_recently_used_first(site: Site, tmp_path: Path) -> None:
    for name in ("cleanbig", "cleanmid"):
        site.download(name, tmp_path / name)
        assert site.stored_soon(f"{name}-1.0-py3-none-any.whl")
    site.age("cleanbig", 3)
    site.age("cleanmid", 2)
    mirror = site.blobs("root/pypi/+f/")
    total = sum(v for k, v in mirror.items() if not k.endswith(".metadata"))
    (big_size,) = site.stored("cleanbig-1.0-py3-none-any.whl").values()
    done = site.cleanup("--max-size", str(total - big_size))  # one file too many: the LRU one
    assert "removed 1 mirror files" in done, done
    assert site.stored("cleanbig-1.0-py3-none-any.whl") == {}
    assert len(site.stored("cleanmid-1.0-py3-none-any.whl")) == 1


def test_only_release_files_are_candidates(site: Site) -> None:
    names = site.blobs("root/pypi/+names/")
    assert names, "the mirror keeps its project name list in the blob store"
    listed = site.cleanup("--max-size", "0", "--dry-run")
    assert "+names" not in listed and "cleanprivate" not in listed
    assert "would remove root/pypi/+f/" in listed
    assert site.blobs("root/pypi/+names/") == names


def test_cleanup_refuses_unclear_requests(site: Site) -> None:
    assert "--days" in site.cleanup(ok=False)
    assert "--max-size" in site.cleanup("--max-size", "lots", ok=False)
    assert "--days" in site.cleanup("--days", "soon", ok=False)


def test_cleanup_of_a_directory_without_state_fails_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([bin_path("devpi-twisted"), "cleanup", "--serverdir",
                           str(tmp_path / "none"), "--days", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"devpi-twisted: {tmp_path / 'none'} contains no devpi-twisted state"]
