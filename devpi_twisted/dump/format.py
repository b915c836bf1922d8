"""devpi-server 6's dump format (spec/ops.md 4): reading and checking ``dataindex.json``,
and the paths and records an export writes. devpi-server 7's (dumpversion 3) is read
through v3.py's translation into this one.

Pure: no Twisted, no storage. ``read_dump`` checks everything that can be checked
without reading the files' contents and raises one DumpError listing every problem,
so that an import refuses a broken dump before it writes anything.
"""

from __future__ import annotations

import json
import posixpath
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from devpi_twisted.dump.hooks import HOOKS_KEY, Dumped, read_hooks
from devpi_twisted.dump.v3 import V3, V3Error, from_v3
from devpi_twisted.mirror.urls import masked_url
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.mirror_url import check_mirror_url
from devpi_twisted.model.names import check_name, normalize_project
from devpi_twisted.model.passwords import legacy_hash, split_legacy
from devpi_twisted.model.releases import check_plain_filename, doczip_filename, split_filename
from devpi_twisted.storage.values import IndexConfig, MirrorConfig, index_config

DATAINDEX = "dataindex.json"
DUMPVERSION = "2"
KNOWN_DUMPVERSIONS = ("1", "2", V3)
RELEASEFILE, DOCZIP, TOXRESULT = "releasefile", "doczip", "toxresult"
FILE_TYPES = (RELEASEFILE, DOCZIP, TOXRESULT)
INDEX_TYPES = ("stage", "mirror")
NO_CREATED = "1970-01-01T00:00:00Z"
IMPORT_WHO = "<import>"
USER_DROPPED = ("username", "pwhash", "pwsalt", "indexes")
HASH_TYPES = ("sha256", "md5", "sha1", "sha224", "sha384", "sha512", "blake2b", "blake2s")
# the keys of a file record devpi's importer reads; ours add "size", which devpi recomputes
ENTRY_KEYS = ("last_modified", "hash_spec", "hashes", "project", "version", "url")
# a file description's key for what only we keep of a link (devpi's importer ignores it)
EXTRA = "devpi_twisted"
EXTRA_KEYS = ("upload_time", "yanked")


class DumpError(Exception):
    """A dump that cannot be imported; the message lists every problem found."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if len(self.problems) < 2 else
                         f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems))


@attrs.frozen
class FileDesc:
    """One file of an index dump, its hashes as the dump declares them (type -> hex)."""

    type: str
    project: str
    version: str
    relpath: str
    path: Path
    hashes: Mapping[str, str]
    last_modified: str | None
    log: tuple[Mapping[str, Any], ...]
    for_entrypath: str | None = None
    url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)  # EXTRA_KEYS of our own dumps
    size: int | None = None  # as the dump declares it (devpi 7's do)

    @property
    def filename(self) -> str:
        return posixpath.basename(self.relpath)


@attrs.frozen
class IndexDump:
    user: str
    index: str
    config: IndexConfig
    projects: Mapping[str, Mapping[str, Mapping[str, Any]]]  # project -> version -> metadata
    files: tuple[FileDesc, ...]

    @property
    def name(self) -> str:
        return f"{self.user}/{self.index}"

    @property
    def mirror(self) -> bool:
        return self.config.is_mirror

    def files_of(self, project: str, version: str) -> list[FileDesc]:
        return [f for f in self.files if f.project == project and f.version == version]


@attrs.frozen
class Dump:
    directory: Path
    dumpversion: str
    server: str
    users: Mapping[str, Mapping[str, Any]]  # name -> {"profile": ..., "pwhash": ...}
    indexes: tuple[IndexDump, ...]  # bases before the indexes using them
    warnings: tuple[str, ...] = ()
    hooks: tuple[Dumped, ...] = ()  # (dump/hooks.py)

    @property
    def file_count(self) -> int:
        return sum(len(i.files) for i in self.indexes)


def _load(directory: Path) -> Mapping[str, Any]:
    path = directory / DATAINDEX
    if not directory.is_dir():
        raise DumpError([f"{directory} is not a directory"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DumpError([f"{directory} holds no {DATAINDEX}: not a devpi dump"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DumpError([f"cannot read {path}: {e}"]) from None
    except ValueError as e:
        raise DumpError([f"{path} is not valid JSON: {e}"]) from None
    if not isinstance(data, dict):
        raise DumpError([f"{path} does not hold a JSON object"])
    return data


def _name_problem(kind: str, name: Any) -> str | None:
    if not isinstance(name, str):
        return f"{kind} {name!r} is not a string"
    try:
        check_name(kind, name)
    except InvalidInput as e:
        return str(e)
    return None


def user_from_dump(name: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """``{"profile", "pwhash"}`` of a dumped user (model.md 2.1); ``created`` filled in."""
    profile = {k: v for k, v in record.items() if k not in USER_DROPPED and v not in ("", None)}
    profile.setdefault("created", NO_CREATED)
    pwhash = record.get("pwhash")
    pwhash = pwhash if isinstance(pwhash, str) and pwhash else None
    salt = record.get("pwsalt")
    if pwhash and isinstance(salt, str) and salt and not pwhash.startswith("$"):
        pwhash = legacy_hash(salt, pwhash)  # devpi < 4.2: verified, then rehashed at login
    return {"profile": profile, "pwhash": pwhash}


def config_from_dump(config: Mapping[str, Any]) -> dict[str, Any]:
    """An index config as stored (spec ops.md 4.2 step 3): old names renamed, empty
    plugin leftovers dropped, everything else (plugin keys too) kept."""
    result = dict(config)
    if "pypi_whitelist" in result:
        whitelist = result.pop("pypi_whitelist")
        result.setdefault("mirror_whitelist", whitelist)
    if not result.get("uploadtrigger_jenkins", True):
        result.pop("uploadtrigger_jenkins")
    return result


def version_from_dump(version: str, record: Mapping[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in record.items() if not k.startswith("+") and k != ":action"}
    if not data.get("version"):
        data["version"] = version
    return data


def _extra(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {k: value[k] for k in EXTRA_KEYS if k in value}


def _toxresult_hashes(relpath: str, hashes: dict[str, str]) -> dict[str, str]:
    """devpi 6.5 to 6.8 dumped a toxresult with its release file's hash (the one that
    names the toxresult's folder): such hashes say nothing of the toxresult."""
    parts = relpath.split("/")
    if len(parts) > 3 and "=" in parts[3]:
        kind, _, value = parts[3].partition("=")
        if hashes.get(kind) == value.lower():
            return {}
    return hashes


