"""Plans of webhooks (hooktypes.py): hooks, the outbox rows an event writes inside the
transaction of its change (``with_events``), and what the delivery service reads and
records. Written once for both databases (plans.py's driver runs them); none takes a
serial or writes a changelog entry.

A hook's events are stored as ``,upload,push,`` so that the outbox insert picks the
subscribed hooks with one ``LIKE`` on either database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from devpi_twisted.storage.hooktypes import (
    PENDING, SERVER, Attempt, Delivery, Hook, HookEvent,
)
from devpi_twisted.storage.interface import Change
from devpi_twisted.storage.plans import Plan, one, rows, run

HOOK_COLUMNS = "id, scope, url, secret, events, creator, created"
INSERT_HOOK = ("INSERT INTO hooks (scope, url, secret, events, creator, created) "
               f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {HOOK_COLUMNS}")
ALL_HOOKS = f"SELECT {HOOK_COLUMNS} FROM hooks ORDER BY id"
HOOKS_OF = f"SELECT {HOOK_COLUMNS} FROM hooks WHERE scope = ? ORDER BY id"
ONE_HOOK = f"SELECT {HOOK_COLUMNS} FROM hooks WHERE id = ?"
DELETE_HOOK = "DELETE FROM hooks WHERE id = ?"
DELETE_DELIVERIES = "DELETE FROM hook_deliveries WHERE hook = ?"
ENQUEUE = (
    "INSERT INTO hook_deliveries (hook, serial, event, payload, status, tries, created, next_at) "
    f"SELECT id, ?, ?, ?, '{PENDING}', 0, ?, ? FROM hooks "
    "WHERE (scope = ? OR scope = ?) AND events LIKE ? ORDER BY id")
DELIVERY_COLUMNS = ("id, hook, serial, event, payload, status, tries, created, next_at, last_at, "
                    "last_error, first_at")
DELIVERIES_OF = (f"SELECT {DELIVERY_COLUMNS} FROM hook_deliveries WHERE hook = ? "
                 "ORDER BY id DESC LIMIT ?")
ONE_DELIVERY = "SELECT status FROM hook_deliveries WHERE id = ? AND hook = ?"
REPLAY = ("UPDATE hook_deliveries SET status = ?, tries = 0, first_at = NULL, next_at = ? "
          "WHERE id = ?")
# per hook its oldest pending delivery (a hook's next event waits for the one before):
# one index look-up per hook, however long the queue of a dead receiver grows
DUE = (f"SELECT {DELIVERY_COLUMNS} FROM hook_deliveries d WHERE d.id IN ("
       "SELECT (SELECT MIN(e.id) FROM hook_deliveries e "
       f"WHERE e.status = '{PENDING}' AND e.hook = h.id) FROM hooks h{{busy}}) "
       "AND d.next_at <= ?")
RECORD = ("UPDATE hook_deliveries SET status = ?, tries = ?, next_at = ?, last_at = ?, "
          "last_error = ?, first_at = COALESCE(first_at, ?) WHERE id = ?")
COUNTS = "SELECT status, COUNT(*) FROM hook_deliveries GROUP BY status"
PRUNE = f"DELETE FROM hook_deliveries WHERE status <> '{PENDING}' AND last_at < ?"


def events_column(events: Sequence[str]) -> str:
    return "," + ",".join(events) + ","


def _hook(row: Sequence[Any]) -> Hook:
    i, scope, url, secret, events, creator, created = row
    return Hook(int(i), scope, url, secret, tuple(e for e in events.split(",") if e), creator,
                float(created))


def _delivery(row: Sequence[Any]) -> Delivery:
    i, hook, serial, event, payload, status, tries, created, next_at, last_at, error, first = row
    return Delivery(int(i), int(hook), int(serial), event, payload, status, int(tries),
                    float(created), float(next_at), None if last_at is None else float(last_at),
                    error, None if first is None else float(first))


def payload(event: HookEvent, serial: int, at: float) -> str:
    """The JSON body a receiver gets for ``event`` of the change ``serial``."""
    body = {**dict(event.details), "event": event.event, "index": event.index,
            "project": event.project, "version": event.version, "filename": event.filename,
            "actor": event.actor, "serial": serial, "time": at}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def enqueue(events: Sequence[HookEvent], serial: int, at: float) -> Plan[None]:
    """Outbox rows of ``events`` for every hook subscribed (its index's and the server's)."""
    for event in events:
        yield run(ENQUEUE, serial, event.event, payload(event, serial, at), at, at, event.index,
                  SERVER, f"%,{event.event},%")


def with_events(make: Callable[..., Plan[Change]],
                events: Sequence[HookEvent]) -> Callable[..., Plan[Change]]:
    """The write plan ``make`` followed, in its transaction, by the outbox rows of
    ``events`` (a refused or rolled back write leaves none)."""
    def plan(*args: Any) -> Plan[Change]:
        change = yield from make(*args)
        yield from enqueue(events, change.serial, change.at)
        return change
    return plan


def create_hook(scope: str, url: str, secret: str, events: Sequence[str], creator: str,
                at: float) -> Plan[Hook]:
    return _hook((yield one(INSERT_HOOK, scope, url, secret, events_column(events), creator, at)))


def list_hooks(scope: str | None) -> Plan[list[Hook]]:
    found = yield (rows(ALL_HOOKS) if scope is None else rows(HOOKS_OF, scope))
    return [_hook(r) for r in found]


def get_hook(hook_id: int) -> Plan[Hook | None]:
    row = yield one(ONE_HOOK, hook_id)
    return None if row is None else _hook(row)


def delete_hook(hook_id: int) -> Plan[bool]:
    if (yield one(ONE_HOOK, hook_id)) is None:
        return False
    yield run(DELETE_DELIVERIES, hook_id)
    yield run(DELETE_HOOK, hook_id)
    return True


def list_deliveries(hook_id: int, limit: int) -> Plan[list[Delivery]]:
    return [_delivery(r) for r in (yield rows(DELIVERIES_OF, hook_id, limit))]


def replay_delivery(hook_id: int, delivery_id: int, at: float) -> Plan[bool]:
    """Queue a delivery again (tries from 0, a new day of retries); False if the hook has
    no such delivery."""
    if (yield one(ONE_DELIVERY, delivery_id, hook_id)) is None:
        return False
    yield run(REPLAY, PENDING, at, delivery_id)
    return True


def due_deliveries(now: float, busy: Sequence[int], limit: int) -> Plan[list[Delivery]]:
    """Per hook not in ``busy``, its oldest pending delivery if its time has come."""
    busy_clause = (" WHERE h.id NOT IN (" + ", ".join("?" * len(busy)) + ")") if busy else ""
    found = yield rows(DUE.format(busy=busy_clause) + " ORDER BY d.id LIMIT ?", *busy, now, limit)
    return [_delivery(r) for r in found]


def record_attempt(attempt: Attempt) -> Plan[None]:
    yield run(RECORD, attempt.status, attempt.tries, attempt.next_at, attempt.at, attempt.error,
              attempt.at, attempt.id)


def prune_deliveries(before: float) -> Plan[None]:
    """Forget deliveries done (delivered or failed) before ``before``."""
    yield run(PRUNE, before)


def delivery_counts() -> Plan[dict[str, int]]:
    return {status: int(n) for status, n in (yield rows(COUNTS))}
