"""The mirror's cached files stored without fsyncs before the answer
(storage/cachesync.py, storage/cachestate.py): the state file and its windows, the
sweep that makes the files durable, and the check of a file a crash may have damaged,
on the real reactor's threads."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from devpi_twisted.storage.cachestate import (
    SLACK, STATE_FILE, CrashWindows, open_state, read_state, write_state,
)
from devpi_twisted.storage.cachesync import MAX_DELAY, QUIET, CacheFiles
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.types import ThreadOffload

KEY = "root/pypi/+f/abc/def0123456789/pkg-1.0-py3-none-any.whl"


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _spooled(tmp_path: Path, data: bytes, name: str = "mirror-x") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


class Syncs:
    """Counts fsync and fdatasync calls (of every thread) while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        fsync, fdatasync = os.fsync, os.fdatasync

        def counted_fsync(fd: int) -> None:
            self.calls.append("fsync")
            fsync(fd)

        def counted_fdatasync(fd: int) -> None:
            self.calls.append("fdatasync")
            fdatasync(fd)

        monkeypatch.setattr(os, "fsync", counted_fsync)
        monkeypatch.setattr(os, "fdatasync", counted_fdatasync)


def _cache(tmp_path: Path, windows: list[tuple[float, float]], clock: Any = None,
           defer: bool = True) -> CacheFiles:
    blobs = FileBlobStore(tmp_path / "+files", _reactor())
    return CacheFiles(blobs, tmp_path / STATE_FILE,
                      CrashWindows(blobs, windows, ThreadOffload(_reactor())), _reactor(),
                      clock or Clock(), defer)


def test_an_unclean_end_becomes_a_window_and_a_clean_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    assert open_state(path, 1000.0) == []  # no file: all was fsynced before
    assert read_state(path) == (None, [])
    write_state(path, 1500.0, [])  # files stored undurably since 1500, then killed
    # a worker, started by a running main process: its windows only, nothing written
    assert open_state(path, 2000.0, writer=False) == []
    assert read_state(path) == (1500.0, [])
    assert open_state(path, 2000.0) == [(1500.0 - SLACK, 2000.0 + SLACK)]
    assert read_state(path) == (None, [(1500.0 - SLACK, 2000.0 + SLACK)])
    assert open_state(path, 3000.0) == [(1500.0 - SLACK, 2000.0 + SLACK)]  # a clean end


