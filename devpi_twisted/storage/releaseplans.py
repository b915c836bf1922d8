"""The write plans of releases: a version's data and file entries (``write_release``,
which checks the serial the caller read the version at), an upload decided in its own
transaction (``update_release``), an import's many versions at once
(``write_releases``) and a project's deletion. Written once for both databases, like
plans.py's.

``update_release`` reads the version inside the write and hands it to the caller's
``decide``, so an upload costs one trip to the database instead of a read and a
compare-and-swap write, and a refusal (a conflicting file) comes before anything of the
upload is stored: the sqlite adapter runs the upload's ``before_commit`` (its bodies
moved into the file store) only once this plan succeeded, and their fsyncs before the
COMMIT, so a record never points at a missing body and a refused upload leaves none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devpi_twisted.storage import searchrows
from devpi_twisted.storage.auditplans import append
from devpi_twisted.storage.hookplans import enqueue
from devpi_twisted.storage.interface import (
    FILE, VERSION, Change, DocPage, Record, RecordExists, RecordMissing, ReleaseDecision,
    StaleRecord,
)
from devpi_twisted.storage.plans import (
    INDEX_SERIAL, LIVE_FILES_OF_PROJECT, VERSION_SERIAL, VERSIONS_OF, Plan, commit, get_version,
    one, rows, take_serial, tombstone,
)


def _release_records(owner: str, index: str, project: str, version: str,
                     data: Mapping[str, Any] | None, files: Mapping[str, Mapping[str, Any]],
                     docs: Sequence[DocPage] | None) -> list[Record]:
    key = f"{owner}/{index}/{project}/{version}"
    records = [Record(VERSION, key, None if data is None else dict(data))]
    records += [Record(FILE, relpath, {"project": project, "entry": dict(entry)})
                for relpath, entry in sorted(files.items())]
    if docs is not None and data is not None:
        records.append(searchrows.doc_text(key, str(data.get("name") or project), docs))
    return records


def write_release(owner: str, index: str, project: str, version: str, data: Mapping[str, Any] | None,
                  files: Mapping[str, Mapping[str, Any]], expect_serial: int,
                  docs: Sequence[DocPage] | None, at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(INDEX_SERIAL, owner, index)) is None:
        raise RecordMissing(f"{owner}/{index}")
    row = yield one(VERSION_SERIAL, owner, index, project, version)
    if (int(row[0]) if row else -1) != expect_serial:
        raise StaleRecord(f"{owner}/{index}/{project}/{version}")
    records = _release_records(owner, index, project, version, data, files, docs)
    return (yield from commit(serial, records, at))


def update_release(owner: str, index: str, project: str, version: str, decide: ReleaseDecision,
                   docs: Sequence[DocPage] | None, at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(INDEX_SERIAL, owner, index)) is None:
        raise RecordMissing(f"{owner}/{index}")
    write = decide((yield from get_version(owner, index, project, version)))
    records = _release_records(owner, index, project, version, write.data, write.files, docs)
    change = yield from commit(serial, records, at)
    yield from enqueue(write.events, change.serial, change.at)
    yield from append(write.audit)
    return change


def write_releases(owner: str, index: str,
                   items: Sequence[tuple[str, str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]],
                   at: float) -> Plan[Change]:
    """New versions (project, version, data, files) of one index in one transaction, as an
    import writes them; RecordExists if one of the versions is already there."""
    serial = yield from take_serial()
    if (yield one(INDEX_SERIAL, owner, index)) is None:
        raise RecordMissing(f"{owner}/{index}")
    records: list[Record] = []
    for project, version, data, files in items:
        key = f"{owner}/{index}/{project}/{version}"
        if (yield one(VERSION_SERIAL, owner, index, project, version)) is not None:
            raise RecordExists(key)
        records.append(Record(VERSION, key, dict(data)))
        records += [Record(FILE, relpath, {"project": project, "entry": dict(entry)})
                    for relpath, entry in sorted(files.items())]
    return (yield from commit(serial, records, at))


def delete_project(owner: str, index: str, project: str, expect: Mapping[str, int],
                   at: float) -> Plan[Change]:
    serial = yield from take_serial()
    if (yield one(INDEX_SERIAL, owner, index)) is None:
        raise RecordMissing(f"{owner}/{index}")
    found = {v: int(s) for v, _, s in (yield rows(VERSIONS_OF, owner, index, project))}
    if found != dict(expect):
        raise StaleRecord(f"{owner}/{index}/{project}")
    records = [Record(VERSION, f"{owner}/{index}/{project}/{v}", None) for v in sorted(found)]
    records += [tombstone(row[0], project)
                for row in (yield rows(LIVE_FILES_OF_PROJECT, owner, index, project))]
    return (yield from commit(serial, records, at))
