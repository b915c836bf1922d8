"""What a replica asks its primary to change, answered once the change has arrived
here: writes relayed to the primary (spec/ops.md 6.6) and mirror pages the primary
brings up to date (mirror.md 10). ``WriteRelay`` sends them and waits, up to a
timeout on the clock, until the primary's serial of the answer is imported here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO
from urllib.parse import quote

import treq
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from devpi_twisted.replication.client import PrimaryClient, PrimaryUnreachable, serial_of
from devpi_twisted.storage.interface import Storage

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "expect", "date", "server"})
# Answer headers the replica sets itself.
OWN_HEADERS = HOP_BY_HOP | {h.lower() for h in (
    "X-Devpi-Serial", "X-Devpi-Uuid", "X-Devpi-Primary-Uuid", "X-Devpi-Master-Uuid",
    "X-Devpi-Api-Version", "X-Devpi-Server-Version")}


class WriteRelay:
    """Requests that change the primary, each answered once its serial is here."""

    log = Logger()

    def __init__(self, clock: IReactorTime, storage: Storage, client: PrimaryClient,
                 timeout: float) -> None:
        """``timeout``: how long ``mirror_page`` waits for the primary and its serial."""
        self._clock = clock
        self._storage = storage
        self._client = client
        self._timeout = timeout

    async def relay(self, method: str, path: str, headers: Mapping[str, list[str]],
                    body: IO[bytes] | None,
                    timeout: float) -> tuple[int, bytes, list[tuple[str, str]], bytes]:
        """Send a write to the primary; once it succeeded, wait (up to ``timeout``) until
        its serial is imported here. (status, reason, headers to pass on, body);
        PrimaryUnreachable when the primary does not answer."""
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        response = await self._client.request(method, path, timeout, sent, data=body)
        content = await treq.content(response)
        serial = serial_of(response)
        if response.code < 400 and serial is not None:
            try:
                await self.wait_for(serial, timeout)
            except PrimaryUnreachable as e:
                self.log.warn("Answering a relayed write before it arrived here: {error}",
                              error=str(e))
        passed = [(name.decode("latin-1"), value.decode("latin-1"))
                  for name, values in response.headers.getAllRawHeaders()
                  if name.decode("latin-1").lower() not in OWN_HEADERS for value in values]
        return response.code, response.phrase, passed, content

    async def mirror_page(self, name: str, project: str) -> str:
        """Have the primary bring its page of ``project`` up to date, then wait until
        that serial is imported here: "fresh", or "missing" when the primary has none."""
        response = await self._client.get(f"/{name}/+simple/{quote(project)}/", self._timeout,
                                          Accept="application/vnd.pypi.simple.v1+json")
        await treq.content(response)
        if response.code == 404:
            return "missing"
        serial = serial_of(response)
        if response.code != 200 or serial is None:
            raise PrimaryUnreachable(f"{response.code} from the primary for {name}/{project}")
        await self.wait_for(serial, self._timeout)
        return "fresh"

    async def wait_for(self, serial: int, timeout: float) -> None:
        """Until ``serial`` is imported here; PrimaryUnreachable after ``timeout``."""
        waiting = self._storage.wait_for(serial)
        waiting.addTimeout(timeout, self._clock)
        try:
            await waiting
        except defer.TimeoutError:
            raise PrimaryUnreachable(
                f"serial {serial} was not replicated within {timeout:g}s") from None