def test_a_damaged_state_file_trusts_no_cached_file(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    path.write_text('{"unsynced_since": ')
    (window,) = open_state(path, time.time())
    assert window[0] == 0.0 and window[1] >= time.time()
    assert json.loads(path.read_text())["windows"] == [list(window)]


@pytest_twisted.ensureDeferred
async def test_stored_without_fsync_then_made_durable_by_one_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_state(tmp_path / STATE_FILE, time.time())
    clock = Clock()
    cache = _cache(tmp_path, [], clock)
    syncs = Syncs(monkeypatch)
    first, first_sha = _spooled(tmp_path, b"first" * 1000)
    meta, meta_sha = _spooled(tmp_path, b"Metadata-Version: 2.1\n", "mirror-x.metadata")
    second, second_sha = _spooled(tmp_path, b"second" * 1000, "mirror-y")
    started = time.time()
    await cache.move_in([(KEY, first, first_sha), (KEY + ".metadata", meta, meta_sha)])
    await cache.move_in([("root/pypi/+f/012/3456789abcdef/other-1.0.tar.gz", second, second_sha)])
    # the answer waits for no fsync of the files; the state file said "not durable"
    # (its own two fsyncs) before the first record could be committed
    assert syncs.calls == ["fsync", "fsync"]
    assert cache._blobs.local_path(KEY).read_bytes() == b"first" * 1000  # type: ignore[union-attr]
    assert not first.exists() and not second.exists()
    assert started <= read_state(tmp_path / STATE_FILE)[0] <= time.time()  # type: ignore[operator]

    clock.advance(QUIET)  # one sweep for all three
    assert cache._sweeping is not None
    await cache._sweeping
    assert syncs.calls.count("fdatasync") == 3
    assert cache.stats["cache_sweeps"] == 1 and cache.stats["cache_files_synced"] == 3
    await cache.marked()
    assert read_state(tmp_path / STATE_FILE) == (None, [])  # all durable again
    assert clock.getDelayedCalls() == []  # nothing left: no sweep due

    await cache.close()
    assert read_state(tmp_path / STATE_FILE) == (None, [])


@pytest_twisted.ensureDeferred
async def test_close_syncs_what_is_pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(tmp_path, [])
    source, sha = _spooled(tmp_path, b"body")
    await cache.move_in([(KEY, source, sha)])
    syncs = Syncs(monkeypatch)
    await cache.close()
    assert "fdatasync" in syncs.calls
    assert read_state(tmp_path / STATE_FILE) == (None, [])
    later, later_sha = _spooled(tmp_path, b"later", "mirror-z")  # after close: durable at once
    syncs.calls.clear()
    await cache.move_in([(KEY + "2", later, later_sha)])
    assert "fsync" in syncs.calls


@pytest_twisted.ensureDeferred
async def test_without_deferring_a_store_is_durable_before_it_fires(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache(tmp_path, [], defer=False)
    source, sha = _spooled(tmp_path, b"body")
    syncs = Syncs(monkeypatch)
    await cache.move_in([(KEY, source, sha)])
    assert "fsync" in syncs.calls


@pytest_twisted.ensureDeferred
async def test_a_file_changed_in_a_window_is_hashed_once_and_removed_if_damaged(
        tmp_path: Path) -> None:
    cache = _cache(tmp_path, [])
    whole, whole_sha = _spooled(tmp_path, b"whole" * 100)
    damaged, damaged_sha = _spooled(tmp_path, b"damaged" * 100, "mirror-y")
    await cache.move_in([(KEY, whole, whole_sha), (KEY + ".2", damaged, damaged_sha)])
    assert cache.check(KEY, whole_sha) is None  # no crash: nothing checked
    await cache.close()
    path = cache._blobs.local_path(KEY + ".2")
    assert path is not None
    path.write_bytes(b"damaged" * 50)  # what a crash may leave: short (or zeros)

    blobs = FileBlobStore(tmp_path / "+files", _reactor())
    after = CrashWindows(blobs, [(time.time() - 60, time.time() + 60)], ThreadOffload(_reactor()))
    checking = after.check(KEY, whole_sha)
    assert checking is not None and await checking is True
    assert after.check(KEY, whole_sha) is None  # once per process
    checking = after.check(KEY + ".2", damaged_sha)
    assert checking is not None and await checking is False
    assert not path.exists() and after.refetched == 1
    missing = after.check("root/pypi/+f/no/such-1.0.tar.gz", whole_sha)
    assert missing is not None and await missing is True  # served as missing: fetched again

    path.write_bytes(b"changed before the window")
    outside = CrashWindows(blobs, [(time.time() + 100, time.time() + 200)],
                           ThreadOffload(_reactor()))
    checking = outside.check(KEY + ".2", damaged_sha)
    assert checking is not None and await checking is True  # not changed in a crash


@pytest_twisted.ensureDeferred
async def test_the_sweep_waits_for_a_quiet_second_but_not_longer_than_max_delay(
        tmp_path: Path) -> None:
    clock = Clock()
    cache = _cache(tmp_path, [], clock)
    stored = 0.0
    while stored < MAX_DELAY:  # a store every half second: never quiet
        source, sha = _spooled(tmp_path, b"%f" % stored)
        await cache.move_in([(f"root/pypi/+f/abc/{int(stored * 2)}/x-1.0.tar.gz", source, sha)])
        assert cache._sweeping is None
        clock.advance(QUIET / 2)
        stored += QUIET / 2
    assert cache._sweeping is not None  # due MAX_DELAY after the first
    await cache._sweeping
    assert cache.stats["cache_files_synced"] == int(MAX_DELAY / (QUIET / 2))
    await cache.close()
