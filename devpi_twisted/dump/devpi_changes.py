"""devpi-server's changelog entries translated into our records, one devpi serial into
one of our changes under the same serial (so our serials stay gap-free and equal to the
primary's). The dump importer's rules are reused for what both carry (user profiles
and password hashes, index configurations: dump/format.py).

devpi 6 keeps a user's indexes inside the user's record (``USER``), a version's
metadata and file links in one record (``PROJVERSION``) and each file's entry under
its relpath (``STAGEFILE``); devpi 7 (devpi_changes7.py) splits them up further. Keys
that only cache what the others say (project lists, simple links, mirror caches our
mirror fetches again from upstream) are left out. Any other key, or a value we refuse,
raises ``Untranslatable`` naming the serial and the key: nothing of that serial is
written. (The translators live beside the dump importer whose rules they share;
service.py hands ``translator_for`` to the replica's follower.)
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from devpi_twisted.dump.format import config_from_dump, hashes_of, user_from_dump
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.indexes import TYPE_ALIASES, devpi6_spelling
from devpi_twisted.model.names import check_name, normalize_project
from devpi_twisted.model.releases import check_plain_filename
from devpi_twisted.replication.devpi_follow import Untranslatable
from devpi_twisted.storage.interface import FILE, INDEX, USER, VERSION, Record, Storage
from devpi_twisted.storage.values import ELINKS, VersionData, index_config

if TYPE_CHECKING:
    from devpi_twisted.dump.devpi_changes7 import Translator7

# devpi 6 keys holding nothing we keep (derived lists, mirror caches)
IGNORED6 = frozenset({"USERLIST", "PROJNAMES", "PROJVERSIONS", "PROJSIMPLELINKS",
                      "MIRRORNAMESINIT", "PYPIFILE_NOMD5"})
_HASHDIR_A = re.compile("[0-9a-f]{3}")
_HASHDIR_B = re.compile("[0-9a-f]{13}")
# the order records of one serial are written in: what others refer to first
_ORDER = {USER: 0, INDEX: 1, VERSION: 2, FILE: 3}


def plain(value: Any) -> Any:
    """A decoded devpi value as JSON: tuples become lists, sets sorted lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, bytes):
        raise ValueError("binary data where JSON was due")
    return value


def ordered(records: Iterable[Record]) -> tuple[Record, ...]:
    """Creations and changes by kind (users, indexes, versions, files); then the
    deletions of indexes and users, after whatever of theirs went in the same serial."""
    found = list(records)

    def rank(record: Record) -> tuple[int, int]:
        gone = record.value is None and record.type in (USER, INDEX)
        return (1 if gone else 0, -_ORDER[record.type] if gone else _ORDER[record.type])

    return tuple(sorted(found, key=rank))


def upload_time(log: Any) -> str | None:
    """The ISO time of a link's first log entry (devpi 6: a tuple of Y, M, D, h, m, s;
    devpi 7: ISO text)."""
    if not isinstance(log, list) or not log or not isinstance(log[0], Mapping):
        return None
    when = log[0].get("when")
    if isinstance(when, str):
        return when
    if isinstance(when, list) and len(when) >= 6 and all(isinstance(p, int) for p in when[:6]):
        try:
            return datetime.datetime(*when[:6]).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return None
    return None


