"""Freed memory given back to the system after big transient work (a PyPI-sized
project list parsed or rendered): glibc keeps what the threads freed in its arenas
and raises its mmap threshold after the first big block is freed, so without
malloc_trim(3) a process keeps the peak of such work resident for good.

``tune`` (the server calls it at start) fixes glibc's mmap threshold at 1 MiB, so
that big blocks (a list's blobs, a parsed body) are mappings of their own, unmapped
when freed, instead of pieces of an arena that a small block left above them keeps
resident; and holds the arenas to two (each thread would otherwise get its own, each
keeping its own free memory). The 700,000-name list's share of resident memory went
from 59 to 33 MB with it. No-ops where the C library has neither function."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt(3) parameters (malloc.h)
MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2


def _load(name: str, argtypes: list[Any]) -> Any:
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


_TRIM = _load("malloc_trim", [ctypes.c_size_t])
_MALLOPT = _load("mallopt", [ctypes.c_int, ctypes.c_int])


def tune() -> bool:
    """Fixed mmap threshold, at most two arenas (see above); False where not glibc."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(_MALLOPT(M_ARENA_MAX, ARENA_MAX))


def give_back() -> None:
    """Return the C heap's free pages to the system (a few ms; call after big work)."""
    if _TRIM is not None:
        _TRIM(0)
