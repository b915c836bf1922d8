"""Transactions written once for every database, as plans.

A plan is a generator that yields SQL steps and is sent back each step's rows;
its return value is the transaction's result. The one driver (driver.py) runs a
plan inside an adapter's transaction: for sqlite synchronously on its writer
thread, for PostgreSQL asynchronously through txpostgres. The SQL below is the
dialect both speak (``?`` placeholders; PostgreSQL's ``pg_sql`` rewrites them to ``%s``).

Every write plan starts with ``take_serial``: ``UPDATE ... RETURNING`` on the
one-row ``serial_counter``. Its row lock makes writers of every process run one
after another, so the checks a plan makes next see everything committed before
it; a refused write rolls back and returns the number, so serials have no gaps.
It ends with ``commit``, which applies its records and appends them to the
changelog.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from devpi_twisted.storage import searchrows
from devpi_twisted.storage.interface import (
    DOCTEXT, FILE, INDEX, MIRROR, TOKEN, USER, VERSION, Change, FileRecord, IndexRecord,
    MirrorRecord, Record, RecordExists, RecordMissing, StaleRecord, StorageError, TokenRecord,
    UserRecord, VersionRecord, token_record,
)

T = TypeVar("T")

BUMP_SERIAL = "UPDATE serial_counter SET serial = serial + 1 RETURNING serial"
CURRENT_SERIAL = "SELECT serial FROM serial_counter"
SET_SERIAL = "UPDATE serial_counter SET serial = ?"
INSERT_CHANGE = "INSERT INTO changelog (serial, at, records) VALUES (?, ?, ?)"
LAST_CHANGE = "SELECT serial, at FROM changelog ORDER BY serial DESC LIMIT 1"
CHANGES_SINCE = "SELECT serial, at, records FROM changelog WHERE serial > ? ORDER BY serial LIMIT ?"
ALL_USERS = "SELECT name, profile, pwhash, serial FROM users"
ALL_INDEXES = "SELECT owner, name, config, serial FROM indexes"
ALL_MIRROR_KEYS = "SELECT owner, idx, project FROM mirror_projects"
USER_SERIAL = "SELECT serial FROM users WHERE name = ?"
INDEX_SERIAL = "SELECT serial FROM indexes WHERE owner = ? AND name = ?"
INDEXES_OF = "SELECT name, serial FROM indexes WHERE owner = ?"
UPSERT_USER = (
    "INSERT INTO users (name, profile, pwhash, serial) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET profile = excluded.profile, "
    "pwhash = excluded.pwhash, serial = excluded.serial")
DELETE_USER = "DELETE FROM users WHERE name = ?"
UPSERT_INDEX = (
    "INSERT INTO indexes (owner, name, config, serial) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (owner, name) DO UPDATE SET config = excluded.config, serial = excluded.serial")
DELETE_INDEX = "DELETE FROM indexes WHERE owner = ? AND name = ?"
PROJECTS_OF = "SELECT DISTINCT project FROM versions WHERE owner = ? AND idx = ? ORDER BY project"
VERSIONS_OF = "SELECT version, data, serial FROM versions WHERE owner = ? AND idx = ? AND project = ?"
VERSION_SERIAL = "SELECT serial FROM versions WHERE owner = ? AND idx = ? AND project = ? AND version = ?"
ONE_VERSION = ("SELECT data, serial FROM versions "
               "WHERE owner = ? AND idx = ? AND project = ? AND version = ?")
VERSIONS_IN_INDEX = "SELECT project, version FROM versions WHERE owner = ? AND idx = ?"
UPSERT_VERSION = (
    "INSERT INTO versions (owner, idx, project, version, data, serial) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (owner, idx, project, version) DO UPDATE SET data = excluded.data, "
    "serial = excluded.serial")
DELETE_VERSION = "DELETE FROM versions WHERE owner = ? AND idx = ? AND project = ? AND version = ?"
GET_FILE = "SELECT project, entry, serial FROM files WHERE relpath = ?"
LIVE_FILES_OF_PROJECT = (
    "SELECT relpath FROM files WHERE owner = ? AND idx = ? AND project = ? AND entry <> '{}'")
LIVE_FILES_IN_INDEX = "SELECT relpath, project FROM files WHERE owner = ? AND idx = ? AND entry <> '{}'"
LIVE_FILES = "SELECT relpath, project, entry, serial FROM files WHERE entry <> '{}' ORDER BY serial"
UPSERT_FILE = (
    "INSERT INTO files (relpath, owner, idx, project, entry, serial) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (relpath) DO UPDATE SET project = excluded.project, entry = excluded.entry, "
    "serial = excluded.serial")

GET_MIRROR = "SELECT value, serial FROM mirror_projects WHERE owner = ? AND idx = ? AND project = ?"
MIRRORS_OF = "SELECT project FROM mirror_projects WHERE owner = ? AND idx = ? ORDER BY project"
UPSERT_MIRROR = (
    "INSERT INTO mirror_projects (owner, idx, project, value, serial) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (owner, idx, project) DO UPDATE SET value = excluded.value, "
    "serial = excluded.serial")
DELETE_MIRROR = "DELETE FROM mirror_projects WHERE owner = ? AND idx = ? AND project = ?"
# API tokens (tokenplans.py); use times are kept out of the changelog
ALL_TOKENS = "SELECT owner, id, value, serial FROM tokens"
TOKENS_OF = "SELECT id FROM tokens WHERE owner = ?"
UPSERT_TOKEN = (
    "INSERT INTO tokens (owner, id, value, serial) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (owner, id) DO UPDATE SET value = excluded.value, serial = excluded.serial")
DELETE_TOKEN = "DELETE FROM tokens WHERE owner = ? AND id = ?"
# the webhooks of a deleted index go with it (where the deletion originates: hookplans.py)
DELETE_SCOPE_DELIVERIES = "DELETE FROM hook_deliveries WHERE hook IN (SELECT id FROM hooks WHERE scope = ?)"
DELETE_SCOPE_HOOKS = "DELETE FROM hooks WHERE scope = ?"

CATCH_UP_BATCH = 10000


@attrs.frozen
class Step:
    """One SQL statement and what to hand back: ``one`` row, ``all`` rows or nothing."""

    sql: str
    params: tuple[Any, ...]
    fetch: str


Plan = Generator[Step, Any, T]


def one(sql: str, *params: Any) -> Step:
    return Step(sql, params, "one")


def rows(sql: str, *params: Any) -> Step:
    return Step(sql, params, "all")


def run(sql: str, *params: Any) -> Step:
    return Step(sql, params, "none")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def user_record(name: str, profile: Mapping[str, Any], pwhash: str | None) -> Record:
    return Record(USER, name, {"profile": dict(profile), "pwhash": pwhash})


def _expect(row: Sequence[Any] | None, expect_serial: int, what: str) -> None:
    if row is None:
        raise RecordMissing(what)
    if row[0] != expect_serial:
        raise StaleRecord(what)


def _apply(serial: int, record: Record) -> Plan[None]:
    yield from _apply_state(serial, record)
    if record.type == VERSION and record.value is not None:  # its row only if it changes
        changes = searchrows.version_changes(
            record.key, searchrows.searchable(record.key, record.value))
    else:
        changes = searchrows.statements(record.type, record.key, record.value)
    for sql, params in changes:
        yield run(sql, *params)


def _apply_state(serial: int, record: Record) -> Plan[None]:
    value = record.value
    if record.type == USER:
        if value is None:
            yield run(DELETE_USER, record.key)
        else:
            yield run(UPSERT_USER, record.key, dumps(value["profile"]), value["pwhash"], serial)
    elif record.type == INDEX:
        owner, index = record.key.split("/", 1)
        if value is None:
            yield run(DELETE_INDEX, owner, index)
        else:
            yield run(UPSERT_INDEX, owner, index, dumps(value), serial)
    elif record.type == VERSION:
        owner, index, project, version = record.key.split("/", 3)
        if value is None:
            yield run(DELETE_VERSION, owner, index, project, version)
        else:
            yield run(UPSERT_VERSION, owner, index, project, version, dumps(value), serial)
    elif record.type == MIRROR:
        owner, index, project = record.key.split("/", 2)
        if value is None:
            yield run(DELETE_MIRROR, owner, index, project)
        else:
            yield run(UPSERT_MIRROR, owner, index, project, dumps(value), serial)
    elif record.type == TOKEN:
        owner, token_id = record.key.rsplit("/", 1)
        if value is None:
            yield run(DELETE_TOKEN, owner, token_id)
        else:
            yield run(UPSERT_TOKEN, owner, token_id, dumps(value), serial)
    elif record.type == FILE:
        owner, index = record.key.split("/", 2)[:2]
        yield run(UPSERT_FILE, record.key, owner, index, value["project"], dumps(value["entry"]), serial)
    elif record.type != DOCTEXT:  # (search rows only)
        raise StorageError(f"unknown record type {record.type!r}")


def take_serial() -> Plan[int]:
    """The next serial; holds the writers' lock until the transaction ends."""
    return int((yield one(BUMP_SERIAL))[0])


