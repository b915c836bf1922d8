"""Freed memory given back to the system after big transient work (a PyPI-sized
project list parsed or rendered): glibc keeps what the threads freed in its arenas
and raises its mmap threshold after the first big block is freed, so without
malloc_trim(3) a process keeps the peak of such work resident for good. A no-op
where the C library has no malloc_trim."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any


def _load() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _load()


def give_back() -> None:
    """Return the C heap's free pages to the system (a few ms; call after big work)."""
    if _TRIM is not None:
        _TRIM(0)
