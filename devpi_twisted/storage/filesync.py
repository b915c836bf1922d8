"""The blocking writes of the file blob store (fileblobs.py runs them on a thread):
bodies put (copied while hashed) or linked into place under a temporary name and
renamed, spooled files moved in (linked, or written from bytes) with as few journal
commits as the file system needs, directories made and fsynced.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from devpi_twisted.storage.blobs import CHUNK_SIZE, TEMP_PREFIX, BlobHashMismatch


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path, sync: bool = True) -> list[Path]:
    """Create ``directory`` and its missing parents, each made durable by an fsync of the
    directory holding it (unless ``sync`` is false: then the caller fsyncs the
    directories returned, those that got a new entry)."""
    missing = []
    current = directory
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    changed = []
    for made in reversed(missing):
        try:
            made.mkdir()
        except FileExistsError:
            continue  # made by a concurrent put
        if sync:
            fsync_dir(made.parent)
        changed.append(made.parent)
    return changed


def put_sync(target: Path, key: str, source: Path, sha256: str, sync: bool = True) -> int:
    """Copy ``source`` to a temporary file next to ``target`` while hashing it, fsync,
    check the hash, rename into place, fsync the directory (no fsyncs if not ``sync``)."""
    make_dirs(target.parent, sync)
    temporary = target.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(temporary, "xb") as dst:
            os.fchmod(dst.fileno(), 0o644)  # nginx reads what X-Accel-Redirect names
            while chunk := src.read(CHUNK_SIZE):
                hasher.update(chunk)
                dst.write(chunk)
                size += len(chunk)
            dst.flush()
            if sync:
                os.fsync(dst.fileno())
        actual = hasher.hexdigest()
        if actual != sha256:
            raise BlobHashMismatch(key, sha256, actual)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    into_place(temporary, target, sync)
    return size


def into_place(temporary: Path, target: Path, sync: bool) -> None:
    """Rename a finished temporary file over ``target`` (removed if that fails), then
    make the rename durable with an fsync of the directory."""
    try:
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(target.parent)


def link_sync(target: Path, key: str, source: Path, sha256: str, sync: bool = True) -> int:
    """Check ``source``'s hash, then hard-link it into place under a temporary name and
    rename; falls back to ``put_sync`` where links are impossible (other file system)."""
    hasher = hashlib.sha256()
    size = 0
    with open(source, "rb") as src:
        while chunk := src.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
    actual = hasher.hexdigest()
    if actual != sha256:
        raise BlobHashMismatch(key, sha256, actual)
    make_dirs(target.parent, sync)
    temporary = target.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    try:
        os.link(source, temporary)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        return put_sync(target, key, source, sha256, sync)
    into_place(temporary, target, sync)
    return size


def put_all_sync(jobs: Sequence[tuple[Path, str, Path, str]],
                  put: Callable[[Path, str, Path, str, bool], int], sync: bool) -> None:
    for target, key, source, sha256 in jobs:
        put(target, key, source, sha256, sync)


def move_all_sync(moves: Sequence[tuple[Path, str, Path | bytes, str]]) -> None:
    """Move spooled files into place, all durable on return, with as few journal commits
    as the file system needs: ``place_all_sync``, then the fsyncs it hands back."""
    place_all_sync(moves)()


def place_all_sync(moves: Sequence[tuple[Path, str, Path | bytes, str]]) -> Callable[[], None]:
    """Move spooled files into place; returns what makes them durable (the fsyncs), for
    the caller to run once, at once or with those of other moves (an upload's, before a
    group of database writes commits: ``Storage.update_release``). Each source's mode is
    set, the missing directories are made and each source is hard-linked in under its key
    where nothing is stored yet (a link, unlike a rename, never replaces: only one of
    concurrent puts of a key gets there this way). The fsyncs are of the files (on ext4
    the first commits the new entries too), then of every directory that got one, once.
    A source given as bytes is written straight to a new file under its key (created
    exclusively, so likewise never replacing one). A key already stored gets its new
    body the careful way, durable at once: fsynced first, then renamed over it (copied
    across file systems, as put_sync does). Nothing refers to a key before the caller
    commits a record after the fsyncs, so a crash in between leaves at most an
    unreferenced (possibly partly written) file, which a later put replaces the careful
    way."""
    opened: list[int] = []
    placed: list[Path] = []
    directories: dict[Path, None] = {}
    try:
        for _, _, source, _ in moves:
            if isinstance(source, bytes):
                opened.append(-1)
                continue
            opened.append(fd := os.open(source, os.O_RDONLY | os.O_CLOEXEC))
            os.fchmod(fd, 0o644)  # nginx reads what X-Accel-Redirect names
        for n, (target, key, source, sha256) in enumerate(moves):
            if target.parent not in directories:
                directories.update(dict.fromkeys(make_dirs(target.parent, sync=False)))
            if isinstance(source, bytes):
                try:
                    os.close(write_new(target, source))
                except FileExistsError:
                    write_over(target, source)
                    continue
            else:
                try:
                    os.link(source, target)
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.EXDEV, errno.EPERM, errno.EMLINK,
                                       errno.ENOTSUP):
                        raise
                    os.fsync(opened[n])  # a stored key (or no links here): whole before it shows
                    rename_over(target, key, source, sha256)
                    continue
                os.unlink(source)
            placed.append(target)
            directories[target.parent] = None
    finally:
        for fd in opened:
            if fd >= 0:
                os.close(fd)

    def durable() -> None:
        for path in placed:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            fsync_dir(directory)
    return durable


def write_new(target: Path, data: bytes) -> int:
    """A new file ``target`` holding ``data`` (FileExistsError if there is one); its
    descriptor, open, not yet fsynced. Removed again if writing fails."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # (whatever the umask)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(target)
        raise
    return fd


def write_over(target: Path, data: bytes) -> None:
    """``data`` replacing the file ``target``: written to a temporary file beside it,
    fsynced, renamed over it, the directory fsynced."""
    temporary = target.parent / f"{TEMP_PREFIX}{os.urandom(8).hex()}"
    fd = write_new(temporary, data)
    try:
        os.fsync(fd)
    except BaseException:
        os.unlink(temporary)
        raise
    finally:
        os.close(fd)
    into_place(temporary, target, True)


def rename_over(target: Path, key: str, source: Path, sha256: str) -> None:
    """Rename a (fsynced) source over ``target`` and fsync its directory; a copy where a
    rename cannot go (another file system)."""
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        put_sync(target, key, source, sha256)
        return
    fsync_dir(target.parent)
