"""The SerialBoard: the newest committed serial, shared by the processes of one host.

Eight bytes in a memory-mapped file under the server directory. A process that
commits publishes its serial before it answers; every process peeks before it
serves a read and catches up first if the board is ahead of its cache, so a
change made through one worker is seen by every worker on its next request.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_FORMAT = "<q"
_SIZE = struct.calcsize(_FORMAT)


class SerialBoard:
    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd  # kept open: flock is per open file, so per process

    def peek(self) -> int:
        return int(struct.unpack_from(_FORMAT, self._map)[0])

    def publish(self, serial: int) -> None:
        """Raise the board to ``serial`` (never lowers it)."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            if serial > self.peek():
                struct.pack_into(_FORMAT, self._map, 0, serial)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)
