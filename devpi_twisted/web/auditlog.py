"""The server's Auditor (model/audit.py): each event becomes a log line and a row of the
audit table; a Service that keeps the table bounded.

``record`` never raises and never waits: the row is appended in the background (the
Deferred is kept until it fires and awaited at shutdown, before the storage closes);
a failure to store is logged. An upload's row is not appended here: ``entry`` makes it
for the upload's own transaction and ``written`` logs its line. With a ``batch`` delay (the server's: BATCH_SECONDS) rows
wait that long and go in together, in one transaction (which, on sqlite, is mostly the
next upload's own: its commit takes what is queued): a client uploading one file after
another pays for its audit rows once per batch, not once per upload. Failed logins pass the FailureGate first (a flood
becomes a summary per address and minute). The service, on the reactor's clock,
hands the gate's summaries on every FLOOD_WINDOW and, where ``prune`` is set (the
main process; workers and replicas with their own database each prune theirs),
deletes rows older than the retention and beyond MAX_ROWS every PRUNE_SECONDS.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from devpi_twisted.model.audit import FLOOD_WINDOW, LOGIN_FAILED, AuditEvent, FailureGate
from devpi_twisted.storage.interface import AuditEntry, Storage

MAX_ROWS = 1_000_000  # the newest rows kept whatever their age
BATCH_SECONDS = 0.05  # how long the server lets audit rows gather before storing them
PRUNE_SECONDS = 3600.0
DAY = 86400.0


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AuditLog(Service):
    """Records audit events through ``storage``; ``retention_days``: how long rows stay."""

    log = Logger(namespace="devpi_twisted.audit")

    def __init__(self, storage: Storage, clock: IReactorTime, retention_days: int,
                 prune: bool = True, process: str | None = None, batch: float = 0.0) -> None:
        self._storage = storage
        self._clock = clock
        self._retention = retention_days * DAY
        self._prune = prune
        self._process = process if process is not None else this_process()
        self._gate = FailureGate()
        self._writes: set[Deferred[None]] = set()
        self._batch = batch
        self._pending: list[AuditEntry] = []
        self._pending_call: IDelayedCall | None = None
        self._last_prune = -PRUNE_SECONDS
        self._tick = LoopingCall(self._tick_once)
        self._tick.clock = clock
        self._first: IDelayedCall | None = None

    def record(self, event: AuditEvent) -> None:
        try:
            now = self._clock.seconds()
            if event.kind == LOGIN_FAILED:
                admitted, summaries = self._gate.admit(event.client, event.actor, now)
                for summary in summaries:
                    self._store(summary, now)
                if not admitted:
                    return
            self._store(event, now)
        except Exception:
            self.log.failure("Recording an audit event failed")

    def entry(self, event: AuditEvent) -> AuditEntry:
        """The row of ``event``, stamped now, for its write to store (``written`` logs it)."""
        return self._entry(event, self._clock.seconds())

    def written(self, event: AuditEvent) -> None:
        try:
            self._log_line(event)
        except Exception:
            self.log.failure("Logging an audit event failed")

    def _entry(self, event: AuditEvent, now: float) -> AuditEntry:
        return AuditEntry(kind=event.kind, actor=event.actor, client=event.client,
                          index=event.index, details=event.details, at=now,
                          process=self._process)

    def _log_line(self, event: AuditEvent) -> None:
        """``audit: KIND by USER from CLIENT[ on INDEX]: DETAILS``, composed here: the
        observer's formatting then finds no fields to fill (braces doubled), which costs
        a fraction of filling five; the parts stay fields of the event (JSON log lines)."""
        details = json.dumps(dict(event.details), sort_keys=True, separators=(",", ":"))
        user, client = event.actor or "anonymous", event.client or "-"
        where = f" on {event.index}" if event.index else ""
        line = f"audit: {event.kind} by {user} from {client}{where}: {details}"
        self.log.info(line.replace("{", "{{").replace("}", "}}"), audit_kind=event.kind,
                      audit_user=user, audit_client=client, audit_index=event.index,
                      audit_where=where, audit_details=details)

    def _store(self, event: AuditEvent, now: float) -> None:
        self._log_line(event)
        entry = self._entry(event, now)
        if self._batch <= 0:
            self._append([entry])
            return
        self._pending.append(entry)
        if self._pending_call is None:
            self._pending_call = self._clock.callLater(self._batch, self._store_pending)

    def _store_pending(self) -> None:
        self._pending_call = None
        entries, self._pending = self._pending, []
        if entries:
            self._append(entries)

    def _append(self, entries: list[AuditEntry]) -> None:
        done = self._storage.append_audit(entries)
        self._writes.add(done)
        done.addErrback(self._failed, ", ".join(sorted({e.kind for e in entries})))
        done.addBoth(self._settled, done)

    def _failed(self, failure: Failure, kind: str) -> None:
        self.log.error("Storing an audit event ({kind}) failed: {error}", kind=kind,
                       error=failure.getErrorMessage())

    def _settled(self, result: Any, done: Deferred[None]) -> None:
        self._writes.discard(done)

    def flush(self) -> None:
        """Record the flood summaries of a window that has ended."""
        now = self._clock.seconds()
        for summary in self._gate.due(now):
            self._store(summary, now)

    async def prune_now(self) -> int:
        """Delete rows past the retention and beyond MAX_ROWS; how many went."""
        now = self._clock.seconds()
        self._last_prune = now
        gone = await self._storage.prune_audit(now - self._retention, MAX_ROWS)
        if gone:
            self.log.info("audit: pruned {count} events", count=gone)
        return gone

    async def _tick_async(self) -> None:
        try:
            self.flush()
            if self._prune and self._clock.seconds() - self._last_prune >= PRUNE_SECONDS:
                await self.prune_now()
        except Exception as e:  # a LoopingCall stops at its first failure
            self.log.warn("Audit upkeep failed: {error}", error=str(e) or type(e).__name__)

    def _tick_once(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._tick_async())

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        # the first upkeep (a prune: a write) once the reactor runs, so that a start failing
        # before then (a socket that cannot be bound) leaves no write in flight to wait for
        self._first = self._clock.callLater(0, self._start_ticking)

    def _start_ticking(self) -> None:
        self._tick.start(FLOOD_WINDOW, now=True).addErrback(
            lambda f: self.log.failure("Audit upkeep stopped", f))

    def stopService(self) -> Deferred[Any]:
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        if self._first is not None and self._first.active():
            self._first.cancel()
        if self._tick.running:
            self._tick.stop()
        self.flush()
        if self._pending_call is not None and self._pending_call.active():
            self._pending_call.cancel()
        self._store_pending()
        return DeferredList(list(self._writes))
