"""Following whichever primary answers: one of ours, or a devpi-server 6 or 7.

``Follower`` is the replica's changelog follower (follower.py) that first asks the
primary's ``/+api`` who it is: our primaries name themselves ``devpi-twisted`` in
``X-Devpi-Server-Version``, devpi-server sends its bare version. With a devpi primary
the changelog is asked for in devpi's own format (``application/octet-stream`` from
devpi 6, devpi 7's ``application/x-devpi-replica-changes-v2``), decoded (devpi_wire.py)
and translated serial by serial into our records (dump/devpi_changes.py and
dump/devpi_changes7.py, handed in as ``translator_for``), each serial one transaction
under the primary's serial number. The replica's token and headers are devpi's already
(client.py), and so are its file fetches (fetch.py); the key that signs the token is
derived from the shared secret with devpi's own costs unless ``--argon2-*`` named others
(``devpi_signer``).

A serial that cannot be translated stops the follow with one error naming the serial
and the key; everything before it stays applied, and the next start tries it again
(``--skip-serial N``: that serial is written as an empty change, with a warning).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import treq

from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.replication import devpi_wire
from devpi_twisted.replication.client import PrimaryClient, header
from devpi_twisted.replication.follower import ChangelogFollower
from devpi_twisted.storage.interface import Change, Record, Storage

SERVER_VERSION = "X-Devpi-Server-Version"
OURS = "devpi-twisted"
DEVPI6_TYPE = "application/octet-stream"
DEVPI7_TYPE = "application/x-devpi-replica-changes-v2"
PROBE_TIMEOUT = 30.0


class Untranslatable(Exception):
    """A change of the devpi primary we cannot translate; says the serial and the key."""

    def __init__(self, serial: int, key: str, reason: str) -> None:
        super().__init__(f"devpi serial {serial}, key {key!r}: {reason}")
        self.serial = serial
        self.key = key
        self.reason = reason


class Translator(Protocol):
    """One devpi serial's changes as our records; Untranslatable when it cannot."""

    async def translate(self, serial: int, changes: Any) -> tuple[Record, ...]: ...


# (major version of devpi-server, storage) -> its translator (dump/devpi_changes.py)
TranslatorFor = Callable[[int, Storage], Translator]
# the replica's token signer for a devpi primary (derives devpi's replica key, slowly)
DevpiSigner = Callable[[], Awaitable[TokenSigner]]


def devpi_major(version: str | None) -> int | None:
    """The major version of a devpi-server's ``X-Devpi-Server-Version`` (None: ours or
    unknown)."""
    if not version or version.startswith(OURS):
        return None
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


class Follower(ChangelogFollower):
    """The changelog follower for our primaries and devpi's alike."""

    def __init__(self, *args: Any, skip_serial: int | None = None,
                 translator_for: TranslatorFor | None = None,
                 devpi_signer: DevpiSigner | None = None, **kwargs: Any) -> None:
        """``translator_for``: None follows our own primaries only. ``devpi_signer``: the
        replica's token signer for a devpi primary (its key derived with devpi's own
        costs), None to keep the one the client has."""
        super().__init__(*args, **kwargs)
        self._skip_serial = skip_serial
        self._translator_for = translator_for
        self._devpi_signer = devpi_signer
        self._translator: Translator | None = None
        self.primary_kind: str | None = None  # "devpi-twisted", "devpi-server 6.20.3", ...

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def client(self) -> PrimaryClient:
        return self._client

    async def _poll(self, path: str, start: int) -> bool:
        if self.primary_kind is None:
            await self._recognise()
        return await super()._poll(path, start)

    async def _recognise(self) -> None:
        response = await self.client.get("/+api", PROBE_TIMEOUT, Accept="application/json")
        await treq.content(response)
        version = header(response, SERVER_VERSION)
        major = devpi_major(version)
        if major is None:
            self.primary_kind = OURS
            return
        self.primary_kind = f"devpi-server {version}"
        if self._translator_for is None:
            self.stopped_reason = (f"the primary is {self.primary_kind}; this replica cannot "
                                   "follow it")
            self.log.error("{reason}", reason=self.stopped_reason)
            return
        if self._devpi_signer is not None:
            self.client.use_signer(await self._devpi_signer())
        self.accept = DEVPI7_TYPE if major >= 7 else DEVPI6_TYPE
        self._translator = self._translator_for(major, self.storage)
        self.log.info("Following {kind} at {primary} (devpi's replication protocol)",
                      kind=self.primary_kind, primary=self.client.url)

    async def _apply(self, body: bytes, start: int) -> None:
        if self._translator is None:
            await super()._apply(body, start)
            return
        for serial, changes in devpi_wire.changelog_entries(body, start):
            if serial == self._skip_serial:
                self.log.warn("Skipping devpi serial {serial} (--skip-serial): none of its "
                              "changes are applied here", serial=serial)
                records: tuple[Record, ...] = ()
            else:
                try:
                    records = await self._translator.translate(serial, changes)
                except Untranslatable as e:
                    self.stopped_reason = (
                        f"{e}; following stopped, serials up to {serial - 1} are applied. "
                        f"Start again once fixed, or with --skip-serial {serial} to leave "
                        "this serial out")
                    self.log.error("{reason}", reason=self.stopped_reason)
                    return
            await self._import(Change(serial, self._clock.seconds(), records))