def commit(serial: int, records: Sequence[Record], at: float) -> Plan[Change]:
    """Apply ``records`` and log them under ``serial``; returns the change as a reader of
    the changelog will see it (the records decoded from what was stored)."""
    for record in records:
        yield from _apply(serial, record)
    payload = json.dumps([r.to_json() for r in records], separators=(",", ":"))
    yield run(INSERT_CHANGE, serial, at, payload)
    return Change(serial, at, tuple(Record.from_json(r) for r in json.loads(payload)))


# -- reads -------------------------------------------------------------------------


@attrs.frozen
class Snapshot:
    serial: int
    at: float | None
    users: list[UserRecord]
    indexes: list[IndexRecord]
    mirrors: list[tuple[str, str, str]]  # (owner, index, project) of every stored page
    tokens: list[TokenRecord] = attrs.field(factory=list)


def snapshot() -> Plan[Snapshot]:
    """The state to start a cache from. The serial is read first: a change committed
    while the tables are read is then newer than it and is applied again by the next
    catch-up (records carry whole values, so applying one twice does no harm)."""
    last = yield one(LAST_CHANGE)
    users = [UserRecord(n, json.loads(p), h, s) for n, p, h, s in (yield rows(ALL_USERS))]
    indexes = [IndexRecord(o, n, json.loads(c), s) for o, n, c, s in (yield rows(ALL_INDEXES))]
    mirrors = [(o, n, p) for o, n, p in (yield rows(ALL_MIRROR_KEYS))]
    tokens = [token_record(o, i, json.loads(v), s) for o, i, v, s in (yield rows(ALL_TOKENS))]
    return Snapshot(int(last[0]) if last else -1, float(last[1]) if last else None, users, indexes,
                    mirrors, tokens)


