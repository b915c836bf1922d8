"""The replica's part of ``/+status`` (spec/api.md 3.4): what the follower learned of
the primary, the file queue's state and the fetcher's count, with the lag behind the
primary, as one view over those parts (it holds no state of its own)."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.replication.fetch import FileFetcher
from devpi_twisted.replication.files import FileReplicator
from devpi_twisted.replication.follower import ChangelogFollower
from devpi_twisted.storage.interface import Storage


class ReplicaStatus:
    def __init__(self, clock: IReactorTime, storage: Storage, client: PrimaryClient,
                 follower: ChangelogFollower, files: FileReplicator,
                 fetcher: FileFetcher) -> None:
        self._clock = clock
        self._storage = storage
        self._client = client
        self._follower = follower
        self._files = files
        self._fetcher = fetcher

    def status(self) -> dict[str, Any]:
        """The status fields (devpi's names; model/devpi_api.status_view adds devpi 6's
        ``master-*`` aliases), plus the replica's lag and file queue."""
        now = self._clock.seconds()
        follower, files = self._follower, self._files
        serial = self._storage.serial
        primary_serial = follower.primary_serial
        behind = None if primary_serial is None else max(0, primary_serial - serial)
        if behind == 0:
            lag_seconds = 0.0
        else:  # since it was last in sync (or started)
            lag_seconds = now - (follower.metadata_in_sync_at or follower.started_at or now)
        found: dict[str, Any] = {
            "primary-url": self._client.url, "primary-uuid": self._client.primary_uuid,
            "primary-serial": primary_serial,
            "primary-serial-timestamp": follower.primary_serial_at,
            "primary-contacted-at": follower.last_contact,
            "update-from-primary-at": follower.updated_at,
        }
        found.update({
            "replica-started-at": follower.started_at,
            "replica-files-in-sync-at": files.files_in_sync_at,
            "replica-init-queue-finished-at": files.init_queue_finished_at,
            "replica-metadata-in-sync-at": follower.metadata_in_sync_at,
            "replica-in-sync-at": _latest(follower.metadata_in_sync_at, files.files_in_sync_at,
                                          files.init_queue_finished_at),
            "replication-errors": dict(files.errors),
            "replication-lag": {"serials": behind, "seconds": lag_seconds},
            "replica-file-queue": files.file_queue,
            "replica-files-fetched": self._fetcher.files_fetched,
            "replication-stopped": follower.stopped_reason,
            "replication-last-error": follower.last_error,
            # who the primary is: devpi-twisted, or devpi-server VERSION (devpi_follow.py)
            "replica-primary-kind": getattr(follower, "primary_kind", None),
        })
        return found


def _latest(*stamps: float | None) -> float | None:
    """The last of the times, None while one of them is missing."""
    known = [stamp for stamp in stamps if stamp is not None]
    return max(known) if len(known) == len(stamps) else None
