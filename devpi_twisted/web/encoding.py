"""Content codings of simple pages and project lists: which one a client gets (its
``Accept-Encoding``), compressing whole bodies, and compressing a body as it is
written (ChunkSinks: one per coding, each kept in memory while small, spilled to a
file past SMALL). gzip always; br (brotli) and zstd from their maintained packages,
imported at their first use (pip asks for gzip only: about 0.8 MB resident spared)."""

from __future__ import annotations

import functools
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from devpi_twisted.memory import give_back

from devpi_twisted.web.deps import HttpRequest

IDENTITY = "identity"
# preferred first where the client accepts several equally (smallest first)
CODINGS = ("br", "zstd", "gzip")
SMALL = 256 << 10  # a body up to this size stays in memory; a bigger one in a file
GZIP_LEVEL, BROTLI_QUALITY, ZSTD_LEVEL = 6, 5, 3


@functools.lru_cache(maxsize=256)  # clients send few distinct Accept-Encoding values
def _parse(value: bytes | None) -> str:
    if not value:
        return IDENTITY
    header = value.decode("latin-1")
    weights: dict[str, float] = {}
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        q = 1.0
        for param in parts[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if parts[0]:
            weights[parts[0].lower()] = q
    best, best_q = IDENTITY, 0.0
    for coding in CODINGS:
        q = weights.get(coding, weights.get("*", 0.0))
        if q > best_q:
            best, best_q = coding, q
    return best


def chosen(request: HttpRequest) -> str:
    """The coding this request gets: the client's most wanted of CODINGS, else identity."""
    return _parse(request.getHeader(b"Accept-Encoding"))


def compress(data: bytes, coding: str) -> bytes:
    """``data`` in ``coding`` (one of CODINGS)."""
    if coding == "gzip":
        packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        return packer.compress(data) + packer.flush()
    if coding == "br":
        import brotli
        return bytes(brotli.compress(data, quality=BROTLI_QUALITY))
    if coding == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    raise ValueError(f"unknown coding {coding!r}")


def _packers(coding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    """(compress a part, finish) of a streaming compressor for ``coding``."""
    if coding == "gzip":
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
        return gz.compress, lambda: gz.flush()
    if coding == "br":
        import brotli
        br = brotli.Compressor(quality=BROTLI_QUALITY)
        return (lambda data: bytes(br.process(data))), (lambda: bytes(br.finish()))
    if coding == IDENTITY:
        return (lambda data: data), (lambda: b"")
    import zstandard
    zst = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    return zst.compress, lambda: zst.flush()


class Body:
    """A finished body: ``data`` in memory, or the file at ``path`` (spooled)."""

    def __init__(self, size: int, data: bytes | None, path: Path | None) -> None:
        self.size, self.data, self.path = size, data, path

    def discard(self) -> None:
        """Remove its file (readers that have it open still read it to the end)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class ChunkSink:
    """Compresses what is written in ``coding``: in memory up to SMALL, then in a file
    of ``spool``."""

    def __init__(self, coding: str, spool: Path) -> None:
        self._pack, self._finish = _packers(coding)
        self._spool = spool
        self._parts: list[bytes] = []
        self._size = 0
        self._file: int | None = None
        self._path: Path | None = None

    def write(self, data: bytes) -> None:
        self._put(self._pack(data))

    def _put(self, packed: bytes) -> None:
        if not packed:
            return
        self._size += len(packed)
        if self._file is None:
            self._parts.append(packed)
            if self._size <= SMALL:
                return
            fd, name = tempfile.mkstemp(dir=self._spool, prefix="list-")
            self._file, self._path = fd, Path(name)
            packed, self._parts = b"".join(self._parts), []
        _write_all(self._file, packed)

    def close(self) -> Body:
        self._put(self._finish())
        if self._file is None:
            return Body(self._size, b"".join(self._parts), None)
        os.close(self._file)
        return Body(self._size, None, self._path)

    def abort(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def coded_body(data: bytes, coding: str, spool: Path) -> Body:
    """``data`` in ``coding`` (or IDENTITY) as a Body: in memory up to SMALL, else in a
    new file of ``spool``."""
    sink = ChunkSink(coding, spool)
    try:
        sink.write(data)
        return sink.close()
    except BaseException:
        sink.abort()
        raise


def encode_all(chunks: Iterable[str], spool: Path) -> dict[str, Body]:
    """The body made of ``chunks`` (UTF-8) in identity and in every one of CODINGS, each
    compressed as the chunks come (so no coding holds the whole body uncompressed)."""
    sinks = {coding: ChunkSink(coding, spool) for coding in (IDENTITY, *CODINGS)}
    try:
        for chunk in chunks:
            data = chunk.encode()
            for sink in sinks.values():
                sink.write(data)
        bodies = {coding: sink.close() for coding, sink in sinks.items()}
    except BaseException:
        for sink in sinks.values():
            sink.abort()
        raise
    if sum(body.size for body in bodies.values()) > SMALL:
        give_back()  # the names and parts of a big list
    return bodies
