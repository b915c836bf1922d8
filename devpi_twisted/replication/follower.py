"""The replica's changelog follower (spec/ops.md 6.3, 6.4): long-polls the primary's
changelog and imports every entry in serial order under the primary's serial, a reply's
entries in batched transactions (apply.py); learns the primary's uuid once and stops for good when another
one answers (ops.md 6.1); backs off on the clock while the primary fails. It knows
nothing of file bodies: each imported entry is handed to ``imported``."""

from __future__ import annotations

from collections.abc import Callable

import treq
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IResponse

from devpi_twisted.replication import protocol
from devpi_twisted.replication.apply import APPLY_BATCH, apply_changes
from devpi_twisted.replication.client import PrimaryClient, PrimaryUnreachable, header, serial_of
from devpi_twisted.storage.interface import Change, Storage, StorageError

POLL_TIMEOUT = protocol.LONG_POLL + 7.5
# back-off of polls while the primary is down or failing: (initial, maximum s, factor)
POLL_BACKOFF = (0.5, 5.0, 1.5)


class ChangelogFollower:
    """The poll loop, one task from ``start`` until ``stop``; what it learned of the
    primary (serial, contact, sync times, why it stopped) for the status view."""

    log = Logger()
    accept = protocol.CHANGES_TYPE  # what the changelog is asked for in

    def __init__(self, clock: IReactorTime, storage: Storage, client: PrimaryClient,
                 remember_primary: Callable[[str], None], imported: Callable[[Change], None],
                 delay: Callable[[int], float],
                 behind: Callable[[bool], None] = lambda far: None) -> None:
        """``delay(failures)``: seconds to wait before the next poll after a failure;
        ``imported(change)``: called after each entry is committed here; ``behind(far)``
        after each reply: whether this replica is more than a batch (APPLY_BATCH serials)
        behind the primary."""
        self._clock = clock
        self._storage = storage
        self._client = client
        self._remember_primary = remember_primary
        self._imported = imported
        self._delay = delay
        self._behind = behind
        self._task: Deferred[None] | None = None
        self.running = False
        self.started_at: float | None = None
        self.primary_serial: int | None = None
        self.primary_serial_at: float | None = None
        self.last_contact: float | None = None
        self.updated_at: float | None = None
        self.metadata_in_sync_at: float | None = None
        self.stopped_reason: str | None = None
        self.last_error: str | None = None  # why the last poll failed; None after a good one

    def start(self) -> None:
        self.running = True
        self.started_at = self._clock.seconds()
        self._task = Deferred.fromCoroutine(self._follow())
        self._task.addErrback(self._ended)

    def _ended(self, failure: Failure) -> None:
        if not isinstance(failure.value, CancelledError):
            self.log.failure("The replication loop ended", failure)

    def stop(self) -> Deferred[None]:
        """Cancels the loop; fires once it ended."""
        self.running = False
        task, self._task = self._task, None
        if task is None:
            return succeed(None)
        task.cancel()
        return task

    async def _follow(self) -> None:
        first, failures = True, 0
        while self.running:
            start = self._storage.serial + 1
            path = f"/+changelog/{start}-" + ("?initial_fetch" if first else "")
            try:
                ok = await self._poll(path, start)
                first = False
            except (PrimaryUnreachable, protocol.MalformedChanges, StorageError) as e:
                self.log.warn("Replication from {primary} failed, retrying: {error}",
                              primary=self._client.url, error=str(e))
                self.last_error = str(e)
                ok = False
            except CancelledError:
                raise
            except Exception:  # a bug: logged with its traceback, and the loop goes on
                self.log.failure("Replication from {primary} failed", primary=self._client.url)
                ok = False
            if not ok or self.stopped_reason is not None:
                self._behind(False)  # (files are never held by a follow that fails or ended)
            if self.stopped_reason is not None:
                return
            if ok:
                failures, self.last_error = 0, None
                continue
            await deferLater(self._clock, self._delay(failures), lambda: None)
            failures += 1

    async def _poll(self, path: str, start: int) -> bool:
        response = await self._client.get(path, POLL_TIMEOUT, Accept=self.accept)
        try:
            body = await treq.content(response)
        except CancelledError:
            raise
        except Exception as e:
            raise PrimaryUnreachable(f"reading the changelog broke off: {e}") from None
        if response.code not in (200, 202):
            text = " ".join(body[:200].decode("utf-8", "replace").split())
            self.log.warn("The primary answered {code} to {path}: {body}", code=response.code,
                          path=path, body=text)
            self.last_error = f"the primary answered {response.code} to {path}: {text}" + (
                " (the replica's key does not match the primary's: check --secretfile and the "
                "--argon2-* costs)" if response.code == 403 else "")
            named = header(response, protocol.PRIMARY_UUID) or header(response, protocol.MASTER_UUID)
            if self._client.primary_uuid and named and named != self._client.primary_uuid:
                self._check_primary(response)  # another primary answers there: stop
            return False
        if not self._check_primary(response):
            return False
        self.last_contact = self._clock.seconds()
        serial = serial_of(response)
        if serial is not None and serial != self.primary_serial:
            self.primary_serial, self.primary_serial_at = serial, self._clock.seconds()
        if response.code == 200:
            await self._apply(body, start)
        if self.primary_serial is not None and self._storage.serial >= self.primary_serial:
            self.metadata_in_sync_at = self._clock.seconds()
        self._behind(self.primary_serial is not None
                     and self.primary_serial - self._storage.serial > APPLY_BATCH)
        return True

    async def _apply(self, body: bytes, start: int) -> None:
        """Import the entries of a changelog answer, from serial ``start`` on, in
        batched transactions (apply.py)."""
        await apply_changes(self._storage, protocol.decode_changes(body, start),
                            self._imported, self._committed)

    async def _import(self, change: Change) -> None:
        """One change in a transaction of its own (a devpi primary's serial, translated
        against what the serials before it wrote)."""
        await apply_changes(self._storage, [change], self._imported, self._committed)

    def _committed(self) -> None:
        self.updated_at = self._clock.seconds()

    def _check_primary(self, response: IResponse) -> bool:
        """The primary's uuid: learned once (and kept), then must never change (ops.md 6.1)."""
        primary = header(response, protocol.PRIMARY_UUID)
        master = header(response, protocol.MASTER_UUID)
        if (primary and master and primary != master) or not (primary or master):
            self.log.error("The primary's reply names no uuid, or two: {primary} {master}",
                           primary=primary, master=master)
            return False
        uuid = primary or master or ""
        if not self._client.primary_uuid:
            self._client.primary_uuid = uuid
            self._remember_primary(uuid)
        elif uuid != self._client.primary_uuid:
            self.stopped_reason = (f"the primary's uuid changed from {self._client.primary_uuid} "
                                   f"to {uuid}; replication stopped (this replica will not mix "
                                   "two histories)")
            self.log.error("{reason}", reason=self.stopped_reason)
            return False
        return True
