"""Our own export and import: sqlite -> PostgreSQL -> sqlite compares equal (every JSON
view, every file's hash); --hard-links, the twistd spelling, refusals, a broken dump,
and an import killed with SIGKILL that a re-run starts over."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dump.state import (
    PASSWORDS, assert_same, build_state, run_cli, run_twistd, served_views, views,
)
from tests.dump.synth import write_dump
from tests.support import Daemon, bin_path, init_serverdir, login


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A state built on our server on sqlite, its views, and its export (hard links)."""
    base = tmp_path_factory.mktemp("roundtrip")
    serverdir = base / "sqlite-1"
    init_serverdir(serverdir)
    daemon = Daemon(serverdir).start()
    try:
        build_state(daemon.url, base / "work")
        add_yanked_release(daemon.url, base / "work")
        expected = views(daemon.url)
        page = solo_page(daemon.url)
        done = run_cli("export", "--serverdir", str(serverdir), "--hard-links", str(base / "dump-1"))
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stderr
    assert "exported 3 users" in done.stderr
    yield {"base": base, "serverdir": serverdir, "views": expected, "dump": base / "dump-1",
           "page": page}


def add_yanked_release(url: str, workdir: Path) -> None:
    """What only we have: a yanked file (and upload times with microseconds)."""
    from tests.dump.devpi6 import upload
    from tests.support import call, make_sdist, make_wheel

    alice = login(url, "alice", PASSWORDS["alice"])
    assert call(url + "/alice/solo", "PUT", {"bases": []}, alice)[0] == 200
    for path in (make_wheel(workdir, "solo-pkg", "1.0", requires_python=">=3.9"),
                 make_sdist(workdir, "solo-pkg", "1.0")):
        upload(url + "/alice/solo", alice, path, "solo-pkg", "1.0")
    status, reply, _ = call(url + "/alice/solo/solo-pkg/1.0", "PATCH",
                            {"yanked": "broken build", "filename": "solo_pkg-1.0-py3-none-any.whl"},
                            alice)
    assert status == 200, reply
    # issue 23: policy keys and a block travel in the index config
    status, reply, _ = call(url + "/alice/solo", "PATCH", {
        "min_release_age": "7d", "min_release_age_exempt": ["solo-pkg"],
        "constraints": ["other<2", "*"]}, alice)
    assert status == 200, reply
    status, reply, _ = call(url + "/alice/solo/+block", "POST", {
        "project": "other", "version": "1.5", "reason": "recalled"}, alice)
    assert status == 200, reply