def _safe_relpath(relpath: Any) -> str | None:
    if not isinstance(relpath, str) or not relpath or "\\" in relpath or "\0" in relpath:
        return None
    parts = relpath.split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return None
    return relpath


def hashes_of(mapping: Mapping[str, Any]) -> dict[str, str]:
    """Declared hashes of a file record: ``hashes``, legacy ``md5``, and ``hash_spec``."""
    found: dict[str, str] = {}
    hashes = mapping.get("hashes")
    if isinstance(hashes, Mapping):
        found.update({str(k): str(v).lower() for k, v in hashes.items() if v})
    if mapping.get("md5"):
        found.setdefault("md5", str(mapping["md5"]).lower())
    spec = mapping.get("hash_spec")
    if isinstance(spec, str) and "=" in spec:
        kind, _, value = spec.partition("=")
        if value:
            found.setdefault(kind, value.lower())
    return found


def _order(indexes: Mapping[str, Mapping[str, Any]], problems: list[str],
           warnings: list[str]) -> list[str]:
    """Index names, bases first; bases missing from the dump are warned about."""
    deps: dict[str, list[str]] = {}
    for name, dumped in indexes.items():
        bases = dumped.get("indexconfig", {}).get("bases", []) or []
        if isinstance(bases, str):
            bases = [b for b in bases.split(",") if b]
        kept = []
        for base in bases:
            if base in indexes:
                kept.append(base)
            else:
                warnings.append(f"index {name}: base {base} is not in the dump")
        deps[name] = kept
    ordered: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "busy":
            problems.append("circular bases: " + " -> ".join(path + [name]))
            return
        state[name] = "busy"
        for base in deps[name]:
            visit(base, path + [name])
        state[name] = "done"
        ordered.append(name)

    for name in sorted(deps):
        visit(name, [])
    return ordered


