"""A first download's body on its way (spec/mirror.md 6-7): passed on to the client as
it arrives, except the last piece, held back until the body is complete and matched
upstream's length and hashes; spooled to a staging file (storage/spool.py), and at its
close, on the same thread, a wheel's core metadata extracted and the requirements of
the release read (for prefetching)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from devpi_twisted.archives import core_metadata
from devpi_twisted.mirror.outcomes import TransferBroken
from devpi_twisted.mirror.requirements import parse_requirements
from devpi_twisted.storage.spool import Spool

MAX_METADATA_FILE = 1 << 20  # a .metadata file read back for its requirements
_log = Logger()


class Check:
    """What a first download's body must be: ``length`` bytes (when upstream said) with
    the ``expected`` hashes (algorithm -> hex digest). The body's sha256 is the spool's;
    other algorithms are hashed here."""

    def __init__(self, length: int | None, expected: Mapping[str, str]) -> None:
        self._length = length
        self._expected = dict(expected)
        self._others = {algo: hashlib.new(algo) for algo in self._expected if algo != "sha256"}

    def update(self, data: bytes) -> None:
        for other in self._others.values():
            other.update(data)

    def passed(self, size: int, sha256: str) -> bool:
        if self._length is not None and size != self._length:
            return False
        got = {"sha256": sha256, **{algo: h.hexdigest() for algo, h in self._others.items()}}
        return all(got[algo] == value.lower() for algo, value in self._expected.items())


@attrs.frozen
class Extracted:
    """What the close of a download's staging file found in it."""

    metadata: tuple[int, str] | None = None  # the extracted core metadata's (size, sha256)
    requires: list[str] = attrs.field(factory=list)  # normalised project names


def metadata_path(path: Path) -> Path:
    """Where the core metadata extracted from the staging file ``path`` goes."""
    return path.with_name(path.name + ".metadata")


def extract(path: Path, filename: str, wheel: bool, requirements: bool) -> Extracted:
    """On a thread, the whole body at ``path``: with ``wheel``, its core metadata
    written to ``metadata_path(path)``; with ``requirements``, the projects the core
    metadata (extracted, or the file itself: a ``.metadata``) requires."""
    data = None
    metadata = None
    if wheel:
        try:
            data = core_metadata(path, filename)
            if data is not None:
                metadata_path(path).write_bytes(data)
                metadata = len(data), hashlib.sha256(data).hexdigest()
        except Exception as e:  # never a reason to fail the download itself
            _log.warn("no core metadata from {filename}: {error}", filename=filename, error=e)
    elif requirements and filename.endswith(".metadata") \
            and path.stat().st_size <= MAX_METADATA_FILE:
        data = path.read_bytes()
    requires = parse_requirements(data) if data is not None and requirements else []
    return Extracted(metadata, requires)


class Receiver(Protocol):
    """Passes the body on as it arrives, holding back the last piece received until the
    body is complete and checked, then calls ``checked``; spools it, and closes the
    spool (running ``then`` on the file) once the client has it (``later``: after the
    client's response has been sent). ``done``: whether the body passed the check, and
    what ``then`` found; TransferBroken when the body broke off or spooling failed. A
    slow client pauses the upstream connection."""

    def __init__(self, consumer: IConsumer | None, spool: Spool, check: Check,
                 checked: Callable[[], None], later: Callable[[Callable[[], object]], None],
                 then: Callable[[Path], Extracted]) -> None:
        self._consumer = consumer
        self._spool = spool
        self._check = check
        self._checked = checked
        self._later = later
        self._then = then
        self._held = b""  # the last piece, not passed on yet
        self._passed = False
        self._ended: Failure | None = None
        self.done: Deferred[tuple[bool, Extracted]] = Deferred()

    def connectionMade(self) -> None:
        if self._consumer is not None:
            # (a response body's transport is its connection's IPushProducer)
            self._consumer.registerProducer(cast(IPushProducer, self.transport), True)

    def dataReceived(self, data: bytes) -> None:
        if not data:
            return
        self._spool.write(data)
        self._check.update(data)
        if self._consumer is not None:
            if self._held:
                self._consumer.write(self._held)
            self._held = data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._consumer is not None:
            try:
                self._consumer.unregisterProducer()
            except Exception:  # the client is gone already
                pass
        self._ended = reason
        complete = isinstance(reason.value, ResponseDone)
        spool = self._spool
        if complete and spool.failure is None \
                and self._check.passed(spool.size, spool.sha256.hexdigest()):
            self._passed = True
            if self._consumer is not None and self._held:
                self._consumer.write(self._held)
            self._checked()
        self._held = b""
        self._later(lambda: spool.close(complete, self._then).addBoth(self._closed))

    def _closed(self, result: Extracted | None | Failure) -> None:
        if isinstance(result, Failure):  # (its last piece was held back from the client too)
            self.done.errback(TransferBroken(f"spooling the body failed: {result.value}"))
        elif self._ended is not None and not isinstance(self._ended.value, ResponseDone):
            self.done.errback(TransferBroken(f"upstream body broke off: {self._ended.value}"))
        else:
            self.done.callback((self._passed, result or Extracted()))
