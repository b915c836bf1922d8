"""Values of webhooks as storage keeps them (model/hooks.py has the rules), and the part
of the storage interface the hooks' use cases and delivery service ask for.

Hooks are not index state: creating or deleting one takes no serial and leaves no
changelog entry (a replica never sends, so it needs none). An event becomes one outbox
row (a ``Delivery``) per hook subscribed to it, written in the transaction of the
change that caused it (``HookEvent`` values handed to a write method), only where the
change originates: a replica importing the change writes none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SERVER = ""  # the scope of a server-wide hook (an index hook's scope: "user/index")


@attrs.frozen
class HookEvent:
    """An event to announce: ``event`` (upload, push, ...), the index (``user/index``) it
    happened on, what it concerns, who did it; ``details``: plain JSON values."""

    event: str
    index: str
    actor: str | None
    project: str | None = None
    version: str | None = None
    filename: str | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Hook:
    """A stored hook; ``scope`` SERVER or ``user/index``."""

    id: int
    scope: str
    url: str
    secret: str
    events: tuple[str, ...]
    creator: str
    created: float


@attrs.frozen
class Delivery:
    """One event for one hook: its JSON body (bytes as sent), status PENDING, DELIVERED
    or FAILED, tries so far, when it is next tried, the last error; ``first_at``: its
    first attempt (since a replay), from which its day of retries counts."""

    id: int
    hook: int
    serial: int
    event: str
    payload: str
    status: str
    tries: int
    created: float
    next_at: float
    last_at: float | None
    last_error: str | None
    first_at: float | None = None


@attrs.frozen
class Attempt:
    """The outcome of sending a delivery: its new status, tries, next time, error."""

    id: int
    status: str
    tries: int
    next_at: float
    at: float
    error: str | None


class HookStorage(Protocol):
    """Hooks and their outbox (both adapters, through hookplans.py)."""

    def create_hook(self, scope: str, url: str, secret: str, events: Sequence[str],
                    creator: str) -> Deferred[Hook]: ...

    def list_hooks(self, scope: str | None) -> Deferred[list[Hook]]: ...

    def get_hook(self, hook_id: int) -> Deferred[Hook | None]: ...

    def delete_hook(self, hook_id: int) -> Deferred[bool]: ...

    def list_deliveries(self, hook_id: int, limit: int) -> Deferred[list[Delivery]]: ...

    def replay_delivery(self, hook_id: int, delivery_id: int) -> Deferred[bool]: ...

    def due_deliveries(self, now: float, busy: Sequence[int], limit: int) -> Deferred[list[Delivery]]: ...

    def record_attempt(self, attempt: Attempt) -> Deferred[None]: ...

    def delivery_counts(self) -> Deferred[dict[str, int]]: ...

    def prune_deliveries(self, before: float) -> Deferred[None]: ...
