"""The storage interface every adapter implements, and the values it returns.

Every write method is one transaction that takes the next global serial and
appends one changelog entry: the list of records it changed, each with its new
value (``None`` for a deletion). Replaying those records in serial order
rebuilds the state; that is what the in-memory cache, worker processes,
replication and export rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from devpi_twisted.storage.audittypes import AuditEntry, AuditQuery
from devpi_twisted.storage.hooktypes import HookEvent, HookStorage
from devpi_twisted.storage.searchvalues import DocPage, SearchPage, SearchQuery, SearchRow
from devpi_twisted.storage.values import IndexConfig, VersionData, index_config, version_data

__all__ = ["AuditEntry", "AuditQuery", "DocPage", "SearchPage", "SearchQuery", "SearchRow"]

USER = "user"
INDEX = "index"
VERSION = "version"  # key user/index/project/version, value: version data (metadata, "+elinks")
FILE = "file"  # key: the file's relpath, value: {"project": ..., "entry": {...}}; {} entry = deleted
# key user/index/project of a mirror index, value: the cached upstream page
# ({"links": [...], "etag": ..., "serial": ...}, see mirror/), None when dropped
MIRROR = "mirrorproject"
# key user/id of an API token, value {"salt", "created", "restrictions"} and "revoked" (when)
# once revoked (kept, so a refusal can say so); None when its user is deleted
TOKEN = "token"
# key user/index/project/version, value {"name": project as shown, "pages": [[path, title,
# text], ...]}: the text of the version's documentation for search (storage/searchrows.py)
DOCTEXT = "doctext"
UNSTORED = -1  # the serial of a record not committed yet (MirrorRecord)


class StorageError(Exception):
    """Base of the storage layer's own errors."""


class RecordExists(StorageError):
    """A create found the record already there."""


class RecordMissing(StorageError):
    """An update or delete found no record (or, for an index, no owning user)."""


class StaleRecord(StorageError):
    """The record changed since the caller read it; read again and retry."""


class StorageUnavailable(StorageError):
    """The database cannot be reached right now."""


@attrs.frozen
class UserRecord:
    name: str
    profile: Mapping[str, Any]
    pwhash: str | None
    serial: int


@attrs.frozen
class IndexRecord:
    """An index; its configuration is parsed from the stored JSON (``config.to_json()``)."""

    user: str
    index: str
    config: IndexConfig = attrs.field(converter=index_config)
    serial: int

    @property
    def name(self) -> str:
        return f"{self.user}/{self.index}"


@attrs.frozen
class VersionRecord:
    """One version of a project on an index: its data (metadata and file links) parsed
    from the stored JSON (``data.to_json()``)."""

    user: str
    index: str
    project: str
    version: str
    data: VersionData = attrs.field(converter=version_data)
    serial: int


@attrs.frozen
class MirrorRecord:
    """A mirror index's cached upstream page of one project (serial UNSTORED: parsed, its
    write not committed yet)."""

    user: str
    index: str
    project: str
    value: Mapping[str, Any]
    serial: int


@attrs.frozen
class FileRecord:
    """A file's entry (hashes, last_modified, ...); an empty entry means deleted (410)."""

    relpath: str
    project: str
    entry: Mapping[str, Any]
    serial: int

    @property
    def deleted(self) -> bool:
        return not self.entry


@attrs.frozen
class ReleaseWrite:
    """What an upload writes, decided from its version as stored (``update_release``):
    the version's data, file entries (``{}``: deleted), hook events and audit rows."""

    data: Mapping[str, Any]
    files: Mapping[str, Mapping[str, Any]]
    events: Sequence[HookEvent] = ()
    audit: Sequence[AuditEntry] = ()


# an upload's write decided from its version as read in the write's transaction (None:
# none yet); pure (PostgreSQL may run it again); raises to refuse (update_release)
ReleaseDecision = Callable[["VersionRecord | None"], ReleaseWrite]
# blocking work done once a write's plan succeeded, handing back its fsyncs (update_release)
BeforeCommit = Callable[[], Callable[[], None]]


