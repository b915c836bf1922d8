"""The webhook part of the storage interface (hooktypes.HookStorage), as the adapters
run it: hookplans.py's plans through the adapter's own transactions and reads
(``HookMethods``, a base of adapter.PlanStorage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from devpi_twisted.storage import hookplans, plans
from devpi_twisted.storage.hooktypes import Attempt, Delivery, Hook
from devpi_twisted.storage.types import shielded

T = TypeVar("T")


class HookMethods:
    """Webhooks and their deliveries; the adapter provides ``_transact``, ``_query`` and
    ``_clock``."""

    _clock: Callable[[], float]

    def _transact(self, make: Callable[..., plans.Plan[T]], *args: Any) -> Deferred[T]:
        raise NotImplementedError

    def _query(self, plan: plans.Plan[T]) -> Deferred[T]:
        raise NotImplementedError

    def create_hook(self, scope: str, url: str, secret: str, events: Sequence[str],
                    creator: str) -> Deferred[Hook]:
        return shielded(self._transact(hookplans.create_hook, scope, url, secret, list(events),
                                       creator, self._clock()))

    def list_hooks(self, scope: str | None) -> Deferred[list[Hook]]:
        return shielded(self._query(hookplans.list_hooks(scope)))

    def get_hook(self, hook_id: int) -> Deferred[Hook | None]:
        return shielded(self._query(hookplans.get_hook(hook_id)))

    def delete_hook(self, hook_id: int) -> Deferred[bool]:
        return shielded(self._transact(hookplans.delete_hook, hook_id))

    def list_deliveries(self, hook_id: int, limit: int) -> Deferred[list[Delivery]]:
        return shielded(self._query(hookplans.list_deliveries(hook_id, limit)))

    def replay_delivery(self, hook_id: int, delivery_id: int) -> Deferred[bool]:
        return shielded(self._transact(hookplans.replay_delivery, hook_id, delivery_id,
                                       self._clock()))

    def due_deliveries(self, now: float, busy: Sequence[int], limit: int) -> Deferred[list[Delivery]]:
        return shielded(self._query(hookplans.due_deliveries(now, list(busy), limit)))

    def record_attempt(self, attempt: Attempt) -> Deferred[None]:
        return shielded(self._transact(hookplans.record_attempt, attempt))

    def prune_deliveries(self, before: float) -> Deferred[None]:
        return shielded(self._transact(hookplans.prune_deliveries, before))

    def delivery_counts(self) -> Deferred[dict[str, int]]:
        return shielded(self._query(hookplans.delivery_counts()))