def index_json(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """An index configuration as we store it; ValueError when we cannot keep it."""
    kind = config.get("type")
    if kind not in TYPE_ALIASES:
        raise ValueError(f"index {name}: unknown index type {kind!r}")
    return index_config(config_from_dump(devpi6_spelling(config))).to_json()


def check_relpath(relpath: str) -> str:
    """A file's key as devpi and we both spell it, ``user/index/+f/AAA/B{13}/filename``
    (names and filename checked as an upload's are); ValueError or InvalidInput else."""
    parts = relpath.split("/")
    if len(parts) != 6 or parts[2] != "+f" or not _HASHDIR_A.fullmatch(parts[3]) \
            or not _HASHDIR_B.fullmatch(parts[4]):
        raise ValueError("not a file path of the form user/index/+f/AAA/BBBBBBBBBBBBB/filename")
    check_name("username", parts[0])
    check_name("indexname", parts[1])
    check_plain_filename(parts[5])
    return relpath


def file_entry(value: Mapping[str, Any]) -> dict[str, Any]:
    """A file record's entry: its hashes (sha256 first), time, project and version."""
    hashes = hashes_of(value)
    entry: dict[str, Any] = {"hashes": hashes,
                             "project": normalize_project(str(value.get("project") or "")),
                             "version": str(value.get("version") or "")}
    if "sha256" in hashes:
        entry["hash_spec"] = f"sha256={hashes['sha256']}"
    elif value.get("hash_spec"):
        entry["hash_spec"] = str(value["hash_spec"])
    for key in ("last_modified", "size", "url"):
        if value.get(key) is not None:
            entry[key] = value[key]
    if not entry["project"]:
        raise ValueError("a file entry without its project")
    return entry


def version_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """A version's data with its links (devpi's links carry our keys already; the upload
    time is taken from the first log entry)."""
    data: dict[str, Any] = plain(value)
    for link in data.get(ELINKS) or []:
        if isinstance(link, dict) and "upload_time" not in link and link.get("rel") != "toxresult":
            found = upload_time(link.get("_log"))
            if found:
                link["upload_time"] = found
    VersionData(data)  # (raises when a link has no entrypath)
    return data


class Translator6:
    """devpi 6's entries, translated against what is stored here so far."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def translate(self, serial: int, changes: Mapping[str, Any]) -> tuple[Record, ...]:
        records: list[Record] = []
        for key, change in changes.items():
            try:
                keyname, _, value = change
                if keyname in IGNORED6:
                    continue
                records += await self._one(str(keyname), str(key), value)
            except Untranslatable:
                raise
            except (InvalidInput, ValueError, TypeError, KeyError) as e:
                raise Untranslatable(serial, str(key), str(e)) from None
        return ordered(records)

    async def _one(self, keyname: str, key: str, value: Any) -> list[Record]:
        if keyname == "USER":
            return await self.user(key.rsplit("/", 1)[0], value)
        if keyname == "PROJVERSION":
            user, index, project, version = key.split("/")[:4]
            check_name("username", user)
            check_name("indexname", index)
            vkey = f"{user}/{index}/{normalize_project(project)}/{version}"
            return [Record(VERSION, vkey, None if value is None else version_json(value))]
        if keyname == "STAGEFILE":
            return await self.file(key, value)
        raise ValueError(f"unknown key type {keyname!r}")

    async def user(self, name: str, value: Any) -> list[Record]:
        check_name("username", name)
        stored = {i.index: i.config.to_json() for i in await self._storage.list_indexes(name)}
        if value is None:
            return [Record(INDEX, f"{name}/{index}", None) for index in stored] + \
                [Record(USER, name, None)]
        value = plain(value)
        indexes = value.get("indexes") or {}
        records = [Record(USER, name, user_from_dump(name, value))]
        for index, config in indexes.items():
            check_name("indexname", index)
            translated = index_json(f"{name}/{index}", config)
            if stored.get(index) != translated:
                records.append(Record(INDEX, f"{name}/{index}", translated))
        records += [Record(INDEX, f"{name}/{index}", None) for index in stored if index not in indexes]
        return records

    async def file(self, relpath: str, value: Any) -> list[Record]:
        check_relpath(relpath)
        if value is None:
            found = await self._storage.get_file(relpath)
            if found is None:
                return []
            return [Record(FILE, relpath, {"project": found.project, "entry": {}})]
        entry = file_entry(plain(value))
        return [Record(FILE, relpath, {"project": entry["project"], "entry": entry})]


def translator_for(major: int, storage: Storage) -> Translator6 | Translator7:
    """The translator of a devpi-server ``major``.x primary's changelog."""
    from devpi_twisted.dump.devpi_changes7 import Translator7

    return Translator7(storage) if major >= 7 else Translator6(storage)