@attrs.frozen
class TokenRecord:
    """An API token of a user (model/apitokens.py): the salt its key is derived with,
    when it was created, its restrictions (caveats), when it was revoked (None: it is
    not); when this node saw it used first and last (None: not known here, e.g. read
    from the cache)."""

    user: str
    token_id: str
    salt: str
    created: float
    restrictions: tuple[str, ...]
    serial: int
    revoked: float | None = None
    first_used: float | None = None
    last_used: float | None = None

    def to_json(self) -> dict[str, Any]:
        value = {"salt": self.salt, "created": self.created, "restrictions": list(self.restrictions)}
        return value if self.revoked is None else {**value, "revoked": self.revoked}


def token_record(user: str, token_id: str, value: Mapping[str, Any], serial: int,
                 first_used: float | None = None, last_used: float | None = None) -> TokenRecord:
    revoked = value.get("revoked")
    return TokenRecord(user, token_id, str(value["salt"]), float(value["created"]),
                       tuple(str(r) for r in value["restrictions"]), serial,
                       None if revoked is None else float(revoked), first_used, last_used)


@attrs.frozen
class Record:
    """One changed record in a changelog entry; ``value`` None means deleted."""

    type: str
    key: str
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "key": self.key, "value": self.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        return cls(type=data["type"], key=data["key"], value=data["value"])


@attrs.frozen
class Change:
    """The changelog entry of one serial."""

    serial: int
    at: float
    records: tuple[Record, ...]


