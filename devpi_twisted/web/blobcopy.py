"""Copies of stored file bodies on local disk (BlobCopies): for a push within the
server, a push to another server, documentation pages and their search text, where the blob store may
be the database and a local path is needed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from devpi_twisted.doctext import doc_pages
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import DocPage
from devpi_twisted.storage.types import Offload


class BlobCopies:
    """Needs the blob store and a staging directory for the copies."""

    def __init__(self, blobs: BlobStore, staging: Path) -> None:
        self._blobs = blobs
        self._staging = staging

    async def copy_blob(self, source: str, target: str, sha256: str) -> None:
        """A file body copied within the store (through a staging file for the database store)."""
        local = self._blobs.local_path(source)
        if local is not None:
            await self._blobs.put_file(target, local, sha256)
            return
        spooled = self._staging / f"push-{os.getpid()}-{id(target)}"
        await self.copy_out(source, spooled)
        try:
            await self._blobs.put_file(target, spooled, sha256)
        finally:
            spooled.unlink(missing_ok=True)

    async def doc_text(self, relpath: str, offload: Offload,
                       warn: Callable[[str, Exception], None]) -> list[DocPage]:
        """The search text of the stored doc zip ``relpath`` (read on a thread); none
        when its body is gone or unreadable, and ``warn(relpath, error)`` says so."""
        try:
            async with self.local_copy(relpath) as path:
                return await offload(doc_pages, path)
        except Exception as e:
            warn(relpath, e)
            return []

    @asynccontextmanager
    async def local_copy(self, relpath: str) -> AsyncIterator[Path]:
        """A local path holding a file body for as long as the context lasts."""
        local = self._blobs.local_path(relpath)
        if local is not None:
            yield local
            return
        spooled = self._staging / f"out-{os.getpid()}-{id(relpath)}"
        await self.copy_out(relpath, spooled)
        try:
            yield spooled
        finally:
            spooled.unlink(missing_ok=True)

    async def copy_out(self, relpath: str, path: Path) -> None:
        """A file body written to a local file (renamed into place when complete)."""
        from twisted.protocols.ftp import FileConsumer  # the FTP module: 1 MB, imported late
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".part-")
        partial = Path(name)  # unique: two requests may copy the same body at once
        try:
            with os.fdopen(fd, "wb") as out:
                await self._blobs.read(relpath, FileConsumer(out))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