def read_dump(directory: Path, skip_types: Iterable[str] = ()) -> Dump:
    """Read and check a dump directory; raises DumpError listing every problem."""
    directory = Path(directory)
    data = _load(directory)
    problems: list[str] = []
    warnings: list[str] = []
    dumpversion = str(data.get("dumpversion"))
    if dumpversion not in KNOWN_DUMPVERSIONS:
        raise DumpError([f"incompatible dumpversion: {data.get('dumpversion')!r}"])
    if dumpversion == V3:
        try:
            data = from_v3(data)
        except V3Error as e:
            raise DumpError([str(e)]) from None
    users_in = data.get("users")
    indexes_in = data.get("indexes")
    if not isinstance(users_in, dict) or not isinstance(indexes_in, dict):
        raise DumpError([f"{DATAINDEX} lacks the 'users' and 'indexes' mappings"])

    users: dict[str, dict[str, Any]] = {}
    for name, record in users_in.items():
        problem = _name_problem("username", name)
        if problem:
            problems.append(problem)
        elif not isinstance(record, dict):
            problems.append(f"user {name}: the record is not a JSON object")
        else:
            users[name] = user_from_dump(name, record)
            if record.get("pwsalt"):
                warnings.append(f"user {name} has a salted sha256 hash of devpi < 4.2; it is "
                                "replaced by an argon2 hash at the user's first login")

    skip = set(skip_types)
    kept: dict[str, Mapping[str, Any]] = {}
    for name, dumped in indexes_in.items():
        user, sep, index = str(name).partition("/")
        if not sep or _name_problem("indexname", index) or _name_problem("username", user):
            problems.append(f"index name {name!r} is not USER/INDEX with allowed characters")
            continue
        if user not in users_in:
            problems.append(f"index {name}: its user {user} is not in the dump")
            continue
        if not isinstance(dumped, dict) or not isinstance(dumped.get("indexconfig"), dict):
            problems.append(f"index {name}: no 'indexconfig' object")
            continue
        kind = index_config(dumped["indexconfig"]).type
        if kind in skip:
            warnings.append(f"index {name} of type {kind} skipped")
            continue
        if kind not in INDEX_TYPES:
            problems.append(f"index {name}: unknown index type {kind!r} "
                            "(pass --skip-import-type to leave such indexes out)")
            continue
        kept[name] = dumped
    order = _order(kept, problems, warnings)
    indexes = [_index(directory, name, kept[name], dumpversion, problems, warnings) for name in order]
    hooks = read_hooks(data.get(HOOKS_KEY), set(kept), problems)
    if problems:
        raise DumpError(problems)
    server = str(data.get("devpi_server", "unknown"))
    return Dump(directory, dumpversion, server, users, tuple(indexes), tuple(warnings), hooks)


def _check_mirror_url(name: str, config: IndexConfig, warnings: list[str]) -> None:
    """A warning (the URL masked) for a mirror whose URL we would refuse: it is imported
    as it is, and its pages fail until it is fixed."""
    if not isinstance(config, MirrorConfig):
        return
    url = config.to_json().get("mirror_url")  # (as the dump has it, whatever its type)
    if url is None:
        return
    try:
        check_mirror_url(url)
    except InvalidInput as e:
        shown = masked_url(url) if isinstance(url, str) else repr(url)
        warnings.append(f"index {name}: mirror_url {shown} is imported as it is, but {e} "
                        "Fix it with devpi index.")


