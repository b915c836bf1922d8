"""The webhook delivery service: a Service of the primary's (or standalone server's)
main process that sends the outbox rows the writes left (storage/hookplans.py).

Each round asks storage for every hook's oldest pending delivery that is due (a hook's
next event waits for the one before: strict order per hook), leaving out hooks with a
delivery in flight, at most ``concurrency`` in flight in all. A delivery is a POST of
the stored JSON body, signed (model/hooks.py), with ``timeout`` seconds for the whole
attempt; a 2xx answer marks it delivered, anything else schedules a retry with
exponential back-off and jitter, until a day has passed: then it is marked failed and
the hook's next event goes. Its state lives in the database only, so a restart (or
``kill -9``) sends again what was not marked delivered: at least once.

Rounds run when the serial moves (every event is written with a change, which this
process sees through its own writes or PostgreSQL's NOTIFY) and at least every
``poll`` seconds (retries come due), checked every ``tick`` seconds in memory.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs
import treq
from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from devpi_twisted.model import hooks
from devpi_twisted.storage.hooktypes import DELIVERED, FAILED, PENDING, Attempt, Delivery, HookStorage
from devpi_twisted.storage.interface import StorageUnavailable

USER_AGENT = b"devpi-twisted-webhooks"
KEEP_DONE, PRUNE_EVERY = 7 * 86400.0, 3600.0  # deliveries done are listed for a week


@attrs.define
class DeliveryStats:
    """Counters for /+metrics since start: attempts answered 2xx, attempts failed,
    deliveries given up (marked failed); ``queue``: pending deliveries at the last look."""

    delivered: int = 0
    attempts_failed: int = 0
    given_up: int = 0
    in_flight: int = 0


class HookDelivery(Service):
    log = Logger()

    def __init__(self, storage: HookStorage, http: HTTPClient, clock: IReactorTime,
                 serial: Callable[[], int], *, timeout: float = 10.0, concurrency: int = 8,
                 poll: float = 1.0, tick: float = 0.1,
                 jitter: Callable[[], float] = random.random) -> None:
        self._storage = storage
        self._http = http
        self._clock = clock
        self._serial = serial
        self._timeout = timeout
        self._concurrency = concurrency
        self._poll = poll
        self._jitter = jitter
        self._loop = LoopingCall(self._tick)
        self._first: IDelayedCall | None = None
        self._loop.clock = clock
        self._tick_seconds = tick
        self._seen = -1
        self._pruned = 0.0
        self._next_round = 0.0
        self._round: Deferred[None] | None = None
        self._busy: dict[int, Deferred[None]] = {}  # hook id -> its delivery in flight
        self.stats = DeliveryStats()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # the first round (a storage read) once start-up is over, so that a start failing
        # on the way (a port in use) leaves no read in flight for the process to wait on
        self._first = self._clock.callLater(0, self._loop.start, self._tick_seconds, True)

    async def _stop(self) -> None:
        if self._first is not None and self._first.active():
            self._first.cancel()
        if self._loop.running:
            self._loop.stop()
        pending = list(self._busy.values()) + ([self._round] if self._round else [])
        for d in pending:
            d.cancel()
        await DeferredList(pending, consumeErrors=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop())

    def wake(self) -> None:
        """Run a round at the next tick (new outbox rows, a replay)."""
        self._next_round = 0.0

    def _tick(self) -> None:
        if self._round is not None:
            return
        now = self._clock.seconds()
        serial = self._serial()
        if serial == self._seen and now < self._next_round:
            return
        self._seen, self._next_round = serial, now + self._poll
        self._round = Deferred.fromCoroutine(self._start_due(now))
        self._round.addErrback(self._round_failed).addBoth(self._round_done)

    def _round_failed(self, failure: Any) -> None:
        if failure.check(StorageUnavailable):  # the database is away: the next round retries
            self.log.warn("Webhook deliveries wait for the database: {error}",
                          error=failure.getErrorMessage())
        elif not failure.check(CancelledError):
            self.log.failure("Webhook deliveries: a round failed", failure)

    def _round_done(self, _: Any) -> None:
        self._round = None

    async def _start_due(self, now: float) -> None:
        if now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            await self._storage.prune_deliveries(now - KEEP_DONE)
        room = self._concurrency - len(self._busy)
        if room <= 0:
            return
        for delivery in await self._storage.due_deliveries(now, sorted(self._busy), room):
            if delivery.hook in self._busy:
                continue
            d = Deferred.fromCoroutine(self._deliver(delivery))
            self._busy[delivery.hook] = d
            d.addErrback(self._delivery_failed, delivery)
            d.addBoth(self._delivery_done, delivery.hook)

    def _delivery_failed(self, failure: Any, delivery: Delivery) -> None:
        if failure.check(StorageUnavailable):  # its attempt not recorded: it goes again
            self.log.warn("Webhook delivery {id} not recorded, the database is away: {error}",
                          id=delivery.id, error=failure.getErrorMessage())
        elif not failure.check(CancelledError):
            self.log.failure("Webhook delivery {id} failed unexpectedly", failure, id=delivery.id)

    def _delivery_done(self, _: Any, hook: int) -> None:
        self._busy.pop(hook, None)
        self.wake()  # the hook's next event may be waiting

    async def _deliver(self, delivery: Delivery) -> None:
        hook = await self._storage.get_hook(delivery.hook)
        if hook is None:  # deleted meanwhile (its deliveries went with it)
            return
        body = delivery.payload.encode("utf-8")
        timestamp = str(int(self._clock.seconds()))
        headers = Headers({
            b"Content-Type": [b"application/json"], b"User-Agent": [USER_AGENT],
            hooks.EVENT_HEADER.encode(): [delivery.event.encode()],
            hooks.DELIVERY_HEADER.encode(): [str(delivery.id).encode()],
            hooks.TIMESTAMP.encode(): [timestamp.encode()],
            hooks.SIGNATURE.encode(): [hooks.signature(hook.secret, timestamp, body).encode()],
        })
        self.stats.in_flight += 1
        try:
            error = await self._post(hook.url, headers, body)
        finally:
            self.stats.in_flight -= 1
        await self._storage.record_attempt(self._outcome(delivery, error))

    async def _post(self, url: str, headers: Headers, body: bytes) -> str | None:
        """None if the receiver answered 2xx, else what went wrong (never the secret)."""
        attempt = self._http.post(  # (tests: treq.testing.StubTreq)
            url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False,
            reactor=self._clock)  # type: ignore[arg-type]  # a clock is all it needs
        try:
            response = await attempt
            collected = treq.collect(response, lambda _: None)
            collected.addTimeout(self._timeout, self._clock)
            await collected
        except CancelledError:
            raise
        except Exception as e:
            return f"{type(e).__name__}: {_without_password(str(e), url)[:200]}"
        if 200 <= response.code < 300:
            return None
        return f"HTTP {response.code}"

    def _outcome(self, delivery: Delivery, error: str | None) -> Attempt:
        now = self._clock.seconds()
        tries = delivery.tries + 1
        if error is None:
            self.stats.delivered += 1
            return Attempt(delivery.id, DELIVERED, tries, now, now, None)
        self.stats.attempts_failed += 1
        if now - (delivery.first_at or now) >= hooks.GIVE_UP:
            self.stats.given_up += 1
            self.log.warn("Webhook delivery {id} ({event}) failed for a day, given up: {error}",
                          id=delivery.id, event=delivery.event, error=error)
            return Attempt(delivery.id, FAILED, tries, now, now, error)
        return Attempt(delivery.id, PENDING, tries,
                       now + hooks.retry_delay(tries, self._jitter), now, error)


def _without_password(text: str, url: str) -> str:
    """An error's text as listed and logged: a password in the hook's URL never shows."""
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
