"""The staging file of a streamed download (a mirror's first download of a release
file, a replica's fetch of a file body from its primary): the body's bytes are counted
and hashed as they arrive on the reactor, and written to a new file in the staging
directory on threads, in order, one trip at a time, in pieces of at least PIECE bytes.
The last bytes and the close go to a thread in one trip (with any work on the finished
file), so a small file costs one trip.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar, overload

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from devpi_twisted.storage.types import Offload

P = ParamSpec("P")
T = TypeVar("T")
# A body goes to its staging file in pieces of at least this much (all at once when
# smaller): each piece is a trip to a thread.
PIECE = 1 << 20


class Spool:
    """One download's staging file, created (``mkstemp`` in ``staging``, named with
    ``prefix``) with its first write on a thread. ``write`` takes the body as it
    arrives; ``close`` ends it. A failed write is kept (``failure``): nothing more is
    written, and ``close`` fails with it. ``size`` and ``sha256`` are of every byte
    given to ``write``. The file is the caller's to move away or ``remove``."""

    def __init__(self, staging: Path, offload: Offload, prefix: str = "spool-",
                 piece: int = PIECE) -> None:
        self._staging = staging
        self._offload = offload
        self._prefix = prefix
        self._piece = piece
        self._file: IO[bytes] | None = None  # (used on threads, one call at a time)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._writing = False
        self._closing: Callable[[], None] | None = None  # the close waiting for a write
        self.path: Path | None = None  # once created
        self.failure: Failure | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        """Count and hash ``data``; spool it unless a write failed."""
        self.size += len(data)
        self.sha256.update(data)
        if self.failure is not None or not data:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if not self._writing and self._pending_size >= self._piece:
            self._write_pending()

    def _take_pending(self) -> bytes:
        chunk, self._pending, self._pending_size = b"".join(self._pending), [], 0
        return chunk

    def _write_pending(self) -> None:
        self._writing = True
        self._offload(self._append, self._take_pending()).addBoth(self._written)

    def _written(self, result: object) -> None:
        self._writing = False
        if isinstance(result, Failure):
            self._pending, self._pending_size = [], 0
            self.failure = result
        if self._closing is not None:
            self._closing()
        elif self.failure is None and self._pending_size >= self._piece:
            self._write_pending()

    @overload
    def close(self, complete: bool) -> Deferred[Path | None]: ...

    @overload
    def close(self, complete: bool, then: Callable[[Path], T]) -> Deferred[T | None]: ...

    def close(self, complete: bool, then: Callable[[Path], Any] | None = None) -> Deferred[Any]:
        """Once the write under way (if any) is over, write the rest and close the file
        on a thread; with ``complete`` (the whole body is here), the file is created
        even if empty and ``then(path)`` runs on the same thread: its result (default:
        the path). Without ``complete``, what came so far is closed (None). Fails with
        the failure of a write."""
        done: Deferred[Any] = Deferred()

        def close_now() -> None:
            self._closing = None
            whole = complete and self.failure is None
            rest = self._take_pending() if whole else b""
            closing = self._offload(self._close, whole, rest, then)
            closing.addCallback(self._unless_failed).chainDeferred(done)

        if self._writing:
            self._closing = close_now
        else:
            close_now()
        return done

    def _unless_failed(self, result: T) -> T | Failure:
        return self.failure if self.failure is not None else result

    def remove(self) -> Deferred[None]:
        """Remove the file (if it was created), on a thread."""
        if self.path is None:
            return succeed(None)
        return self._offload(self.path.unlink, True)

    # -- on threads ---------------------------------------------------------------------

    def _open(self) -> IO[bytes]:
        if self._file is None:
            fd, name = tempfile.mkstemp(dir=self._staging, prefix=self._prefix)
            self.path = Path(name)
            self._file = os.fdopen(fd, "wb")
        return self._file

    def _append(self, data: bytes) -> None:
        self._open().write(data)

    def _close(self, complete: bool, rest: bytes,
               then: Callable[[Path], Any] | None) -> Any:
        if self._file is None and not complete:
            return None  # broke off before the first byte: nothing to remove either
        file = self._open()
        if rest:
            file.write(rest)
        file.close()
        if not complete:
            return None
        assert self.path is not None
        return self.path if then is None else then(self.path)
