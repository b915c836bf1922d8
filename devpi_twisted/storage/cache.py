"""The in-memory copy of users and indexes, kept current by replaying changelog records.

Adapters answer user and index reads from here. It only ever moves forward:
a change whose serial it has already applied is skipped, so a change may be
offered twice (once as our own commit, once by a catch-up read) without harm.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from devpi_twisted.storage.interface import (
    DOCTEXT, FILE, INDEX, MIRROR, TOKEN, USER, VERSION, Change, FileRecord, IndexRecord, MirrorRecord,
    TokenRecord, UserRecord, VersionRecord, token_record,
)

FILE_CACHE_SIZE = 4096
MIRROR_CACHE_SIZE = 512  # pages of big projects run to megabytes
# versions written or read lately: an upload reads its version, and twine uploads a
# version's files (sdist, wheels) one after another; few, as descriptions can be long
VERSION_CACHE_SIZE = 64
# records that change no user, password, token or index (uploads write only these)
RELEASE_TYPES = frozenset((VERSION, FILE, MIRROR, DOCTEXT))


class Unparsed(NamedTuple):
    """A version's data as committed, and its serial: a VersionRecord once asked for."""

    value: dict[str, Any]
    serial: int


K = TypeVar("K")
V = TypeVar("V")


class ProjectRecords(Generic[K, V]):
    """Records read from storage (or written), each with the serial it was current at,
    least recently used dropped first; one is valid while its project has not changed
    since. None is kept too: "no such record" is an answer worth remembering."""

    def __init__(self, state: StateCache, limit: int = FILE_CACHE_SIZE) -> None:
        self._state = state
        self._limit = limit
        self._kept: OrderedDict[K, tuple[V | None, str, int]] = OrderedDict()

    def get(self, key: K) -> tuple[bool, V | None]:
        """(True, the record or None) if known and still valid, else (False, None)."""
        hit = self._kept.get(key)
        if hit is None:
            return False, None
        record, project, seen = hit
        if self._state.changed_since(project, seen):
            del self._kept[key]
            return False, None
        self._kept.move_to_end(key)
        return True, record

    def put(self, key: K, record: V | None, project: str, seen: int) -> None:
        self._kept[key] = (record, project, seen)
        self._kept.move_to_end(key)
        if len(self._kept) > self._limit:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self._kept.clear()