def solo_page(url: str) -> dict[str, Any]:
    """The PEP 691 page of alice/solo's project: yanked, upload times, core metadata."""
    req = urllib.request.Request(url + "/alice/solo/+simple/solo-pkg/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req) as r:
        page = json.loads(r.read().decode().replace(url, "URL"))
    files = {f["filename"]: f for f in page["files"]}
    assert files["solo_pkg-1.0-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["solo_pkg-1.0-py3-none-any.whl"]["core-metadata"]
    return page


def some_file(directory: Path) -> Path:
    return next(p for p in sorted(directory.rglob("*.whl")) if p.is_file())


def test_export_with_hard_links_links_the_stored_files(original: dict[str, Any]) -> None:
    dumped = some_file(original["dump"])
    stored = [p for p in (original["serverdir"] / "+files").rglob(dumped.name)]
    assert stored and any(p.stat().st_ino == dumped.stat().st_ino for p in stored)
    assert (original["dump"] / "dataindex.json").is_file()


def test_sqlite_to_postgres_to_sqlite(original: dict[str, Any], pg_cluster: Any) -> None:
    base = original["base"]
    storage = pg_cluster.storage_option(pg_cluster.create_database())
    pg_dir = base / "postgres"
    done = run_cli("import", "--serverdir", str(pg_dir), "--storage", storage, str(original["dump"]))
    assert done.returncode == 0, done.stderr
    assert "imported 3 users" in done.stderr and "verified 13/13 files (100%)" in done.stderr
    assert not any((pg_dir / "+files").rglob("*.whl"))  # the bodies live in the database
    daemon = Daemon(pg_dir, "--storage", storage).start()
    try:
        assert_same(views(daemon.url), original["views"])
        assert solo_page(daemon.url) == original["page"]
    finally:
        daemon.stop()

    # and back, in twistd's spelling
    done = run_twistd("--serverdir", str(pg_dir), "--storage", storage, "--export", str(base / "dump-2"))
    assert done.returncode == 0, done.stderr + done.stdout
    back = base / "sqlite-2"
    done = run_twistd("--serverdir", str(back), "--import", str(base / "dump-2"), "--hard-links")
    assert done.returncode == 0, done.stderr + done.stdout
    dumped = some_file(base / "dump-2")
    assert any(p.stat().st_ino == dumped.stat().st_ino for p in (back / "+files").rglob(dumped.name))
    daemon = Daemon(back).start()
    try:
        assert_same(views(daemon.url), original["views"])
        assert solo_page(daemon.url) == original["page"]
        for user, password in PASSWORDS.items():
            login(daemon.url, user, password)
    finally:
        daemon.stop()

    # an import refuses a directory that holds a state, and a database that does
    done = run_cli("import", "--serverdir", str(back), str(base / "dump-2"))
    assert done.returncode == 1 and "is not empty" in done.stderr
    other = base / "other"
    done = run_cli("import", "--serverdir", str(other), "--storage", storage, str(base / "dump-2"))
    assert done.returncode == 1 and "already holds a server state" in done.stderr, done.stderr
    assert not other.exists()
    assert_same(served_views(pg_dir, "--storage", storage), original["views"])  # untouched


def test_export_refuses_a_non_empty_directory(original: dict[str, Any]) -> None:
    done = run_cli("export", "--serverdir", str(original["serverdir"]), str(original["dump"]))
    assert done.returncode == 1 and "is not empty" in done.stderr


def test_a_dump_with_a_changed_file_is_refused_and_nothing_is_written(original: dict[str, Any]) -> None:
    broken = original["base"] / "broken"
    shutil.copytree(original["dump"], broken)
    victim = some_file(broken)
    victim.unlink()  # a hard link: write a new file rather than change the shared one
    victim.write_bytes(b"not the wheel")
    target = original["base"] / "from-broken"
    done = run_cli("import", "--serverdir", str(target), str(broken))
    assert done.returncode == 1
    assert f"{victim.relative_to(broken)}: sha256 is " in done.stderr
    assert not target.exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_killed_import_is_started_over(backend: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    write_dump(tmp_path / "dump", 1500)
    serverdir = tmp_path / "state"
    storage: list[str] = []
    cluster = database = None
    if backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        database = cluster.create_database()
        storage = ["--storage", cluster.storage_option(database)]

    def files_written() -> int:
        if cluster is None:
            stored = serverdir / "+files" / "alice" / "dev"
            return sum(1 for _ in stored.rglob("*.whl")) if stored.is_dir() else 0
        try:
            return int(cluster.psql(database, "SELECT count(*) FROM files").strip() or 0)
        except RuntimeError:  # no tables yet
            return 0

    command = [bin_path("devpi-twisted"), "import", "--serverdir", str(serverdir), *storage,
               str(tmp_path / "dump")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and files_written() < 100:
        time.sleep(0.05)
    assert proc.poll() is None, "the import finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (serverdir / ".import-unfinished").exists()
    assert not (serverdir / ".nodeinfo").exists()

    refused = subprocess.run([bin_path("twistd"), "-n", "--pidfile=", "devpi", "--serverdir",
                              str(serverdir), *storage, "--port", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "did not finish" in refused.stdout + refused.stderr

    done = run_cli("import", "--serverdir", str(serverdir), *storage, str(tmp_path / "dump"))
    assert done.returncode == 0, done.stderr
    assert "removed an unfinished import" in done.stderr
    assert "imported 2 users, 2 indexes, 750 versions and 1500 files" in done.stderr
    assert served_views_light(serverdir, storage) == (150, 5)


def served_views_light(serverdir: Path, storage: list[str]) -> tuple[int, int]:
    """Projects of alice/dev and the versions of one, from the running server."""
    from tests.support import call

    daemon = Daemon(serverdir, *storage).start()
    try:
        status, reply, _ = call(daemon.url + "/alice/dev")
        assert status == 200, reply
        status, versions, _ = call(daemon.url + "/alice/dev/pkg7")
        assert status == 200 and sorted(versions["result"]) == [f"1.{n}" for n in range(5)]
        return len(reply["result"]["projects"]), len(versions["result"])
    finally:
        daemon.stop()


def test_mirror_settings_always_and_mirrored_files_on_request(tmp_path: Path) -> None:
    from tests.fakepypi import FakePyPI
    from tests.support import call, make_wheel

    dists = tmp_path / "dists"
    dists.mkdir()
    wheel = make_wheel(dists, "mirlib", "1.0", requires_python=">=3.8")
    fake = FakePyPI(tmp_path / "fake")
    fake.add(wheel)
    fake.start()
    serverdir = tmp_path / "state"
    init_serverdir(serverdir)
    try:
        daemon = Daemon(serverdir).start()
        try:
            root = login(daemon.url, "root", "")
            status, body, _ = call(daemon.url + "/root/pypi", "PATCH", [f"mirror_url={fake.url}"], root)
            assert status == 200, body
            before = int(call(daemon.url + "/+api")[2]["X-Devpi-Serial"])
            req = urllib.request.Request(daemon.url + "/root/pypi/+simple/mirlib/",
                                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            with urllib.request.urlopen(req) as r:
                [link] = json.loads(r.read())["files"]
            href = urllib.parse.urljoin(daemon.url + "/root/pypi/+simple/mirlib/", link["url"])
            with urllib.request.urlopen(href) as r:
                assert r.read() == wheel.read_bytes()
            # the page and then the download are stored after they were sent: two commits
            deadline = time.monotonic() + 20
            while int(call(daemon.url + "/+api")[2]["X-Devpi-Serial"]) < before + 2:
                assert time.monotonic() < deadline, "the downloaded file was not stored"
                time.sleep(0.05)
        finally:
            daemon.stop()
    finally:
        fake.stop()

    plain = tmp_path / "plain"
    assert run_cli("export", "--serverdir", str(serverdir), str(plain)).returncode == 0
    index = json.loads((plain / "dataindex.json").read_text())["indexes"]["root/pypi"]
    assert set(index) == {"indexconfig"}
    assert index["indexconfig"]["mirror_url"].rstrip("/") == fake.url.rstrip("/")
    assert index["indexconfig"]["type"] == "mirror"
    assert not list(plain.rglob("*.whl"))

    full = tmp_path / "full"
    done = run_cli("export", "--serverdir", str(serverdir), "--include-mirrored-files", str(full))
    assert done.returncode == 0, done.stderr
    index = json.loads((full / "dataindex.json").read_text())["indexes"]["root/pypi"]
    [desc] = index["files"]
    assert desc["entrymapping"]["url"].endswith("/mirlib-1.0-py3-none-any.whl")
    assert (full / desc["relpath"]).read_bytes() == wheel.read_bytes()
    assert index["projects"]["mirlib"]["1.0"]["version"] == "1.0"

    # devpi-server 6 takes it too
    from tests.dump.devpi6 import Devpi6, ensure_installed

    Devpi6(ensure_installed(), tmp_path / "devpi6").run("devpi-import", "--no-events", str(full))

    # imported, the file is served from the store with upstream gone
    copy = tmp_path / "copy"
    done = run_cli("import", "--serverdir", str(copy), str(full))
    assert done.returncode == 0, done.stderr
    daemon = Daemon(copy, "--offline-mode").start()
    try:
        with urllib.request.urlopen(daemon.url + "/root/pypi/+simple/mirlib/") as r:
            assert b"mirlib-1.0-py3-none-any.whl" in r.read()
        relpath = desc["entrymapping"]["hash_spec"].split("=")[1]
        with urllib.request.urlopen(f"{daemon.url}/root/pypi/+f/{relpath[:3]}/{relpath[3:16]}/"
                                    "mirlib-1.0-py3-none-any.whl") as r:
            assert r.read() == wheel.read_bytes()
    finally:
        daemon.stop()


def test_an_import_makes_the_search_rows(original: dict[str, Any], tmp_path: Path) -> None:
    """Versions and the text of imported docs are found once the import is done."""
    from tests.support import call

    serverdir = tmp_path / "imported"
    done = run_cli("import", "--serverdir", str(serverdir), str(original["dump"]))
    assert done.returncode == 0, done.stderr
    daemon = Daemon(serverdir).start()
    try:
        status, reply, _ = call(daemon.url + "/+search?query=docs+of+hello")
        assert status == 200, reply
        assert [h["path"] for h in reply["result"]["hits"]] == [
            "/alice/dev/hello-world/1.1/+d/index.html"]
        status, reply, _ = call(daemon.url + "/+search?query=other.pkg+summary")
        assert status == 200 and reply["result"]["total"] >= 1, reply
        assert {h["project"] for h in reply["result"]["hits"]} == {"Other.Pkg"}
    finally:
        daemon.stop()
