"""Upstream's project name list held compactly (NameList): PyPI's 700,000 names as a
dict of strings take about 120 MB of memory; as a UTF-8 blob of the normalised names
with an array of offsets and one of positions sorted by name, 17 MB. Upstream's own
spelling is kept only where it differs from the normalised name (a second blob, with
the positions it belongs to): most names are spelled normalised. Built on a thread
from the parsed dict; membership by binary search; names found upstream since the
list was fetched are kept beside it."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import ItemsView, Iterator, Mapping


def _starts(parts: list[bytes]) -> array[int]:
    """Offsets of each part in ``b"".join(parts)`` and the end."""
    offsets = array("Q" if sum(map(len, parts)) >= 1 << 32 else "I", [0])
    position = 0
    for part in parts:
        position += len(part)
        offsets.append(position)
    return offsets


class NameList(Mapping[str, str]):
    """Normalised name -> name as upstream gives it, in upstream's order, then the names
    ``add``-ed since."""

    def __init__(self, names: Mapping[str, str]) -> None:
        keys = [k.encode() for k in names]
        self._keys, self._key_starts = b"".join(keys), _starts(keys)
        spelled = [(at, value.encode()) for at, (key, value) in enumerate(names.items())
                   if key != value]
        self._spelled_at = array("I", [at for at, _ in spelled])  # ascending positions
        given = [value for _, value in spelled]
        self._given, self._given_starts = b"".join(given), _starts(given)
        del spelled, given
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self._sorted = array("I", order)
        self._count = len(keys)
        self._extra: dict[str, str] = {}

    def _key(self, position: int) -> bytes:
        return self._keys[self._key_starts[position]:self._key_starts[position + 1]]

    def _find(self, name: str) -> int | None:
        """The position of ``name`` in upstream's order, None if not listed."""
        wanted = name.encode()
        at = bisect_left(self._sorted, wanted, key=self._key)
        if at < self._count and self._key(self._sorted[at]) == wanted:
            return self._sorted[at]
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._extra or self._find(name) is not None)

    def __getitem__(self, name: str) -> str:
        if name in self._extra:
            return self._extra[name]
        position = self._find(name) if isinstance(name, str) else None
        if position is None:
            raise KeyError(name)
        at = bisect_left(self._spelled_at, position)
        if at < len(self._spelled_at) and self._spelled_at[at] == position:
            return self._given[self._given_starts[at]:self._given_starts[at + 1]].decode()
        return name

    def __len__(self) -> int:
        return self._count + len(self._extra)

    @staticmethod
    def _split(blob: bytes, starts: array[int]) -> list[str]:
        return [blob[starts[i]:starts[i + 1]].decode() for i in range(len(starts) - 1)]

    def __iter__(self) -> Iterator[str]:
        yield from self._split(self._keys, self._key_starts)
        yield from self._extra

    def items(self) -> ItemsView[str, str]:
        return dict(zip(self, self.values())).items()

    def values(self) -> list[str]:  # type: ignore[override]
        spelled = self._split(self._keys, self._key_starts)
        for at, value in zip(self._spelled_at, self._split(self._given, self._given_starts)):
            spelled[at] = value
        return [*spelled, *self._extra.values()]

    def add(self, name: str) -> None:
        """``name`` (normalised) is upstream's too, spelled so."""
        if name not in self:
            self._extra[name] = name
