"""Failed logins slow further attempts down, per user name and per client address.

Pure bookkeeping with the clock passed in: ``ServerOps`` asks ``wait`` before it
checks a password (a positive answer is refused with 429 and ``Retry-After``, and no
hash is computed) and reports each outcome. After ``free`` failures every further
one doubles the wait, from ``first`` up to ``longest`` seconds; a key with no failure
for ``forget`` seconds starts over, and a success clears its user's count. Checks
under way count too: at most ``free`` minus the key's failures (at least one) may be
under way at once, so a burst of attempts cannot slip through together while the
first of them are still being checked.

The counts live in the memory of one process: with ``--workers`` each worker keeps
its own, so an attacker spread over N workers gets at most N times the attempts.
Both tables hold at most ``max_keys`` entries (the least recently failed go first),
so random user names cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import attrs


@attrs.frozen
class ThrottleRule:
    free: int
    first: float
    longest: float
    forget: float

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        beyond = failures - self.free
        if beyond <= 0:
            return 0.0
        return min(self.longest, self.first * 2.0 ** min(beyond - 1, 32))


PER_USER = ThrottleRule(free=5, first=1.0, longest=60.0, forget=900.0)
PER_CLIENT = ThrottleRule(free=20, first=1.0, longest=60.0, forget=900.0)
MAX_KEYS = 10_000


@attrs.frozen
class _Failures:
    count: int
    last: float
    until: float


class _Table:
    def __init__(self, rule: ThrottleRule, max_keys: int) -> None:
        self._rule = rule
        self._max = max_keys
        self._entries: OrderedDict[str, _Failures] = OrderedDict()
        self._checking: dict[str, int] = {}  # checks under way; bounded by the pool's size

    def wait(self, key: str, now: float) -> float:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last > self._rule.forget:
            entry = None
        if entry is not None and entry.until > now:
            return entry.until - now
        failures = 0 if entry is None else entry.count
        if self._checking.get(key, 0) >= max(1, self._rule.free - failures):
            return self._rule.first
        return 0.0

    def started(self, key: str) -> None:
        self._checking[key] = self._checking.get(key, 0) + 1

    def settled(self, key: str) -> None:
        left = self._checking.pop(key, 1) - 1
        if left > 0:
            self._checking[key] = left

    def failed(self, key: str, now: float) -> None:
        entry = self._entries.pop(key, None)
        count = 1 if entry is None or now - entry.last > self._rule.forget else entry.count + 1
        self._entries[key] = _Failures(count, now, now + self._rule.delay(count))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self, key: str) -> None:
        self._entries.pop(key, None)


class LoginThrottle:
    def __init__(self, clock: Callable[[], float], per_user: ThrottleRule = PER_USER,
                 per_client: ThrottleRule = PER_CLIENT, max_keys: int = MAX_KEYS) -> None:
        self._clock = clock
        self._users = _Table(per_user, max_keys)
        self._clients = _Table(per_client, max_keys)

    def wait(self, user: str, client: str) -> float:
        """Seconds before a password for ``user`` from ``client`` may be checked (0: now)."""
        now = self._clock()
        return max(self._users.wait(user, now), self._clients.wait(client, now))

    def started(self, user: str, client: str) -> None:
        """A check begins; ``settled`` must follow, whatever its outcome."""
        self._users.started(user)
        self._clients.started(client)

    def settled(self, user: str, client: str) -> None:
        self._users.settled(user)
        self._clients.settled(client)

    def failed(self, user: str, client: str) -> None:
        now = self._clock()
        self._users.failed(user, now)
        self._clients.failed(client, now)

    def succeeded(self, user: str) -> None:
        """The user's own count starts over; the client's stays (it may be guessing
        other users' passwords between logins to its own account)."""
        self._users.clear(user)
