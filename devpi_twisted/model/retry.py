"""Re-read and retry on a stale record: the one loop of every read-modify-write use case.

A use case reads records, decides, and writes with the serials it read; storage refuses
the write with StaleRecord if a record changed meanwhile. ``retrying`` runs such an
attempt again (it reads afresh each time) until it commits or the tries run out, which
is answered Unavailable: the record is changed by too many requests at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from devpi_twisted.model.errors import Unavailable
from devpi_twisted.storage.interface import StaleRecord

T = TypeVar("T")

RETRIES = 20


async def retrying(attempt: Callable[[], Awaitable[T]], busy: str, tries: int = RETRIES) -> T:
    """The result of the first ``attempt()`` that raises no StaleRecord; ``busy`` is the
    message of the Unavailable raised when ``tries`` attempts all found a stale record."""
    for _ in range(tries):
        try:
            return await attempt()
        except StaleRecord:
            continue
    raise Unavailable(busy)
