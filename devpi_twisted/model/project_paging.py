"""Paging of an index's project list: ``GET /USER/INDEX?q=..&limit=..&offset=..``.

devpi's upcoming listing parameters (devpi/devpi issue 1122, pull request 1123):
``q`` keeps the names containing it (compared as normalised names), ``offset`` skips
that many of them in name order, ``limit`` keeps at most that many; the answer gives
the page as ``projects`` and the number of names matching ``q`` as ``total`` (also
asked for alone by ``total=1``, as the proposal spells it). Without any of them the
whole list is answered, as devpi 6 and 7 do, and no ``total``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import normalize_project
from devpi_twisted.storage.interface import Storage

MAX_QUERY = 200  # characters of ``q``
MAX_LIMIT = 10_000  # names in one page
MAX_OFFSET = 10**9
KEPT = 32  # indexes whose sorted names a process keeps


@attrs.frozen
class Paging:
    """A page of a name list: names containing ``query`` (normalised; "" all of them),
    from ``offset`` on, at most ``limit`` (None: all)."""

    query: str = ""
    limit: int | None = None
    offset: int = 0

    def page(self, names: Sequence[str]) -> tuple[list[str], int]:
        """(the page, how many names match) of ``names``, sorted normalised names."""
        if not self.query:
            stop = None if self.limit is None else self.offset + self.limit
            return list(names[self.offset:stop]), len(names)
        matching = [n for n in names if self.query in n]
        stop = None if self.limit is None else self.offset + self.limit
        return matching[self.offset:stop], len(matching)


def _whole(field: str, text: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidInput(f"{field} must be a whole number from {low} to {high}, "
                           f"not {text[:20]!r}")
    return int(text)


def paging_of(args: Mapping[bytes, list[bytes]]) -> Paging | None:
    """The Paging a request's query arguments ask for; None if they name none of
    ``q``, ``limit``, ``offset``. InvalidInput naming the field for a bad value."""
    given = {}
    for field in ("q", "limit", "offset", "total"):
        values = args.get(field.encode())
        if values:
            if len(values) > 1:
                raise InvalidInput(f"{field} given {len(values)} times")
            try:
                given[field] = values[0].decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InvalidInput(f"{field} is not UTF-8") from None
    if given.get("total", "1").lower() not in ("1", "true", "yes"):
        raise InvalidInput(f"total must be 1, true or yes, not {given['total'][:20]!r}")
    if not given:
        return None
    query = given.get("q", "")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"q is longer than {MAX_QUERY} characters")
    limit = _whole("limit", given["limit"], 1, MAX_LIMIT) if given.get("limit") else None
    offset = _whole("offset", given["offset"], 0, MAX_OFFSET) if given.get("offset") else 0
    return Paging(normalize_project(query) if query else "", limit, offset)



class SortedNames:
    """Each index's own project names (``names(user, index)``), sorted, kept per process
    until the index's releases or mirror pages (or any index config) change: a page of
    100,000 names must not read them all again, nor an upload elsewhere make it."""

    def __init__(self, storage: Storage,
                 names: Callable[[str, str], Awaitable[list[str]]]) -> None:
        self._storage = storage
        self._names = names
        self._kept: dict[tuple[str, str], tuple[int, list[str]]] = {}

    async def __call__(self, user: str, index: str) -> list[str]:
        await self._storage.sync()  # other processes' commits first
        kept = self._kept.get((user, index))
        if kept is not None and self._storage.listing_serial([f"{user}/{index}"]) <= kept[0]:
            return kept[1]
        serial = self._storage.serial  # before the read: a write in between reads again
        names = sorted(await self._names(user, index))
        self._kept.pop((user, index), None)
        if len(self._kept) >= KEPT:
            self._kept.pop(next(iter(self._kept)))
        self._kept[(user, index)] = (serial, names)
        return names