class StateCache:
    def __init__(self) -> None:
        self.serial = -1
        self.last_commit_time: float | None = None
        self.users: dict[str, UserRecord] = {}
        self.indexes: dict[tuple[str, str], IndexRecord] = {}
        self.tokens: dict[tuple[str, str], TokenRecord] = {}  # API tokens, (user, id)
        # For pages built from several indexes: the last serial that changed a project's
        # releases anywhere, and the last that changed any index configuration.
        self.project_serials: dict[str, int] = {}
        self.config_serial = -1
        # For project lists: the last serial that changed an index's versions or mirror
        # pages (by "user/index"); a list is valid while none of its order changed.
        self.index_serials: dict[str, int] = {}
        # The last serial that changed anything but releases, files and mirror pages
        # (users, passwords, API tokens, indexes, ...): what a checked identity rests on.
        self.identity_serial = -1
        # Recently read file records (downloads ask for the same few again and again)
        # and mirror pages, valid while their project has not changed.
        self._files: ProjectRecords[str, FileRecord] = ProjectRecords(self)
        self._mirrors: ProjectRecords[tuple[str, str, str], MirrorRecord] = ProjectRecords(
            self, MIRROR_CACHE_SIZE)
        self._versions: ProjectRecords[tuple[str, str, str, str], VersionRecord | Unparsed] = \
            ProjectRecords(self, VERSION_CACHE_SIZE)
        # (user, index, project) of every stored mirror page, or more (a page dropped
        # with its index may linger): a page not in here is not asked of the database
        self._mirror_keys: set[tuple[str, str, str]] = set()

    def changed_since(self, project: str, serial: int) -> bool:
        """Whether anything a page of ``project`` is built from changed after ``serial``."""
        return max(self.config_serial, self.project_serials.get(project, -1)) > serial

    def listing_serial(self, stages: Iterable[str]) -> int:
        """The last serial that changed the projects of ``stages`` or any index config."""
        return max([self.config_serial, *(self.index_serials.get(s, -1) for s in stages)])

    def load(self, serial: int, at: float | None, users: Iterable[UserRecord],
             indexes: Iterable[IndexRecord], mirrors: Iterable[tuple[str, str, str]] = (),
             tokens: Iterable[TokenRecord] = ()) -> None:
        self.serial, self.last_commit_time = serial, at
        self.config_serial = self.identity_serial = serial
        self.project_serials = {}
        self.index_serials = {}
        self._files.clear()
        self._mirrors.clear()
        self._versions.clear()
        self.users = {u.name: u for u in users}
        self.indexes = {(i.user, i.index): i for i in indexes}
        self.tokens = {(t.user, t.token_id): t for t in tokens}
        self._mirror_keys = {_mirror_key(*key) for key in mirrors}

    def apply(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if change.serial <= self.serial:
                continue
            for record in change.records:
                self._apply_record(change.serial, record.type, record.key, record.value)
                if record.type not in RELEASE_TYPES:
                    self.identity_serial = change.serial
            self.serial, self.last_commit_time = change.serial, change.at
            for record in change.records:  # the new values, valid from this serial on
                self._remember(change.serial, record.type, record.key, record.value)

    def _remember(self, serial: int, type_: str, key: str, value: object) -> None:
        if type_ == VERSION:
            assert value is None or isinstance(value, dict)
            user, index, project, version = key.split("/", 3)
            # parsed when asked for (most written versions never are: each upload of a
            # new version would pay for parsing its links on the reactor's thread)
            self._versions.put((user, index, project, version), None if value is None else
                               Unparsed(value, serial), project, serial)
        elif type_ == FILE:
            assert isinstance(value, dict)
            self._files.put(key, FileRecord(key, value["project"], value["entry"], serial),
                            value["project"], serial)
        elif type_ == MIRROR:
            assert value is None or isinstance(value, dict)
            user, index, project = key.split("/", 2)
            record = None if value is None else MirrorRecord(user, index, project, value, serial)
            self._mirrors.put((user, index, project), record, project, serial)

    def _apply_record(self, serial: int, type_: str, key: str, value: object) -> None:
        if type_ == USER:
            if value is None:
                self.users.pop(key, None)
            else:
                assert isinstance(value, dict)
                self.users[key] = UserRecord(key, value["profile"], value["pwhash"], serial)
        elif type_ == VERSION:
            user, index, project = key.split("/", 3)[:3]
            self.project_serials[project] = serial
            self.index_serials[f"{user}/{index}"] = serial
        elif type_ == FILE:
            assert isinstance(value, dict)
            self.project_serials[value["project"]] = serial
        elif type_ == MIRROR:
            assert value is None or isinstance(value, dict)
            user, index, project = key.split("/", 2)
            self.project_serials[project] = serial
            self.index_serials[f"{user}/{index}"] = serial
            if value is None:
                self._mirror_keys.discard((user, index, project))
            else:
                self._mirror_keys.add(_mirror_key(user, index, project))
        elif type_ == TOKEN:
            user, token_id = key.rsplit("/", 1)
            if value is None:
                self.tokens.pop((user, token_id), None)
            else:
                assert isinstance(value, dict)
                self.tokens[(user, token_id)] = token_record(user, token_id, value, serial)
        elif type_ == INDEX:
            self.config_serial = serial
            user, index = key.split("/", 1)
            if value is None:
                self.indexes.pop((user, index), None)
            else:
                assert isinstance(value, dict)
                self.indexes[(user, index)] = IndexRecord(user, index, value, serial)

    def cached_file(self, relpath: str) -> FileRecord | None:
        return self._files.get(relpath)[1]

    def keep_file(self, record: FileRecord | None, seen: int) -> FileRecord | None:
        """Remember ``record``, read from storage when this cache was at serial ``seen``.
        "No record" is not remembered: its project, which validity goes by, is unknown."""
        if record is not None:
            self._files.put(record.relpath, record, record.project, seen)
        return record

    def cached_version(self, user: str, index: str, project: str,
                       version: str) -> tuple[bool, VersionRecord | None]:
        """(known, record): a version written or read lately (None: none), if still valid."""
        known, record = self._versions.get((user, index, project, version))
        if isinstance(record, Unparsed):
            value, serial = record
            record = VersionRecord(user, index, project, version, value, serial)
            self._versions.put((user, index, project, version), record, project, serial)
        return known, record

    def keep_version(self, record: VersionRecord | None, user: str, index: str, project: str,
                     version: str, seen: int) -> VersionRecord | None:
        """Remember a version record (or that there is none) read at serial ``seen``."""
        self._versions.put((user, index, project, version), record, project, seen)
        return record

    def cached_mirror(self, user: str, index: str, project: str) -> tuple[bool, MirrorRecord | None]:
        """(known, record): the page record, or None for "none", if still valid."""
        if (user, index, project) not in self._mirror_keys:
            return True, None  # never stored (as of this cache's serial)
        return self._mirrors.get((user, index, project))

    def keep_mirror(self, record: MirrorRecord | None, user: str, index: str, project: str,
                    seen: int) -> MirrorRecord | None:
        """Remember a mirror page record (or that there is none) read at serial ``seen``."""
        self._mirrors.put((user, index, project), record, project, seen)
        return record

    def indexes_of(self, user: str | None) -> list[IndexRecord]:
        found = [i for i in self.indexes.values() if user is None or i.user == user]
        return sorted(found, key=lambda i: (i.user, i.index))


def _mirror_key(user: str, index: str, project: str) -> tuple[str, str, str]:
    """A key of the stored-pages set, its user and index names shared by all its pages."""
    return sys.intern(user), sys.intern(index), project
