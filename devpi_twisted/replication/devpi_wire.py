"""devpi-server's binary serialisation (its ``fileutil`` format), read-only: what a
devpi primary sends in answer to ``/+changelog/N`` and ``/+changelog/N-``.

The format is a little stack machine: each one-byte opcode pushes a value (``None``,
booleans, 4-byte big-endian ints, long ints as decimal text, doubles, UTF-8 strings,
bytes), builds a container from the values on top of the stack (tuple, set, frozenset
with their length after the items), pushes an empty dict or a list of N slots, or stores
the top two values into the container below them (``P``: key then value); ``Q`` ends
it. devpi 7 also writes one top-level list as a stream of ``P`` items with counting keys.
Pure: no Twisted.
"""

from __future__ import annotations

import struct
from typing import Any

from devpi_twisted.replication.protocol import MalformedChanges

_INT = struct.Struct("!i")
_DOUBLE = struct.Struct("!d")
MAX_DEPTH = 100_000  # values on the stack at once; more is not a changelog entry


class WireError(MalformedChanges):
    """Bytes that are not devpi's serialisation (truncated, unknown opcode, ...)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0
        self.stack: list[Any] = []
        self.streamed: list[Any] | None = None  # devpi 7's top-level list items

    def take(self, count: int) -> bytes:
        if count < 0 or self._at + count > len(self._data):
            raise WireError(f"truncated at byte {self._at}")
        chunk = bytes(self._data[self._at:self._at + count])
        self._at += count
        return chunk

    def int4(self) -> int:
        return int(_INT.unpack(self.take(4))[0])

    def collection(self, kind: type) -> Any:
        length = self.int4()
        if length < 0 or length > len(self.stack):
            raise WireError(f"a collection of {length} items on a stack of {len(self.stack)}")
        items = self.stack[len(self.stack) - length:] if length else []
        del self.stack[len(self.stack) - length:]
        return kind(items)

    def setitem(self) -> None:
        if len(self.stack) < 2:
            raise WireError("setitem without a key and a value")
        value = self.stack.pop()
        key = self.stack.pop()
        if not self.stack:  # devpi 7: the items of a streamed top-level list
            if self.streamed is None:
                self.streamed = []
            if key != len(self.streamed):
                raise WireError(f"streamed item {key!r} where {len(self.streamed)} was due")
            self.streamed.append(value)
            return
        target = self.stack[-1]
        try:
            target[key] = value
        except (TypeError, IndexError) as e:
            raise WireError(f"cannot store an item into {type(target).__name__}: {e}") from None

    def run(self) -> Any:
        push = self.stack.append
        while True:
            opcode = self.take(1)
            if len(self.stack) > MAX_DEPTH:
                raise WireError("too many values at once")
            if opcode == b"Q":
                break
            elif opcode == b"L":
                push(None)
            elif opcode == b"R":
                push(True)
            elif opcode == b"C":
                push(False)
            elif opcode in (b"F", b"G"):
                push(self.int4())
            elif opcode in (b"H", b"I"):
                text = self.take(self.int4())
                try:
                    push(int(text))
                except ValueError:
                    raise WireError(f"not a number: {text[:40]!r}") from None
            elif opcode == b"D":
                push(_DOUBLE.unpack(self.take(8))[0])
            elif opcode in (b"N", b"S"):
                raw = self.take(self.int4())
                try:
                    push(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    raise WireError(f"a string that is not UTF-8: {e}") from None
            elif opcode in (b"A", b"M"):
                push(self.take(self.int4()))
            elif opcode == b"J":
                push({})
            elif opcode == b"K":
                length = self.int4()
                if length < 0 or length > len(self._data):
                    raise WireError(f"a list of {length} slots")
                push([None] * length)
            elif opcode == b"@":
                push(self.collection(tuple))
            elif opcode == b"O":
                push(self.collection(set))
            elif opcode == b"E":
                push(self.collection(frozenset))
            elif opcode == b"P":
                self.setitem()
            elif opcode == b"T":
                push(complex(_DOUBLE.unpack(self.take(8))[0], _DOUBLE.unpack(self.take(8))[0]))
            else:
                raise WireError(f"unknown opcode {opcode!r} at byte {self._at - 1}")
        if self.streamed is not None and not self.stack:
            return self.streamed
        if len(self.stack) != 1:
            raise WireError(f"{len(self.stack)} values left where one was due")
        return self.stack[0]


def loads(data: bytes) -> Any:
    """The value ``data`` holds; WireError when it is not devpi's serialisation."""
    return _Reader(data).run()


def changelog_entries(data: bytes, first: int) -> list[tuple[int, Any]]:
    """The ``(serial, changes)`` pairs of a multi-serial answer (``/+changelog/N-``),
    checked to run on from ``first`` without a gap; ``changes``: devpi 6, a mapping of
    relpath -> ``(keyname, back_serial, value)``; devpi 7, a list of ``(keyname,
    relpath, ulid, parent ulid, back_serial, value)``."""
    value = loads(data)
    if not isinstance(value, (list, tuple)):
        raise WireError("the answer is not a list of changelog entries")
    entries: list[tuple[int, Any]] = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise WireError("a changelog entry is not a (serial, changes) pair")
        serial, changes = item
        if serial != first + len(entries):
            raise WireError(f"serial {serial!r} where {first + len(entries)} was due")
        if not isinstance(changes, (dict, list, tuple)):
            raise WireError(f"serial {serial}: the changes are not a mapping or a list")
        entries.append((serial, changes))
    return entries