def _index(directory: Path, name: str, dumped: Mapping[str, Any], dumpversion: str,
           problems: list[str], warnings: list[str]) -> IndexDump:
    user, index = name.split("/", 1)
    config = index_config(config_from_dump(dumped["indexconfig"]))
    _check_mirror_url(name, config, warnings)
    projects: dict[str, dict[str, dict[str, Any]]] = {}
    projects_in = dumped.get("projects") or {}
    if not isinstance(projects_in, dict):
        problems.append(f"index {name}: 'projects' is not an object")
        projects_in = {}
    for project, versions in projects_in.items():
        if not isinstance(versions, dict):
            problems.append(f"index {name}: project {project!r} is not an object")
            continue
        merged = projects.setdefault(normalize_project(str(project)), {})  # old dumps: spellings
        for version, record in versions.items():
            if not isinstance(record, dict) or not str(version).strip():
                problems.append(f"index {name}: version {version!r} of {project} is not an object")
                continue
            merged[str(version)] = version_from_dump(str(version), record)
    files: list[FileDesc] = []
    missing: list[str] = []
    for number, desc in enumerate(dumped.get("files") or []):
        what = f"index {name}: file #{number}"
        if not isinstance(desc, dict):
            problems.append(f"{what} is not an object")
            continue
        relpath = _safe_relpath(desc.get("relpath"))
        if relpath is None:
            problems.append(f"{what}: relpath {desc.get('relpath')!r} is not a plain relative path")
            continue
        what = f"index {name}: {relpath}"
        kind = desc.get("type")
        if kind not in FILE_TYPES:
            problems.append(f"{what}: unknown file type {kind!r}")
            continue
        path = directory.joinpath(*relpath.split("/"))
        if not path.is_file():
            problems.append(f"{what}: the file is missing from the dump")
            continue
        project = normalize_project(str(desc.get("projectname") or ""))
        version = desc.get("version")
        if not version and kind == RELEASEFILE and dumpversion == "1":
            try:
                version = split_filename(posixpath.basename(relpath))[1]
            except InvalidInput as e:
                problems.append(f"{what}: {e}")
                continue
        if not project or not version:
            problems.append(f"{what}: no projectname or version")
            continue
        version = str(version)
        try:  # the names we will store it under (checked now: nothing is written yet)
            check_plain_filename(posixpath.basename(relpath))
            if kind == DOCZIP:
                doczip_filename(project, version)
        except InvalidInput as e:
            problems.append(f"{what}: {e}")
            continue
        if version not in projects.get(project, {}):
            missing.append(f"{project} {version} ({relpath})")
            continue
        mapping = desc.get("entrymapping") or {}
        if not isinstance(mapping, dict):
            problems.append(f"{what}: entrymapping is not an object")
            continue
        hashes = hashes_of(mapping)
        if kind == TOXRESULT:
            hashes = _toxresult_hashes(relpath, hashes)
        unknown = sorted(set(hashes) - set(HASH_TYPES))
        if unknown:
            problems.append(f"{what}: unknown hash type(s) {', '.join(unknown)}")
            continue
        size = mapping.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            problems.append(f"{what}: size {size!r} is not a whole number of bytes")
            continue
        log = desc.get("log")
        if not isinstance(log, list):
            log = [{"what": "upload", "who": IMPORT_WHO, "dst": name}]
        for_entrypath = desc.get("for_entrypath")
        if kind == TOXRESULT and not isinstance(for_entrypath, str):
            problems.append(f"{what}: a toxresult without for_entrypath")
            continue
        files.append(FileDesc(
            type=kind, project=project, version=version, relpath=relpath, path=path, hashes=hashes,
            last_modified=mapping.get("last_modified"), log=tuple(log),
            for_entrypath=for_entrypath if kind == TOXRESULT else None,
            url=mapping.get("url"), extra=_extra(desc.get(EXTRA)), size=size))
    if missing:
        problems.append(f"index {name}: some files weren't imported, their version is not in "
                        f"'projects': {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    for desc in files:
        if desc.type == TOXRESULT:
            target = posixpath.basename(desc.for_entrypath or "")
            if not any(f.type == RELEASEFILE and f.filename == target
                       for f in files if f.project == desc.project and f.version == desc.version):
                problems.append(f"index {name}: {desc.relpath}: no release file {target} "
                                f"in {desc.project} {desc.version}")
    if config.is_mirror and any(f.type != RELEASEFILE or not f.url for f in files):
        problems.append(f"index {name}: a mirror's files must be release files with their url")
    return IndexDump(user, index, config, projects, tuple(files))


# -- export --------------------------------------------------------------------------


def release_dump_path(index: str, project: str, version: str, filename: str) -> str:
    return f"{index}/{project}/{version}/{filename}"


def doczip_dump_path(index: str, project: str, version: str) -> str:
    return f"{index}/{project}-{version}.doc.zip"


def toxresult_dump_path(index: str, project: str, release_hash_spec: str, filename: str) -> str:
    return f"{index}/{project}/{release_hash_spec}/{filename}"


def entry_for_dump(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ENTRY_KEYS if k in entry}


def user_for_dump(name: str, profile: Mapping[str, Any], pwhash: str | None) -> dict[str, Any]:
    record = {**profile, "username": name}
    legacy = split_legacy(pwhash) if pwhash else None
    if legacy is not None:  # never logged in since an old devpi: its own form again
        record["pwsalt"], record["pwhash"] = legacy
    elif pwhash:
        record["pwhash"] = pwhash
    return record


def header(server_version: str, dumpversion: str = DUMPVERSION) -> dict[str, Any]:
    info = sys.version_info
    return {"dumpversion": dumpversion, "devpi_server": server_version,
            "devpi_twisted": server_version,
            "pythonversion": [info.major, info.minor, info.micro, info.releaselevel, info.serial]}
