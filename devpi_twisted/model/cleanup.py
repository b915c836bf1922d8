"""Removing mirrored release files nobody downloads (``devpi-twisted cleanup``).

Only release files (``+f``/``+e`` keys) of mirror indexes are candidates, never an
upload to a stage, nor other bodies a mirror keeps (its project name list).
Each file's last download is kept by the blob store (``touch``, at most once a
day; see storage/blobs.py). Removal marks the file records deleted first (one
transaction per project, so every process and replica sees it through the
changelog), then deletes the bodies: a download arriving in between finds a
deleted record of a mirror and fetches the file from upstream again, exactly as
after ``DELETE`` of a mirror file. Extracted ``.metadata`` files are kept: they
are small and stay right for their file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage

DAY = 86400.0
METADATA_SUFFIX = ".metadata"
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@attrs.frozen
class StoredFile:
    key: str
    size: int
    accessed: float


@attrs.frozen
class CleanupReport:
    removed: tuple[StoredFile, ...]
    kept: int  # bytes of mirror files left
    dry_run: bool = False

    @property
    def removed_bytes(self) -> int:
        return sum(f.size for f in self.removed)


def parse_size(text: str) -> int:
    """``123``, ``500M``, ``10G``, ``1.5T`` (binary units) -> bytes; InvalidInput if not."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    try:
        number = float(value[:-1] if unit else value)
    except ValueError:
        raise InvalidInput(f"--max-size: {text!r} is not a size like 500M or 10G") from None
    if number < 0:
        raise InvalidInput("--max-size: must not be negative")
    return int(number * _UNITS[unit])


def choose(files: Iterable[StoredFile], now: float, max_age_days: float | None,
           max_bytes: int | None) -> list[StoredFile]:
    """The files to remove: those not downloaded for ``max_age_days``, then, least
    recently downloaded first, as many more as it takes to keep ``max_bytes``."""
    keep = sorted((f for f in files if not f.key.endswith(METADATA_SUFFIX)),
                  key=lambda f: (f.accessed, f.key))
    removed: list[StoredFile] = []
    if max_age_days is not None:
        limit = now - max_age_days * DAY
        removed = [f for f in keep if f.accessed < limit]
        keep = [f for f in keep if f.accessed >= limit]
    if max_bytes is not None:
        total = sum(f.size for f in keep)
        while keep and total > max_bytes:
            oldest = keep.pop(0)
            total -= oldest.size
            removed.append(oldest)
    return removed


class MirrorCleanup:
    """The use case: storage and blob store are given (any adapter, any store)."""

    def __init__(self, storage: Storage, blobs: BlobStore, now: Callable[[], float]) -> None:
        self._storage = storage
        self._blobs = blobs
        self._now = now

    async def mirror_files(self) -> list[tuple[str, str, StoredFile]]:
        """(user, index, file) of every stored file of every mirror index."""
        found = []
        for record in await self._storage.list_indexes():
            if not record.config.is_mirror:
                continue
            for usage in await self._blobs.usage(f"{record.user}/{record.index}/"):
                if usage.key.split("/", 3)[2:3] not in (["+f"], ["+e"]):
                    continue  # not a release file (e.g. the mirror's project name list)
                found.append((record.user, record.index,
                              StoredFile(usage.key, usage.size, usage.accessed)))
        return found

    async def run(self, max_age_days: float | None, max_bytes: int | None,
                  dry_run: bool = False) -> CleanupReport:
        if max_age_days is None and max_bytes is None:
            raise InvalidInput("give --days, --max-size or both")
        if max_age_days is not None and max_age_days < 0:
            raise InvalidInput("--days must not be negative")
        stored = await self.mirror_files()
        where = {f.key: (user, index) for user, index, f in stored}
        victims = choose((f for _, _, f in stored), self._now(), max_age_days, max_bytes)
        kept = sum(f.size for _, _, f in stored if not f.key.endswith(METADATA_SUFFIX)) - \
            sum(f.size for f in victims)
        if not dry_run:
            await self._remove(victims, where)
        return CleanupReport(tuple(victims), kept, dry_run)

    async def _remove(self, victims: Sequence[StoredFile],
                      where: dict[str, tuple[str, str]]) -> None:
        by_project: dict[tuple[str, str, str], dict[str, Any]] = {}
        for victim in victims:
            record = await self._storage.get_file(victim.key)
            if record is not None and not record.deleted:
                user, index = where[victim.key]
                by_project.setdefault((user, index, record.project), {})[victim.key] = {}
        for (user, index, project), files in by_project.items():
            await self._storage.write_mirror_files(user, index, project, files)
        for victim in victims:  # after the records: a download meanwhile fetches anew
            await self._blobs.delete(victim.key)