def changes_since(serial: int, limit: int = CATCH_UP_BATCH) -> Plan[list[Change]]:
    found = yield rows(CHANGES_SINCE, serial, limit)
    return [Change(int(s), float(at), tuple(Record.from_json(r) for r in json.loads(recs)))
            for s, at, recs in found]


# -- writes ------------------------------------------------------------------------


def bootstrap(users: Sequence[UserRecord], indexes: Sequence[IndexRecord], at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if serial != 0:
        raise RecordExists("the database already holds a server state")
    records = [user_record(u.name, u.profile, u.pwhash) for u in users]
    records += [Record(INDEX, i.name, i.config.to_json()) for i in indexes]
    return (yield from commit(serial, records, at))


def import_changes(changes: Sequence[Change], at: float) -> Plan[list[Change]]:
    """Apply a primary's changelog entries, consecutive and oldest first, each under its
    own serial, all in this one transaction (replication). Entries this database holds
    already are skipped; StaleRecord if the new ones do not follow the current serial
    one after another (nothing is written then). The counter is taken once (the
    writers' lock, and the first new serial) and set to the last serial at the end.
    Returns the entries applied."""
    current = int((yield one(CURRENT_SERIAL))[0])
    new = [change for change in changes if change.serial > current]
    for expected, change in enumerate(new, current + 1):
        if change.serial != expected:
            raise StaleRecord(f"serial {change.serial} cannot follow {expected - 1}")
    if not new:
        return []
    first = yield from take_serial()
    if first != new[0].serial:  # another writer came between: nothing is written
        raise StaleRecord(f"serial {new[0].serial} cannot follow {first - 1}")
    done: list[Change] = []
    for change in new:
        done.append((yield from commit(change.serial, list(change.records), change.at)))
    if len(new) > 1:
        yield run(SET_SERIAL, new[-1].serial)
    return done


def create_user(name: str, profile: Mapping[str, Any], pwhash: str | None, at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(USER_SERIAL, name)) is not None:
        raise RecordExists(name)
    return (yield from commit(serial, [user_record(name, profile, pwhash)], at))


def update_user(name: str, profile: Mapping[str, Any], pwhash: str | None, expect_serial: int,
                at: float) -> Plan[Change]:
    serial = yield from take_serial()
    _expect((yield one(USER_SERIAL, name)), expect_serial, name)
    return (yield from commit(serial, [user_record(name, profile, pwhash)], at))


def delete_user(name: str, expect_serial: int, expect_indexes: Mapping[str, int], at: float) -> Plan[Change]:
    serial = yield from take_serial()
    _expect((yield one(USER_SERIAL, name)), expect_serial, name)
    indexes = {n: int(s) for n, s in (yield rows(INDEXES_OF, name))}
    if indexes != dict(expect_indexes):
        raise StaleRecord(f"indexes of {name}")
    records: list[Record] = []
    for index in sorted(indexes):
        records += yield from _index_contents_removed(name, index)
        records.append(Record(INDEX, f"{name}/{index}", None))
    records += [Record(TOKEN, f"{name}/{t}", None) for (t,) in (yield rows(TOKENS_OF, name))]
    return (yield from commit(serial, records + [Record(USER, name, None)], at))


def create_index(owner: str, index: str, config: Mapping[str, Any], at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(USER_SERIAL, owner)) is None:
        raise RecordMissing(owner)
    if (yield one(INDEX_SERIAL, owner, index)) is not None:
        raise RecordExists(f"{owner}/{index}")
    return (yield from commit(serial, [Record(INDEX, f"{owner}/{index}", dict(config))], at))


def update_index(owner: str, index: str, config: Mapping[str, Any], expect_serial: int,
                 at: float) -> Plan[Change]:
    serial = yield from take_serial()
    _expect((yield one(INDEX_SERIAL, owner, index)), expect_serial, f"{owner}/{index}")
    return (yield from commit(serial, [Record(INDEX, f"{owner}/{index}", dict(config))], at))


def delete_index(owner: str, index: str, expect_serial: int, at: float) -> Plan[Change]:
    serial = yield from take_serial()
    _expect((yield one(INDEX_SERIAL, owner, index)), expect_serial, f"{owner}/{index}")
    records = yield from _index_contents_removed(owner, index)
    return (yield from commit(serial, records + [Record(INDEX, f"{owner}/{index}", None)], at))


def _index_contents_removed(owner: str, index: str) -> Plan[list[Record]]:
    """Records deleting every version of an index and marking its files deleted; its
    webhooks are deleted with their deliveries (not index state: no records)."""
    yield run(DELETE_SCOPE_DELIVERIES, f"{owner}/{index}")
    yield run(DELETE_SCOPE_HOOKS, f"{owner}/{index}")
    records = [Record(VERSION, f"{owner}/{index}/{p}/{v}", None)
               for p, v in (yield rows(VERSIONS_IN_INDEX, owner, index))]
    records += [tombstone(relpath, project)
                for relpath, project in (yield rows(LIVE_FILES_IN_INDEX, owner, index))]
    records += [Record(MIRROR, f"{owner}/{index}/{p}", None)
                for (p,) in (yield rows(MIRRORS_OF, owner, index))]
    return records


def tombstone(relpath: str, project: str) -> Record:
    return Record(FILE, relpath, {"project": project, "entry": {}})


# -- releases ----------------------------------------------------------------------


def list_projects(owner: str, index: str) -> Plan[list[str]]:
    return [row[0] for row in (yield rows(PROJECTS_OF, owner, index))]


def get_versions(owner: str, index: str, project: str) -> Plan[list[VersionRecord]]:
    found = yield rows(VERSIONS_OF, owner, index, project)
    return [VersionRecord(owner, index, project, v, json.loads(d), int(s)) for v, d, s in found]


def get_version(owner: str, index: str, project: str, version: str) -> Plan[VersionRecord | None]:
    row = yield one(ONE_VERSION, owner, index, project, version)
    return None if row is None else VersionRecord(owner, index, project, version, json.loads(row[0]),
                                                  int(row[1]))


def get_file(relpath: str) -> Plan[FileRecord | None]:
    row = yield one(GET_FILE, relpath)
    return None if row is None else FileRecord(relpath, row[0], json.loads(row[1]), int(row[2]))


def live_files() -> Plan[list[FileRecord]]:
    return [FileRecord(r, p, json.loads(e), int(s)) for r, p, e, s in (yield rows(LIVE_FILES))]


# -- mirrors -----------------------------------------------------------------------


def get_mirror_project(owner: str, index: str, project: str) -> Plan[MirrorRecord | None]:
    row = yield one(GET_MIRROR, owner, index, project)
    return None if row is None else MirrorRecord(owner, index, project, json.loads(row[0]),
                                                 int(row[1]))


def list_mirror_projects(owner: str, index: str) -> Plan[list[str]]:
    return [row[0] for row in (yield rows(MIRRORS_OF, owner, index))]


def write_mirror_project(owner: str, index: str, project: str, value: Mapping[str, Any] | None,
                         files: Mapping[str, Mapping[str, Any]], at: float) -> Plan[Change]:
    record = Record(MIRROR, f"{owner}/{index}/{project}", None if value is None else dict(value))
    return (yield from _mirror_write(owner, index, project, [record], files, at))


def write_mirror_files(owner: str, index: str, project: str, files: Mapping[str, Mapping[str, Any]],
                       at: float) -> Plan[Change]:
    return (yield from _mirror_write(owner, index, project, [], files, at))


def _mirror_write(owner: str, index: str, project: str, records: list[Record],
                  files: Mapping[str, Mapping[str, Any]], at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(INDEX_SERIAL, owner, index)) is None:
        raise RecordMissing(f"{owner}/{index}")
    records = records + [Record(FILE, relpath, {"project": project, "entry": dict(entry)})
                         for relpath, entry in sorted(files.items())]
    return (yield from commit(serial, records, at))
