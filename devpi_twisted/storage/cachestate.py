"""The state of the mirror's cached files after a crash (storage/cachesync.py stores
them without fsyncs before the answer).

The state file (``STATE_FILE`` in the server directory, replaced atomically and
fsynced) says since when cached files may not be durable (None: all are), and lists
the *windows* of earlier crashes. The main process that finds it saying "not durable"
at start (the last one did not end cleanly) keeps that span, up to its own start, as
a new window. A cached file whose inode changed (its ctime: the link into place)
inside a window may be missing, short or wrong: ``CrashWindows.check`` hashes it on
its first use in each process, before it is served, and removes it if its bytes are
not its record's (web/files.py then fetches it again from upstream, as any file not
cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from devpi_twisted.storage.blobs import CHUNK_SIZE, TEMP_PREFIX
from devpi_twisted.storage.fileblobs import FileBlobStore
from devpi_twisted.storage.filesync import fsync_dir
from devpi_twisted.storage.types import Offload

STATE_FILE = ".mirror-cache-sync"
# ctime is the kernel's coarse clock, and a window's edges are taken around the work
SLACK = 2.0
MAX_STATE = 1 << 16  # bytes of the state file read; more is a damaged file
_log = Logger()

Window = tuple[float, float]


# -- the state file (blocking: at start, or on a thread) --------------------------------

def read_state(path: Path) -> tuple[float | None, list[Window]]:
    """(since when files may not be durable, None: all are; the windows of earlier
    crashes). No file: a server directory whose files were all fsynced. A damaged file
    trusts nothing: one window over all time."""
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(MAX_STATE + 1)[:MAX_STATE])
        since = data["unsynced_since"]
        windows = [(float(a), float(b)) for a, b in data["windows"]]
        if since is not None:
            since = float(since)
    except FileNotFoundError:
        return None, []
    except (OSError, ValueError, KeyError, TypeError):
        return None, [(0.0, time.time() + SLACK)]
    return since, windows


def write_state(path: Path, since: float | None, windows: Sequence[Window]) -> None:
    """Replace the state file durably (written beside it, fsynced, renamed, the
    directory fsynced)."""
    temporary = path.with_name(f"{TEMP_PREFIX}{path.name}")
    with open(temporary, "w", encoding="ascii") as file:
        json.dump({"unsynced_since": since, "windows": [list(w) for w in windows]}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def open_state(path: Path, now: float, writer: bool = True) -> list[Window]:
    """At start, before serving: the windows in which cached files may have been left
    damaged. ``writer`` (the main process) turns an unclean end of the last one into a
    new window, and records that no file is undurable now; a worker only reads the
    windows (its main process, started first, wrote them)."""
    since, windows = read_state(path)
    if writer:
        if since is not None:
            windows.append((since - SLACK, now + SLACK))
        write_state(path, None, windows)
    return windows


def intact_sync(path: Path, sha256: str, windows: Sequence[Window]) -> bool:
    """False if the file at ``path`` changed inside a window and its bytes do not have
    ``sha256``; True otherwise (a missing file too: the caller finds it missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return True
    try:
        ctime = os.fstat(fd).st_ctime
        if not any(start <= ctime <= end for start, end in windows):
            return True
        hasher = hashlib.sha256()
        while chunk := os.read(fd, CHUNK_SIZE):
            hasher.update(chunk)
    finally:
        os.close(fd)
    return hasher.hexdigest() == sha256.lower()


class CrashWindows:
    """The check of cached files in ``blobs`` changed in a crash window, once per key
    and process, hashing on ``offload``."""

    def __init__(self, blobs: FileBlobStore, windows: Sequence[Window],
                 offload: Offload) -> None:
        self._blobs = blobs
        self.windows = list(windows)
        self._offload = offload
        self._verified: set[str] = set()
        self.refetched = 0

    def check(self, key: str, sha256: str) -> Deferred[bool] | None:
        """None when the cached file under ``key`` needs no check (no crash window, or
        checked already in this process); else a Deferred firing False when its body
        was damaged (it is removed then: fetch it again), True when it is whole."""
        if not self.windows or not sha256 or key in self._verified:
            return None
        path = self._blobs.local_path(key)
        assert path is not None
        return Deferred.fromCoroutine(self._check(key, path, sha256))

    async def _check(self, key: str, path: Path, sha256: str) -> bool:
        if await self._offload(intact_sync, path, sha256, self.windows):
            self._verified.add(key)
            return True
        _log.warn("The cached {key} was damaged by a crash; fetching it again", key=key)
        self.refetched += 1
        await self._blobs.delete(key)
        return False
