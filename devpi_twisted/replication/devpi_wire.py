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
        self._data = bytes(data)
        self._at = 0
        self.stack: list[Any] = []
        self.streamed: list[Any] | None = None  # devpi 7's top-level list items

    def take(self, count: int) -> bytes:
        end = self._at + count
        if count < 0 or end > len(self._data):
            raise WireError(f"truncated at byte {self._at}")
        chunk = self._data[self._at:end]
        self._at = end
        return chunk

    def int4(self) -> int:
        at = self._at
        if at + 4 > len(self._data):
            raise WireError(f"truncated at byte {at}")
        self._at = at + 4
        return int(_INT.unpack_from(self._data, at)[0])

    def text(self) -> str:
        raw = self.take(self.int4())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WireError(f"a string that is not UTF-8: {e}") from None

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

    def number(self) -> int:
        text = self.take(self.int4())
        try:
            return int(text)
        except ValueError:
            raise WireError(f"not a number: {text[:40]!r}") from None

    def slots(self) -> list[None]:
        length = self.int4()
        if length < 0 or length > len(self._data):
            raise WireError(f"a list of {length} slots")
        return [None] * length

    def double(self) -> float:
        return float(_DOUBLE.unpack(self.take(8))[0])

    def run(self) -> Any:
        """The opcodes (as byte values) one after the other, most frequent first."""
        data, stack, push = self._data, self.stack, self.stack.append
        size = len(data)
        while True:
            if self._at >= size:
                raise WireError(f"truncated at byte {self._at}")
            opcode = data[self._at]
            self._at += 1
            if len(stack) > MAX_DEPTH:
                raise WireError("too many values at once")
            if opcode in (0x4E, 0x53):  # N, S: str
                push(self.text())
            elif opcode == 0x50:  # P: setitem
                self.setitem()
            elif opcode == 0x4A:  # J: dict
                push({})
            elif opcode in (0x46, 0x47):  # F, G: int
                push(self.int4())
            elif opcode == 0x40:  # @: tuple
                push(self.collection(tuple))
            elif opcode == 0x4B:  # K: list of slots
                push(self.slots())
            elif opcode == 0x4C:  # L
                push(None)
            elif opcode == 0x52:  # R
                push(True)
            elif opcode == 0x43:  # C
                push(False)
            elif opcode == 0x51:  # Q: stop
                break
            elif opcode in (0x48, 0x49):  # H, I: long int as text
                push(self.number())
            elif opcode == 0x44:  # D: double
                push(self.double())
            elif opcode in (0x41, 0x4D):  # A, M: bytes
                push(self.take(self.int4()))
            elif opcode == 0x4F:  # O: set
                push(self.collection(set))
            elif opcode == 0x45:  # E: frozenset
                push(self.collection(frozenset))
            elif opcode == 0x54:  # T: complex
                push(complex(self.double(), self.double()))
            else:
                raise WireError(f"unknown opcode {bytes([opcode])!r} at byte {self._at - 1}")
        if self.streamed is not None and not stack:
            return self.streamed
        if len(stack) != 1:
            raise WireError(f"{len(stack)} values left where one was due")
        return stack[0]


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