class Storage(HookStorage, Protocol):
    """What the domain layer may ask of a database: every method and property its callers
    use (sqlite.py and postgres.py check their adapters against it). All methods return
    Deferreds except the properties and ``changed_since``, which reflect what this
    process has seen committed."""

    @property
    def serial(self) -> int:
        """The latest committed serial this process knows, -1 for an empty state."""

    @property
    def blocking_writes(self) -> bool:
        """Whether write transactions run on a thread of their own, where they may block
        (sqlite's writer): ``update_release``'s ``before_commit`` runs there."""

    @property
    def identity_serial(self) -> int:
        """The latest serial known here that changed anything but releases, files and
        mirror pages (users, passwords, API tokens, indexes): a credential checked since
        is still good."""

    @property
    def last_commit_time(self) -> float | None: ...

    def get_user(self, name: str) -> Deferred[UserRecord | None]: ...

    def list_users(self) -> Deferred[list[UserRecord]]: ...

    def get_index(self, user: str, index: str) -> Deferred[IndexRecord | None]: ...

    def list_indexes(self, user: str | None = None) -> Deferred[list[IndexRecord]]: ...

    def bootstrap(self, users: Sequence[UserRecord], indexes: Sequence[IndexRecord]) -> Deferred[int]:
        """Serial 0: the initial users and indexes. Raises RecordExists if not empty."""

    def create_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None) -> Deferred[int]:
        """Raises RecordExists."""

    def update_user(self, name: str, profile: Mapping[str, Any], pwhash: str | None,
                    expect_serial: int) -> Deferred[int]:
        """Raises RecordMissing, StaleRecord."""

    def delete_user(self, name: str, expect_serial: int,
                    expect_indexes: Mapping[str, int]) -> Deferred[int]:
        """Deletes the user and its indexes (``expect_indexes``: index name -> serial as read).
        Raises RecordMissing, StaleRecord."""

    def create_index(self, user: str, index: str, config: Mapping[str, Any],
                     events: Sequence[HookEvent] = ()) -> Deferred[int]:
        """``events``: written to the webhooks' outbox in the same transaction (so are
        the other write methods'). Raises RecordExists, RecordMissing (no such user)."""

    def update_index(self, user: str, index: str, config: Mapping[str, Any],
                     expect_serial: int, events: Sequence[HookEvent] = ()) -> Deferred[int]:
        """Raises RecordMissing, StaleRecord."""

    def delete_index(self, user: str, index: str, expect_serial: int,
                     events: Sequence[HookEvent] = ()) -> Deferred[int]:
        """Raises RecordMissing, StaleRecord."""

    def list_projects(self, user: str, index: str) -> Deferred[list[str]]:
        """Normalised names of the projects that have versions on this index (not inherited)."""

    def get_versions(self, user: str, index: str, project: str) -> Deferred[list[VersionRecord]]: ...

    def get_version(self, user: str, index: str, project: str,
                    version: str) -> Deferred[VersionRecord | None]: ...

    def get_file(self, relpath: str) -> Deferred[FileRecord | None]: ...

    def live_files(self) -> Deferred[list[FileRecord]]:
        """Every file record not marked deleted, oldest serial first (replication's scan)."""

    def write_release(self, user: str, index: str, project: str, version: str,
                      data: Mapping[str, Any] | None, files: Mapping[str, Mapping[str, Any]],
                      expect_serial: int, docs: Sequence[DocPage] | None = None,
                      events: Sequence[HookEvent] = (),
                      audit: Sequence[AuditEntry] = ()) -> Deferred[int]:
        """Set (or with ``data`` None delete) one version's data and set file entries
        (``{}`` marks a file deleted). ``expect_serial``: the version's serial as read, -1
        if it had none. ``docs``: the text of its documentation as uploaded now (search).
        ``events``' outbox rows and the ``audit`` rows go in the same transaction.
        Raises RecordMissing (no such index), StaleRecord."""

    def update_release(self, user: str, index: str, project: str, version: str,
                       decide: ReleaseDecision, docs: Sequence[DocPage] | None = None,
                       before_commit: BeforeCommit | None = None) -> Deferred[int]:
        """``write_release`` of what ``decide`` makes of the version as read in the same
        transaction: no read before, no StaleRecord. What ``decide`` raises is raised and
        nothing is written. ``before_commit``: blocking work done once the write is
        decided and before it commits (an upload's bodies moved into the file store;
        the fsyncs it hands back run before the commit, together with those of the
        writes committed with it), only where ``blocking_writes``; what it raises is
        raised, nothing written. Raises RecordMissing (no such index)."""

    def write_releases(self, user: str, index: str,
                       items: Sequence[tuple[str, str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]]
                       ) -> Deferred[int]:
        """New versions ``(project, version, data, files)`` of one index in one transaction
        (import). Raises RecordMissing (no such index), RecordExists (a version exists)."""

    def delete_project(self, user: str, index: str, project: str,
                       expect: Mapping[str, int], events: Sequence[HookEvent] = ()) -> Deferred[int]:
        """Delete every version (``expect``: version -> serial as read) and mark the
        project's files deleted. Raises RecordMissing, StaleRecord."""

    def write_doc_pages(self, user: str, index: str, project: str, version: str, name: str,
                        pages: Sequence[DocPage]) -> Deferred[int]:
        """The text of a version's documentation (an import's docs); RecordMissing if
        there is no such version."""

    def get_doc_pages(self, user: str, index: str, project: str,
                      version: str) -> Deferred[list[DocPage]]:
        """The text of a version's documentation as stored for search (a push copies it)."""

    def search(self, query: SearchQuery) -> Deferred[SearchPage]:
        """One page of the documents matching ``query``, best first, and their count."""

    def build_search(self) -> Deferred[int]:
        """Make the search rows of versions and mirror projects stored before search
        existed (once: later calls do nothing); returns how many rows it made."""

    def search_docs_pending(self) -> Deferred[bool]:
        """After ``build_search`` made the rows of a database from before search: the
        text of its stored docs is still to be read (until ``mark_search_docs_read``)."""

    def mark_search_docs_read(self) -> Deferred[None]:
        """The text of the docs stored before search existed is read: never again."""

    def get_mirror_project(self, user: str, index: str,
                           project: str) -> Deferred[MirrorRecord | None]: ...

    def list_mirror_projects(self, user: str, index: str) -> Deferred[list[str]]:
        """Projects of a mirror index with a cached page."""

    def write_mirror_project(self, user: str, index: str, project: str,
                             value: Mapping[str, Any] | None,
                             files: Mapping[str, Mapping[str, Any]]) -> Deferred[int]:
        """Store (``value`` None: drop) a project's cached page, with file records (an
        empty entry marks a file deleted). No compare-and-swap: a mirror's cache is
        whatever upstream said last. RecordMissing if the index is gone."""

    def write_mirror_files(self, user: str, index: str, project: str,
                           files: Mapping[str, Mapping[str, Any]]) -> Deferred[int]:
        """File records of a mirror's project (downloaded, or deleted), page untouched."""

    def get_token(self, user: str, token_id: str) -> Deferred[TokenRecord | None]:
        """From what this process has seen committed (no use times); revoked ones too."""

    def list_tokens(self, user: str) -> Deferred[list[TokenRecord]]:
        """The user's tokens not revoked, with the use times this node recorded, by id."""

    def create_token(self, user: str, token_id: str, value: Mapping[str, Any]) -> Deferred[int]:
        """Raises RecordMissing (no such user), RecordExists (the id is taken)."""

    def delete_token(self, user: str, token_id: str) -> Deferred[int]:
        """Revoke (the record stays, marked revoked): raises RecordMissing if there is
        no such token or it is revoked already."""

    def record_token_use(self, user: str, token_id: str, at: float) -> Deferred[bool]:
        """Note a use (not a change: no serial, not replicated); True if it was the first
        use this node saw, False otherwise or if the token is gone."""
    def append_audit(self, entries: Sequence[AuditEntry]) -> Deferred[None]:
        """Store audit entries (their ``id`` is assigned) in one transaction, outside the
        serial and the changelog."""

    def query_audit(self, query: AuditQuery) -> Deferred[list[AuditEntry]]:
        """Audit entries matching ``query``, newest (highest id) first, at most its limit."""

    def prune_audit(self, before: float, keep: int) -> Deferred[int]:
        """Delete audit entries older than ``before`` and all but the newest ``keep``;
        returns how many were deleted."""

    def changes_since(self, serial: int, limit: int = 1000) -> Deferred[list[Change]]:
        """Changelog entries with serial > ``serial``, oldest first, at most ``limit``."""

    def import_change(self, change: Change) -> Deferred[bool]:
        """Replication: apply a primary's entry under its own serial in one transaction;
        False if already applied, StaleRecord if the serial before it is missing."""

    def import_changes(self, changes: Sequence[Change]) -> Deferred[int]:
        """Replication: apply a primary's consecutive entries, oldest first, each under
        its own serial, all in one transaction (a crash leaves all or none of them);
        those already applied are skipped. Returns how many were new; StaleRecord (and
        nothing written) if the serial before the first new one is missing."""

    def changed_since(self, project: str, serial: int) -> bool:
        """For caches of pages, answered from what this process has seen: did ``project``'s
        releases or mirror page, or any index configuration, change after ``serial``?"""

    def listing_serial(self, stages: Iterable[str]) -> int:
        """For caches of project lists, answered from what this process has seen: the
        last serial that changed the versions or mirror pages of one of ``stages``
        ("user/index"), or any index configuration."""

    def wait_for(self, serial: int) -> Deferred[None]:
        """Fires once this process has seen ``serial`` committed; cancellable."""

    def sync(self) -> Deferred[None]:
        """Catch up with what other processes of this host have committed."""

    def poll(self) -> Deferred[None]:
        """Pick up changes committed by other processes (a fallback for missed notices)."""

    def close(self) -> Deferred[None]: ...
