"""The replica (spec/ops.md 6.3-6.6): one Service composed of its parts, each in its own
module and each given only what it uses:

- ``ChangelogFollower`` (follower.py): the poll loop importing the primary's changelog;
- ``FileReplicator`` (files.py): the queue of file bodies to fetch, and its workers;
- ``FileFetcher`` (fetch.py): one body from the primary, for the queue and on demand
  (``fetch_now``, ``download``) when a client asks for a file whose body is not here;
- ``WriteRelay`` (relay.py): writes and mirror page refreshes sent to the primary,
  answered once their serial arrived here;
- ``ReplicaStatus`` (status.py): the view of all of them in ``/+status``.

``Replica`` starts and stops the follower and the file queue and offers the web layer
the methods it uses; ``build_replica`` makes the parts from the server's collaborators.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from twisted.application.internet import backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from devpi_twisted.replication.client import PrimaryClient
from devpi_twisted.replication.fetch import FileFetcher, FileFetchFailed, FileGone
from devpi_twisted.replication.files import FILE_BACKOFF, FileReplicator
from devpi_twisted.replication.devpi_follow import DevpiSigner, Follower, TranslatorFor
from devpi_twisted.replication.follower import POLL_BACKOFF, ChangelogFollower
from devpi_twisted.replication.relay import WriteRelay
from devpi_twisted.replication.status import ReplicaStatus
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import Storage
from devpi_twisted.storage.types import Offload

__all__ = ["FILE_BACKOFF", "POLL_BACKOFF", "FileFetchFailed", "FileGone", "Replica",
           "build_replica"]


class Replica(Service):
    """The replication Service: follower and file queue run between ``startService``
    and ``stopService``; fetcher, relay and status serve the web layer meanwhile."""

    def __init__(self, follower: ChangelogFollower, files: FileReplicator,
                 fetcher: FileFetcher, relay: WriteRelay, status: ReplicaStatus) -> None:
        self.follower = follower
        self.files = files
        self.fetcher = fetcher
        self.write_relay = relay
        self.status_view = status

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.files.start()  # the restart's scan first, as the follower queues more
        self.follower.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        pending = self.files.stop() + [self.follower.stop()]
        return defer.DeferredList(pending, consumeErrors=True).addCallback(lambda _: None)

    # -- what the web layer uses ----------------------------------------------------------

    @property
    def primary_serial(self) -> int | None:
        return self.follower.primary_serial

    @property
    def stopped_reason(self) -> str | None:
        return self.follower.stopped_reason

    def status(self) -> dict[str, Any]:
        """The replica's part of ``/+status`` (api.md 3.4), plus its lag and file queue."""
        return self.status_view.status()

    async def fetch_now(self, relpath: str) -> bool:
        return await self.fetcher.fetch_now(relpath)

    async def download(self, relpath: str) -> tuple[Path, int, str]:
        return await self.fetcher.download(relpath)

    async def mirror_page(self, name: str, project: str) -> str:
        return await self.write_relay.mirror_page(name, project)

    async def relay(self, method: str, path: str, headers: Mapping[str, list[str]],
                    body: IO[bytes] | None,
                    timeout: float) -> tuple[int, bytes, list[tuple[str, str]], bytes]:
        return await self.write_relay.relay(method, path, headers, body, timeout)


def build_replica(storage: Storage, blobs: BlobStore, client: PrimaryClient,
                  clock: IReactorTime, staging: Path, offload: Offload,
                  remember_primary: Callable[[str], None], file_threads: int = 5,
                  request_timeout: float = 5.0, skip_indexes: tuple[str, ...] = (),
                  jitter: Callable[[], float] = random.random,
                  skip_serial: int | None = None,
                  translator_for: TranslatorFor | None = None,
                  devpi_signer: DevpiSigner | None = None) -> Replica:
    """The replica's parts wired together. ``jitter``: the randomness of the back-offs
    (poll and file retries); ``skip_indexes``: user/index names, index types or "all"
    whose files are fetched only on demand; ``skip_serial``: a devpi primary's serial
    left out, ``translator_for`` its changes' translators and ``devpi_signer`` the
    replica's token signer for it (devpi_follow.py)."""
    fetcher = FileFetcher(storage, blobs, client, staging, offload, request_timeout)
    files = FileReplicator(clock, storage, blobs, fetcher, file_threads,
                           backoffPolicy(*FILE_BACKOFF, jitter=jitter), skip_indexes)
    follower = Follower(clock, storage, client, remember_primary, files.imported,
                        backoffPolicy(*POLL_BACKOFF, jitter=jitter), files.hold,
                        skip_serial=skip_serial, translator_for=translator_for,
                        devpi_signer=devpi_signer)
    relay = WriteRelay(clock, storage, client, request_timeout)
    status = ReplicaStatus(clock, storage, client, follower, files, fetcher)
    return Replica(follower, files, fetcher, relay, status)
