"""devpi-server 7's changelog entries translated into our records (see devpi_changes.py
for devpi 6 and what both share).

devpi 7 sends each serial as a list of ``(keyname, relpath, ulid, parent ulid,
back_serial, value)``. Users and indexes have records of their own (``USER``,
``INDEX``, the configuration in devpi 7's spelling); a version is spread over
``VERSION``, ``VERSIONMETADATA`` and one record per file link (``VERSIONFILE``,
``DOCZIP``, ``TOXRESULT``, each naming its file by a relpath inside the index), with
the file's entry under ``FILE``. We keep a version as one record, so each version a
serial touches is rebuilt from what is stored here and that serial's records.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from devpi_twisted.dump.format import user_from_dump
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import check_name, normalize_project
from devpi_twisted.dump.devpi_changes import (
    check_relpath, file_entry, index_json, ordered, plain, upload_time,
)
from devpi_twisted.replication.devpi_follow import Untranslatable
from devpi_twisted.storage.interface import FILE, INDEX, USER, VERSION, Record, Storage
from devpi_twisted.storage.values import ELINKS, VersionData

# keys holding nothing we keep: derived data and remote (mirror) caches
IGNORED7 = frozenset({"PROJECT", "SIMPLEDATA", "DIGESTULIDS", "FILE_NOHASH",
                      "REMOTEPROJECTINFO", "REMOTEFILE", "REMOTENAMESINIT"})
LINK_KEYS = {"VERSIONFILE": "releasefile", "DOCZIP": "doczip", "TOXRESULT": "toxresult"}


class _Serial:
    """The records of one serial being translated: versions rebuilt, files seen."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.records: list[Record] = []
        self.files: dict[str, Mapping[str, Any]] = {}
        self.versions: dict[str, dict[str, Any] | None] = {}

    async def version(self, key: str) -> dict[str, Any]:
        """The working copy of version ``user/index/project/version`` (new: empty)."""
        found = self.versions.get(key)
        if found is None:
            user, index, project, version = key.split("/", 3)
            stored = await self.storage.get_version(user, index, project, version)
            found = dict(stored.data.to_json()) if stored is not None else {}
            self.versions[key] = found
        return found

    async def hashes(self, relpath: str) -> dict[str, Any]:
        entry = self.files.get(relpath)
        if entry is None:
            stored = await self.storage.get_file(relpath)
            entry = stored.entry if stored is not None else {}
        hashes = dict(entry.get("hashes") or {})
        found: dict[str, Any] = {"hashes": hashes}
        if entry.get("hash_spec"):
            found["hash_spec"] = entry["hash_spec"]
        if entry.get("size") is not None:
            found["size"] = entry["size"]
        return found


def _version_key(key: str) -> tuple[str, str]:
    """``user/index/project/version[/filename]`` -> (our version key, filename)."""
    parts = key.split("/")
    if len(parts) < 4:
        raise ValueError("not a version's key")
    user, index, project, version = parts[:4]
    check_name("username", user)
    check_name("indexname", index)
    return f"{user}/{index}/{normalize_project(project)}/{version}", "/".join(parts[4:])


class Translator7:
    """devpi 7's entries, translated against what is stored here so far."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def translate(self, serial: int, changes: Any) -> tuple[Record, ...]:
        if not isinstance(changes, (list, tuple)):
            raise Untranslatable(serial, "", "the changes of a devpi 7 serial are not a list")
        work = _Serial(self._storage)
        items = []
        for change in changes:
            if not isinstance(change, (list, tuple)) or len(change) != 6:
                raise Untranslatable(serial, "", "a change is not a 6-tuple")
            keyname, key, _, _, _, value = change
            items.append((str(keyname), str(key), plain(value)))
        # files first: the links of the same serial take their hashes from them
        items.sort(key=lambda item: item[0] != "FILE")
        for keyname, key, value in items:
            if keyname in IGNORED7:
                continue
            try:
                await self._one(work, keyname, key, value)
            except (InvalidInput, ValueError, TypeError, KeyError) as e:
                raise Untranslatable(serial, key, str(e)) from None
        for key, data in work.versions.items():
            if data is not None:
                VersionData(data)
            work.records.append(Record(VERSION, key, data))
        return ordered(work.records)

    async def _one(self, work: _Serial, keyname: str, key: str, value: Any) -> None:
        if keyname == "USER":
            check_name("username", key)
            if value is None:
                indexes = await self._storage.list_indexes(key)
                work.records += [Record(INDEX, i.name, None) for i in indexes]
            work.records.append(Record(USER, key, None if value is None else
                                       user_from_dump(key, value)))
        elif keyname == "INDEX":
            user, _, index = key.partition("/")
            check_name("indexname", index)
            work.records.append(Record(INDEX, key, None if value is None else
                                       index_json(key, value)))
        elif keyname == "FILE":
            check_relpath(key)
            if value is None:
                found = await self._storage.get_file(key)
                if found is not None:
                    work.records.append(Record(FILE, key, {"project": found.project, "entry": {}}))
                return
            entry = file_entry(value)
            work.files[key] = entry
            work.records.append(Record(FILE, key, {"project": entry["project"], "entry": entry}))
        elif keyname == "VERSION":
            vkey, _ = _version_key(key)
            if value is None:
                work.versions[vkey] = None
            else:
                await work.version(vkey)
        elif keyname == "VERSIONMETADATA":
            vkey, _ = _version_key(key)
            if value is not None and work.versions.get(vkey, {}) is not None:
                data = await work.version(vkey)
                links = data.get(ELINKS)
                data.clear()
                data.update(value)
                if links:
                    data[ELINKS] = links
        elif keyname in LINK_KEYS:
            await self._link(work, LINK_KEYS[keyname], key, value)
        else:
            raise ValueError(f"unknown key type {keyname!r}")

    async def _link(self, work: _Serial, rel: str, key: str, value: Any) -> None:
        vkey, filename = _version_key(key)
        if work.versions.get(vkey, {}) is None:
            return  # the version goes in this serial
        data = await work.version(vkey)
        user, index = vkey.split("/")[:2]
        links = [link for link in data.get(ELINKS) or []
                 if not _same(link, rel, filename)]
        if value is not None:
            entrypath = f"{user}/{index}/{value['relpath']}"
            link: dict[str, Any] = {"rel": rel, "entrypath": entrypath,
                                    **await work.hashes(entrypath), "_log": value.get("log") or []}
            if rel == "toxresult":
                link["for_entrypath"] = f"{user}/{index}/{value['for_relpath']}"
                link.pop("size", None)
            else:
                found = upload_time(link["_log"])
                if found:
                    link["upload_time"] = found
            links.append(link)
        data[ELINKS] = links


def _same(link: Mapping[str, Any], rel: str, filename: str) -> bool:
    """Whether ``link`` is the one a devpi 7 link record names (a doc zip by its rel)."""
    if link.get("rel") != rel:
        return False
    return rel == "doczip" or posixpath.basename(str(link.get("entrypath", ""))) == filename
