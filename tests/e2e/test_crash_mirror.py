"""The mirror's cache files are stored without an fsync before the answer
(storage/cachesync.py): kill -9 right after first downloads, with the bodies a crash of
the machine could leave (one missing, one short), then a restart: no client gets a
damaged body; they are fetched from upstream again, a whole one is served from the
cache, and with upstream gone a damaged one (zeros, after a second kill) is a 502,
not a 500. A clean stop leaves nothing to check."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakepypi import FakePyPI
from tests.support import Daemon, init_serverdir, make_wheel, point_pypi_at, serving_fake_pypi

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
NAMES = ["crasha", "crashb", "crashc"]
LATER = "crashd"  # downloaded first after the restart


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakePyPI]:
    def dists(d: Path) -> list[Path]:
        return [make_wheel(d, name, "1.0") for name in [*NAMES, LATER]]

    (tmp_path / "fakepypi").mkdir()
    with serving_fake_pypi(tmp_path / "fakepypi", dists) as upstream:
        yield upstream


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _files(daemon: Daemon, names: list[str]) -> dict[str, tuple[str, str]]:
    """project -> (its wheel's path on the mirror, its sha256)"""
    found = {}
    for name in names:
        status, body = _get(f"{daemon.url}/root/pypi/+simple/{name}/", JSON)
        assert status == 200, body
        (entry,) = [f for f in json.loads(body)["files"] if f["filename"].endswith(".whl")]
        url = urllib.parse.urljoin(f"{daemon.url}/root/pypi/+simple/{name}/", entry["url"])
        found[name] = (urllib.parse.urlsplit(url).path, entry["hashes"]["sha256"])
    return found


def _fetches(fake: FakePyPI, name: str) -> int:
    return sum(1 for r in fake.requests() if r["path"].endswith(".whl") and f"/{name}-" in r["path"])


def _serial(daemon: Daemon) -> int:
    status, body = _get(daemon.url + "/+status", {"Accept": "application/json"})
    assert status == 200
    return int(json.loads(body)["result"]["serial"])


def _download_then_kill(daemon: Daemon, files: dict[str, tuple[str, str]]) -> dict[str, Path]:
    """First downloads of ``files``, kill -9 once they are stored and recorded (before
    the sweep, seconds later); their blob files by project."""
    serial = _serial(daemon)
    while True:  # the pages' writes (answered before they are stored) are over
        time.sleep(0.5)
        if _serial(daemon) == serial:
            break
        serial = _serial(daemon)
    for path, sha256 in files.values():
        status, body = _get(daemon.url + path)
        assert status == 200 and hashlib.sha256(body).hexdigest() == sha256
    blob = {name: daemon.serverdir / "+files" / path.lstrip("/")
            for name, (path, _) in files.items()}
    deadline = time.monotonic() + 10  # (the answer ends before the store: one serial each)
    while time.monotonic() < deadline and (_serial(daemon) < serial + len(files) or not all(
            path.is_file() for path in blob.values())):
        time.sleep(0.01)
    daemon.kill9()
    assert json.loads((daemon.serverdir / ".mirror-cache-sync").read_text())["unsynced_since"]
    assert all(path.is_file() for path in blob.values())
    return blob


def test_kill_9_after_first_downloads_then_damaged_bodies_are_fetched_again(
        tmp_path: Path, fake: FakePyPI) -> None:
    serverdir = tmp_path / "state"
    init_serverdir(serverdir)
    daemon = Daemon(serverdir).start()
    try:
        point_pypi_at(daemon.url, fake.url, "alice", "pw", "dev")
        files = _files(daemon, NAMES)
        blob = _download_then_kill(daemon, files)
        blob["crasha"].unlink()  # what a machine's crash may leave: no body
        data = blob["crashb"].read_bytes()
        blob["crashb"].write_bytes(data[:len(data) // 2])  # a short one

        daemon.start()
        for path, sha256 in files.values():
            status, body = _get(daemon.url + path)
            assert status == 200 and hashlib.sha256(body).hexdigest() == sha256
        assert [_fetches(fake, name) for name in NAMES] == [2, 2, 1]  # the whole one: cached
        assert blob["crashb"].read_bytes() == data
        log = daemon.log.read_text()
        assert "was damaged by a crash" in log and "Traceback" not in log

        later = _files(daemon, [LATER])
        blob.update(_download_then_kill(daemon, later))
        blob[LATER].write_bytes(b"\0" * 100)  # zeros where the body should be
        fake.stop()  # upstream gone: a damaged body is not served, and not a 500
        daemon.start()
        status, _ = _get(daemon.url + later[LATER][0])
        assert status == 502
        status, body = _get(daemon.url + files["crashb"][0])  # whole: served without upstream
        assert status == 200 and hashlib.sha256(body).hexdigest() == files["crashb"][1]
        daemon.stop()  # SIGTERM: a clean end
        state = json.loads((serverdir / ".mirror-cache-sync").read_text())
        assert state["unsynced_since"] is None and len(state["windows"]) == 2
    finally:
        daemon.stop()
