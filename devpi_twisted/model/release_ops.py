"""Use cases of private indexes: uploads and the files and links they make.

An upload stores the file body first (blob store: temp file, hash check,
rename), then commits the version data and file record in one transaction, so
a crash never leaves a record pointing at a missing file. Version data is
written with the serial it was read at; a concurrent change makes the write
refused and the upload is decided again on fresh data.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from devpi_twisted.model import releases
from devpi_twisted.model.acl import ANONYMOUS, Identity, matches
from devpi_twisted.model.errors import (
    Conflict, Forbidden, Gone, InvalidInput, NotFound, Unauthenticated, Unavailable,
)
from devpi_twisted.model.indexes import MIRROR, parse_bool, resolution_order
from devpi_twisted.model.names import can_be_stored, normalize_project
from devpi_twisted.model.ops import RETRIES, Written
from devpi_twisted.storage.interface import (
    FileRecord, RecordMissing, StaleRecord, Storage, VersionRecord,
)

RELEASEFILE = "releasefile"
DOCZIP = "doczip"
TOXRESULT = "toxresult"
METADATA_SUFFIX = ".metadata"  # PEP 658: the core metadata of a file, beside it


@attrs.frozen
class IncomingFile:
    """An uploaded file, already spooled to ``path`` by this server, which computed its
    size and sha256 while writing it; storing it may move the file away."""

    filename: str
    path: Path
    size: int
    sha256: str
    metadata: IncomingMetadata | None = None


@attrs.frozen
class IncomingMetadata:
    """The core metadata (PEP 658) taken from the uploaded archive, spooled to ``path``."""

    path: Path
    size: int
    sha256: str


class Identical(Conflict):
    """Re-upload of identical content to a non-volatile index (answered 200)."""


class StageMissing(NotFound):
    """The index named does not exist (devpi's upload answers it with a plain 404)."""


class BadForm(InvalidInput):
    """An upload body that is no usable form: devpi does not get as far as the form's own
    checks and answers a plain 400 (its reason phrase names no cause)."""


# looks inside an uploaded archive (its ``rel``: RELEASEFILE or DOCZIP) once the form's own
# checks passed, as devpi answers the form's faults first; raises InvalidInput
CheckArchive = Callable[[IncomingFile, str], Awaitable[None]]


def _http_date(now: float) -> str:
    return email.utils.formatdate(now, usegmt=True)


def _iso_time(now: float) -> str:
    """PEP 700's upload-time: ISO 8601 UTC with microseconds."""
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _file_entry(sha256: str, size: int, project: str, version: str, now: float) -> dict[str, Any]:
    return {"hash_spec": f"sha256={sha256}", "hashes": {"sha256": sha256},
            "last_modified": _http_date(now), "project": project, "version": version, "size": size}


def _gone_paths(link: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """File records to mark deleted with a link: the file and its core metadata."""
    gone: dict[str, Mapping[str, Any]] = {str(link["entrypath"]): {}}
    if link.get("core_metadata"):
        gone[str(link["entrypath"]) + METADATA_SUFFIX] = {}
    return gone


def _gmtime(now: float) -> tuple[int, ...]:
    return tuple(time.gmtime(now)[:6])


def _link_filename(link: Mapping[str, Any]) -> str:
    return str(link["entrypath"]).rsplit("/", 1)[-1]


def _http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:  # a broken IPv6 literal or port
        return False


def _overwritten(old: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The history entry that starts a link replacing ``old`` in a volatile index, as devpi
    records it: nobody named, ``count`` going on from the replaced link's."""
    count = sum(entry["count"] for entry in old.get("_log", [])
                if entry.get("what") == "overwrite" and isinstance(entry.get("count"), int))
    return releases.log_entry("overwrite", None, now, count=count + 1)


class ReleaseOps:
    def __init__(self, storage: Storage, blobs: Any, clock: Callable[[], float]) -> None:
        self._storage = storage
        self._blobs = blobs
        self._clock = clock

    async def file_record(self, relpath: str) -> FileRecord | None:
        return await self._storage.get_file(relpath)

    async def _stage(self, user: str, index: str) -> Mapping[str, Any]:
        record = await self._storage.get_index(user, index) if can_be_stored(user + index) else None
        if record is None:
            raise StageMissing(f"The stage {user}/{index} could not be found.")
        return record.config

    @staticmethod
    def _check_upload_permission(identity: Identity, config: Mapping[str, Any]) -> None:
        if not matches(identity, config.get("acl_upload", ())):
            if not identity.authenticated:
                raise Unauthenticated("not authenticated, log in to upload", challenge=True)
            raise Forbidden("no permission to submit")

    async def check_upload(self, identity: Identity, user: str, index: str) -> Mapping[str, Any]:
        """The checks before an upload body is even read, in devpi's order: the index
        exists (404), is no mirror (404), the identity may upload (401 or 403)."""
        config = await self._stage(user, index)
        if config.get("type") == MIRROR:
            raise NotFound("cannot submit to mirror index")
        self._check_upload_permission(identity, config)
        return config

    async def submit_form(self, identity: Identity, user: str, index: str,
                          fields: Mapping[str, Sequence[str]], content: IncomingFile | None,
                          check_archive: CheckArchive) -> Written:
        """The legacy upload form (api.md 8): ``:action`` file_upload, doc_upload or submit.
        ``check_archive`` inspects the release file or doc zip once the form itself is
        found sound (InvalidInput if the archive is not acceptable)."""
        config = await self.check_upload(identity, user, index)
        action = (fields.get(":action") or [None])[0]
        if not action:  # devpi takes a form without one for a push and fails to read its JSON
            raise BadForm(":action field not found")
        if action not in ("file_upload", "submit", "doc_upload"):
            raise InvalidInput(f"action '{action}' not supported")
        name = (fields.get("name") or [""])[0]
        version = (fields.get("version") or [""])[0]
        metadata = releases.metadata_from_form(fields)
        volatile = parse_bool(config.get("volatile", True))
        if action == "doc_upload":
            return await self._add_docs(identity, user, index, name, version, metadata, content,
                                        volatile, check_archive)
        releases.check_registration(name, version)
        if action == "submit":
            return await self._register(identity, user, index, name, version, metadata)
        if content is None:
            raise InvalidInput("content file field not found")
        releases.check_release_filename(content.filename, name, version)
        await check_archive(content, RELEASEFILE)
        return await self._add_file(identity, user, index, name, version, metadata, content, volatile)

    async def _add_docs(self, identity: Identity, user: str, index: str, name: str, version: str,
                        metadata: Mapping[str, Any], content: IncomingFile | None,
                        volatile: bool, check_archive: CheckArchive) -> Written:
        """doc_upload (api.md 8.3): the zip becomes ``<project>-<version>.doc.zip``; without a
        version, the latest release's docs. The archive is checked last, as devpi answers
        the form's faults first."""
        if content is None:
            raise InvalidInput("content file field not found")
        project = normalize_project(name)
        if not version:
            existing = [r.version for r in await self._storage.get_versions(user, index, project)]
            version = releases.latest_version(existing) or ""
            if not version:
                raise InvalidInput(f"doczip has no version and '{project}' has no releases "
                                   "to derive one from")
            metadata = {}
        releases.check_registration(name, version)
        await check_archive(content, DOCZIP)
        return await self._add_file(identity, user, index, name, version, metadata, content, volatile,
                                    rel=DOCZIP, filename=releases.doczip_filename(project, version))

    async def _version(self, user: str, index: str, project: str, version: str) -> VersionRecord | None:
        if not can_be_stored(version):  # from a JSON body (push, yank)
            return None
        return await self._storage.get_version(user, index, project, version)

    async def _register(self, identity: Identity, user: str, index: str, name: str, version: str,
                        metadata: Mapping[str, Any]) -> Written:
        project = normalize_project(name)
        for _ in range(RETRIES):
            current = await self._version(user, index, project, version)
            data = releases.new_version_data(name, version, metadata, full=True)
            if current is not None:
                data = {**data, **{k: v for k, v in current.data.items() if k.startswith("+")}}
            try:
                serial = await self._storage.write_release(
                    user, index, project, version, data, {}, current.serial if current else -1)
            except StaleRecord:
                continue
            except RecordMissing:
                raise StageMissing(f"The stage {user}/{index} could not be found.") from None
            return Written(serial)
        raise Unavailable(f"{name} {version} is being changed by many requests at once")

    async def _add_file(self, identity: Identity, user: str, index: str, name: str, version: str,
                        metadata: Mapping[str, Any], content: IncomingFile, volatile: bool,
                        rel: str = RELEASEFILE, filename: str | None = None) -> Written:
        """Store a release file (or doc zip) and link it to its version; the version data
        is created (full for release files, minimal for docs) or updated from the form."""
        project = normalize_project(name)
        filename = filename or content.filename
        relpath = releases.relpath(user, index, content.sha256, filename)
        stored = False
        for _ in range(RETRIES):
            current = await self._version(user, index, project, version)
            if current is None:
                data = releases.new_version_data(name, version, metadata, full=rel == RELEASEFILE)
            else:
                data = releases.update_version_data(current.data, metadata)
            links = list(data.get("+elinks", []))
            same = [link for link in links
                    if link.get("rel") == rel and _link_filename(link) == filename]
            files: dict[str, Mapping[str, Any]] = {}
            log = []
            if same:
                old = same[0]
                if not volatile:
                    if old.get("hashes", {}).get("sha256") == content.sha256:
                        raise Identical("Upload of identical file to non volatile index.")
                    raise Conflict(f"{content.filename} already exists in non-volatile index")
                results = [link for link in links if link.get("for_entrypath") == old["entrypath"]]
                for result in results:  # tox results of the replaced file go with it
                    files.update(_gone_paths(result))
                links = [link for link in links if link not in results]
                log.append(_overwritten(old, self._clock()))
                links = [link for link in links if link is not old]
                if old["entrypath"] != relpath:
                    files.update(_gone_paths(old))
            now = self._clock()
            log.append(releases.log_entry("upload", identity.username, now, dst=f"{user}/{index}"))
            hashes = {"sha256": content.sha256}
            link: dict[str, Any] = {
                "rel": rel, "entrypath": relpath, "hash_spec": f"sha256={content.sha256}",
                "hashes": hashes, "size": content.size, "upload_time": _iso_time(now), "_log": log}
            files[relpath] = _file_entry(content.sha256, content.size, project, version, now)
            meta = content.metadata
            if meta is not None:
                link["core_metadata"] = {"sha256": meta.sha256}
                files[relpath + METADATA_SUFFIX] = _file_entry(meta.sha256, meta.size, project,
                                                               version, now)
            links.append(link)
            data["+elinks"] = links
            if not stored:  # the bodies first: a committed record never points at a missing file
                bodies = [(relpath, content.path, content.sha256)]
                if meta is not None:
                    bodies.append((relpath + METADATA_SUFFIX, meta.path, meta.sha256))
                await self._blobs.move_in(bodies)
                stored = True
            try:
                serial = await self._storage.write_release(
                    user, index, project, version, data, files, current.serial if current else -1)
            except StaleRecord:
                continue
            except RecordMissing:
                raise StageMissing(f"The stage {user}/{index} could not be found.") from None
            return Written(serial)
        raise Unavailable(f"{content.filename} is being changed by many requests at once")

    async def add_toxresult(self, identity: Identity, user: str, index: str, relpath: str,
                            content: IncomingFile) -> str:
        """Attach a tox report to a release file of this index (api.md 7.7); returns
        ``relpath#sha256=...`` of the stored report."""
        config = await self._stage(user, index)
        if not matches(identity, config.get("acl_toxresult_upload", (ANONYMOUS,))):
            raise Forbidden("No permission to upload tox results. You can use the devpi test "
                            "--no-upload option to skip the upload.")
        for _ in range(RETRIES):
            record = await self._storage.get_file(relpath)
            current = None
            if record is not None and not record.deleted:
                current = await self._version(user, index, record.project,
                                              str(record.entry.get("version", "")))
            links = list(current.data.get("+elinks", [])) if current else []
            if current is None or not any(l.get("rel") == RELEASEFILE and l["entrypath"] == relpath
                                          for l in links):
                raise NotFound(f"no release file found at {relpath}")
            now = self._clock()
            count = sum(1 for link in links if link.get("for_entrypath") == relpath)
            target = releases.toxresult_filename(relpath, list(_gmtime(now)), count)
            log = [releases.log_entry("upload", identity.username, now, dst=f"{user}/{index}")]
            links.append({"rel": TOXRESULT, "entrypath": target, "for_entrypath": relpath,
                          "hash_spec": f"sha256={content.sha256}", "hashes": {"sha256": content.sha256},
                          "_log": log})
            data = {**current.data, "+elinks": links}
            files = {target: _file_entry(content.sha256, content.size, record.project,
                                         current.version, now)}
            await self._blobs.put_file(target, content.path, content.sha256)
            try:
                await self._storage.write_release(user, index, record.project, current.version,
                                                  data, files, current.serial)
            except StaleRecord:
                continue
            return f"{target}#sha256={content.sha256}"
        raise Unavailable(f"{relpath} is being changed by many requests at once")

    # -- views and deletions ------------------------------------------------------------

    async def _stages_with(self, user: str, index: str, project: str,
                           ignore_bases: bool) -> list[tuple[str, list[VersionRecord]]]:
        configs = {i.name: i.config for i in await self._storage.list_indexes()}
        if f"{user}/{index}" not in configs:
            raise NotFound(f"The stage {user}/{index} could not be found.")
        order = [f"{user}/{index}"] if ignore_bases else resolution_order(f"{user}/{index}", configs.get)
        found = []
        for stage in order:
            if configs[stage].get("type") == MIRROR:
                continue
            owner, name = stage.split("/", 1)
            records = await self._storage.get_versions(owner, name, project)
            if records:
                found.append((stage, records))
        return found

    async def project_versions(self, user: str, index: str, name: str,
                               ignore_bases: bool = False) -> dict[str, dict[str, Any]]:
        """version -> version data (first stage wins, later ones under ``+shadowing``)."""
        project = normalize_project(name)
        result: dict[str, dict[str, Any]] = {}
        stages = await self._stages_with(user, index, project, ignore_bases)
        if not stages:
            raise NotFound(f"no project '{project}'")
        for _, records in stages:
            for record in records:
                if record.version in result:
                    result[record.version].setdefault("+shadowing", []).append(dict(record.data))
                else:
                    result[record.version] = dict(record.data)
        return result

    async def version_data(self, user: str, index: str, name: str, version: str) -> dict[str, Any]:
        versions = await self.project_versions(user, index, name)
        if version not in versions:
            raise NotFound(f"The version {version} of project {normalize_project(name)} does not exist.")
        return versions[version]

    async def project_names(self, user: str, index: str) -> list[str]:
        """The index's own projects (of a mirror: those it holds a page of)."""
        if (await self._stage(user, index)).get("type") == MIRROR:
            return await self._storage.list_mirror_projects(user, index)
        return await self._storage.list_projects(user, index)

    async def _check_delete(self, identity: Identity, user: str, index: str, force: bool,
                            what: str, refused: str = "cannot delete version on non-volatile index"
                            ) -> None:
        """del_project/del_verdata/del_entry: acl_upload members, the owner, root; on a
        non-volatile index only with ``?force``."""
        config = await self._stage(user, index)
        allowed = identity.username in ("root", user) or matches(identity, config.get("acl_upload", ()))
        if not allowed:
            raise Forbidden(f"no permission to delete {what}")
        if not parse_bool(config.get("volatile", True)) and not force:
            raise Forbidden(refused)

    async def delete_project(self, identity: Identity, user: str, index: str, name: str,
                             force: bool = False) -> Written:
        project = normalize_project(name)
        await self._check_delete(identity, user, index, force, f"project {project}",
                                 f"project {project} on non-volatile index {user}/{index}, "
                                 "cannot delete without force")
        if (await self._stage(user, index)).get("type") == MIRROR:
            return await self._forget_mirrored(user, index, project)
        for _ in range(RETRIES):
            records = await self._storage.get_versions(user, index, project)
            if not records:
                raise NotFound("project not found")
            try:
                serial = await self._storage.delete_project(
                    user, index, project, {r.version: r.serial for r in records})
            except StaleRecord:
                continue
            return Written(serial, None, f"project {project} deleted from stage {user}/{index}")
        raise Unavailable(f"{project} is being changed by many requests at once")

    async def _forget_mirrored(self, user: str, index: str, project: str,
                               version: str | None = None, relpath: str | None = None) -> Written:
        """A mirror's cached data dropped (mirror.md 9): a project's page and downloaded
        files (asked upstream again next time); a version's or one file's downloads,
        the page kept (downloaded again when asked) unless no download remains."""
        record = await self._storage.get_mirror_project(user, index, project)
        if record is None:
            raise NotFound("project not found")
        stored: dict[str, str] = {}  # relpath -> version, of every live download
        for link in record.value.get("links", []):
            try:
                link_version = releases.split_filename(link["filename"])[1]
            except InvalidInput:
                link_version = ""
            for path in (link["entrypath"], link["entrypath"] + METADATA_SUFFIX):
                found = await self._storage.get_file(path)
                if found is not None and not found.deleted:
                    stored[path] = link_version
        if relpath is not None:
            gone = [p for p in stored if p in (relpath, relpath + METADATA_SUFFIX)]
        elif version is not None:
            gone = [p for p, v in stored.items() if v == version]
            if not gone:
                raise NotFound(f"The version {version} of project {project} does not exist.")
        else:
            gone = list(stored)
        drop_page = relpath is None and version is None or \
            relpath is not None and len(gone) == len(stored)
        files: dict[str, Mapping[str, Any]] = {path: {} for path in gone}
        try:
            if drop_page:
                serial = await self._storage.write_mirror_project(user, index, project, None, files)
            else:
                serial = await self._storage.write_mirror_files(user, index, project, files)
        except RecordMissing:
            raise NotFound(f"The stage {user}/{index} could not be found.") from None
        what = relpath or (f"version '{version}' of {project}" if version else f"project {project}")
        return Written(serial, None, f"{what} deleted from mirror {user}/{index}")

    async def delete_version(self, identity: Identity, user: str, index: str, name: str,
                             version: str, force: bool = False) -> Written:
        project = normalize_project(name)
        await self._check_delete(identity, user, index, force, f"version {version} of {project}")
        if (await self._stage(user, index)).get("type") == MIRROR:
            return await self._forget_mirrored(user, index, project, version)
        for _ in range(RETRIES):
            current = await self._version(user, index, project, version)
            if current is None:
                raise NotFound(f"The version {version} of project {project} does not exist.")
            gone = {path: entry for link in current.data.get("+elinks", [])
                    for path, entry in _gone_paths(link).items()}
            try:
                serial = await self._storage.write_release(
                    user, index, project, version, None, gone, current.serial)
            except StaleRecord:
                continue
            return Written(serial, None, f"project '{project}' version '{version}' deleted")
        raise Unavailable(f"{project} {version} is being changed by many requests at once")

    async def delete_file(self, identity: Identity, user: str, index: str, relpath: str,
                          force: bool = False) -> Written:
        """Remove a release file (and tox results pointing at it); a version left without
        links goes too."""
        for _ in range(RETRIES):
            record = await self._storage.get_file(relpath)
            if record is None:
                raise NotFound(f"package '{relpath}' doesn't exist")
            if record.deleted:
                raise Gone(f"file '{relpath}' existed, deleted in later serial")
            version = str(record.entry.get("version", ""))
            await self._check_delete(identity, user, index, force, f"file {relpath}")
            if (await self._stage(user, index)).get("type") == MIRROR:
                return await self._forget_mirrored(user, index, record.project, version,
                                                   relpath=relpath)
            current = await self._version(user, index, record.project, version)
            if current is None:
                raise NotFound(f"package '{relpath}' doesn't exist")
            links = list(current.data.get("+elinks", []))
            removed = [link for link in links
                       if link.get("entrypath") == relpath or link.get("for_entrypath") == relpath]
            kept = [link for link in links if link not in removed]
            data = None if not kept else {**current.data, "+elinks": kept}
            gone = {path: entry for link in removed for path, entry in _gone_paths(link).items()}
            gone[relpath] = {}
            try:
                serial = await self._storage.write_release(
                    user, index, record.project, version, data, gone, current.serial)
            except StaleRecord:
                continue
            return Written(serial, None, f"package '{relpath}' deleted")
        raise Unavailable(f"{relpath} is being changed by many requests at once")

    # -- push ---------------------------------------------------------------------------

    async def push(self, identity: Identity, user: str, index: str, body: Any,
                   copy_blob: Callable[[str, str, str], Any]) -> list[list[Any]]:
        """Copy one release of this index to another index on this server (api.md 9.1);
        ``copy_blob(source, target, sha256)`` copies a file body. Returns the action log."""
        if not isinstance(body, Mapping):
            raise InvalidInput("Bad request: expected a JSON object")
        name, version = str(body.get("name") or ""), str(body.get("version") or "")
        source = f"{user}/{index}"
        if not body.get("targetindex"):
            raise InvalidInput("push without 'targetindex' goes to an external index: "
                               "use push_external")
        extra = sorted(set(body) - {"name", "version", "targetindex", "no_docs", "only_docs"})
        if extra:
            raise InvalidInput(f"unknown additional options: {', '.join(extra)}")
        if body.get("no_docs") and body.get("only_docs"):
            raise InvalidInput("can't use 'no_docs' and 'only_docs' together")
        await self._stage(user, index)
        project = normalize_project(name)
        current = await self._version(user, index, project, version) if name and version else None
        if current is None:
            raise InvalidInput(f"there are no files for {name} {version} on stage {source}")
        target = str(body["targetindex"]).strip("/")
        if target.count("/") != 1:
            raise InvalidInput("targetindex not in format user/index")
        target_user, target_index = target.split("/")
        target_config = await self._stage(target_user, target_index)
        if target_config.get("type") == MIRROR or not matches(identity, target_config.get("acl_upload", ())):
            raise Unauthenticated(f"user '{identity.username}' cannot upload to '{target}'")
        wanted = {RELEASEFILE, TOXRESULT} if body.get("no_docs") else \
            {DOCZIP} if body.get("only_docs") else {RELEASEFILE, TOXRESULT, DOCZIP}
        links = [link for link in current.data.get("+elinks", []) if link.get("rel") in wanted]
        if not links:
            raise NotFound(f"no release/files found for {name} {version}")
        volatile = parse_bool(target_config.get("volatile", True))
        now = self._clock()
        for _ in range(RETRIES):
            existing = await self._version(target_user, target_index, project, version)
            data = {k: v for k, v in current.data.items() if not k.startswith("+")}
            old_links = list(existing.data.get("+elinks", [])) if existing else []
            new_links: list[dict[str, Any]] = []
            files: dict[str, Mapping[str, Any]] = {}
            log: list[list[Any]] = [[200, "register", name, version, "->", target]]
            for link in sorted(links, key=lambda l: str(l["entrypath"])):
                filename = _link_filename(link)
                sha256 = link.get("hashes", {}).get("sha256", "")
                relpath = f"{target}/{str(link['entrypath']).split('/', 2)[2]}"
                clash = [l for l in old_links if _link_filename(l) == filename and l.get("rel") == link.get("rel")]
                if clash and not volatile and clash[0].get("hashes", {}).get("sha256") != sha256:
                    raise Conflict(f"{filename} already exists in non-volatile index")
                old_links = [l for l in old_links if l not in clash]
                # the target's own count of overwrites, then the pushed file's history (a doc
                # zip's whole, a file's without the source's overwrites), then the push
                history = [_overwritten(clash[0], now)] if clash and volatile else []
                history += [e for e in link.get("_log", [])
                            if link.get("rel") == DOCZIP or e.get("what") != "overwrite"]
                history.append(releases.log_entry("push", identity.username, now, src=source, dst=target))
                copied = {**link, "entrypath": relpath, "_log": history}
                if link.get("for_entrypath"):
                    copied["for_entrypath"] = f"{target}/{str(link['for_entrypath']).split('/', 2)[2]}"
                new_links.append(copied)
                files[relpath] = _file_entry(sha256, int(link.get("size") or 0), project, version, now)
                await copy_blob(str(link["entrypath"]), relpath, sha256)
                if link.get("core_metadata"):
                    meta_sha = link["core_metadata"]["sha256"]
                    files[relpath + METADATA_SUFFIX] = _file_entry(meta_sha, 0, project, version, now)
                    await copy_blob(str(link["entrypath"]) + METADATA_SUFFIX, relpath + METADATA_SUFFIX,
                                    meta_sha)
                kind = {RELEASEFILE: "store_releasefile", TOXRESULT: "store_toxresult"}.get(
                    str(link.get("rel")))
                log.append([200, kind, relpath] if kind else [200, "store_doczip", name, version, "->", target])
            data["+elinks"] = old_links + new_links
            try:
                await self._storage.write_release(target_user, target_index, project, version, data,
                                                  files, existing.serial if existing else -1)
            except StaleRecord:
                continue
            return log
        raise Unavailable(f"{name} {version} is being changed by many requests at once")

    # -- yanking (PEP 592) --------------------------------------------------------------

    async def set_yanked(self, identity: Identity, user: str, index: str, name: str, version: str,
                         yanked: Any, filename: str | None = None) -> Written:
        """Yank (``True`` or a reason) or unyank (``False``) the files of a version, or one
        file. Allowed to uploaders of the index, on non-volatile indexes too: yanking hides
        a release from resolvers without deleting it."""
        if not (isinstance(yanked, bool) or isinstance(yanked, str)):
            raise InvalidInput("'yanked' must be true, false or a reason text")
        config = await self._stage(user, index)
        if not (identity.username in ("root", user) or matches(identity, config.get("acl_upload", ()))):
            raise Forbidden(f"no permission to yank in {user}/{index}")
        project = normalize_project(name)
        for _ in range(RETRIES):
            current = await self._version(user, index, project, version)
            if current is None:
                raise NotFound(f"The version {version} of project {project} does not exist.")
            links, touched = [], False
            for link in current.data.get("+elinks", []):
                if link.get("rel") == RELEASEFILE and filename in (None, _link_filename(link)):
                    link = {k: v for k, v in link.items() if k != "yanked"}
                    if yanked is not False:
                        link["yanked"] = yanked
                    touched = True
                links.append(link)
            if not touched:
                raise NotFound(f"no release file {filename} in {project} {version}")
            try:
                serial = await self._storage.write_release(
                    user, index, project, version, {**current.data, "+elinks": links}, {},
                    current.serial)
            except StaleRecord:
                continue
            what = "unyanked" if yanked is False else "yanked"
            return Written(serial, None, f"{project} {version}{' ' + filename if filename else ''} {what}")
        raise Unavailable(f"{project} {version} is being changed by many requests at once")

    async def doc_zip(self, user: str, index: str, name: str, version: str) -> tuple[str, str]:
        """(relpath, sha256) of the doc zip of a version on this index; NotFound if none."""
        project = normalize_project(name)
        current = await self._version(user, index, project, version)
        for link in (current.data.get("+elinks", []) if current else []):
            if link.get("rel") == DOCZIP:
                return str(link["entrypath"]), str(link.get("hashes", {}).get("sha256", ""))
        raise NotFound(f"no documentation for {project} {version}")

    async def push_external(self, identity: Identity, user: str, index: str, body: Mapping[str, Any],
                            copy_out: Callable[[str], Any],
                            post_form: Callable[..., Any], *, offline: bool
                            ) -> tuple[bool, list[list[Any]]]:
        """Upload one release of this index to another index server with the legacy form
        protocol (api.md 9.2). ``copy_out(relpath)`` gives a local path of a file body (an
        async context manager), ``post_form(url, auth, fields, file)`` posts a form and
        returns (status, text). Returns (success, action log).

        The server itself sends the files, so only those who may upload to this index may
        make it do so, and a server that is to contact no other (``offline``) refuses."""
        name, version = str(body.get("name") or ""), str(body.get("version") or "")
        for key in ("posturl", "username", "password"):
            if not isinstance(body.get(key), str):
                raise InvalidInput(f"push to an external index needs '{key}'")
        if body.get("no_docs") and body.get("only_docs"):
            raise InvalidInput("can't use 'no_docs' and 'only_docs' together")
        if not _http_url(body["posturl"]):
            raise InvalidInput("posturl must be an http or https URL")
        config = await self._stage(user, index)
        if not matches(identity, config.get("acl_upload", ())):
            if not identity.authenticated:
                raise Unauthenticated(f"log in with upload permission on {user}/{index} to push "
                                      "from it to another server")
            raise Forbidden(f"user '{identity.username}' may not upload to {user}/{index}, so "
                            "may not push from it to another server")
        if offline:
            raise Forbidden("this server runs with --offline-mode: it pushes to no other server")
        project = normalize_project(name)
        current = await self._version(user, index, project, version) if name and version else None
        if current is None:
            raise InvalidInput(f"there are no files for {name} {version} on stage {user}/{index}")
        url, auth = body["posturl"], (body["username"], body["password"])
        metadata = {k: v for k, v in current.data.items() if not k.startswith("+")}
        fields = [(k, item) for k, v in metadata.items() if v not in ("", [], None)
                  for item in (v if isinstance(v, list) else [v])]
        log: list[list[Any]] = []
        if body.get("register_project"):
            status, text = await post_form(url, auth, [(":action", "submit"), *fields], None)
            log.append([status, "register", name, version])
            if status not in (200, 201, 410):
                return False, log
        wanted = {DOCZIP} if body.get("only_docs") else {RELEASEFILE} if body.get("no_docs") \
            else {RELEASEFILE, DOCZIP}
        for link in current.data.get("+elinks", []):
            if link.get("rel") not in wanted:
                continue
            relpath, filename = str(link["entrypath"]), _link_filename(link)
            if link.get("rel") == DOCZIP:
                form = [(":action", "doc_upload"), ("name", name), ("version", version)]
            else:
                pyversion, filetype = releases.pyversion_and_filetype(filename)
                form = [(":action", "file_upload"), ("protocol_version", "1"), *fields,
                        ("pyversion", pyversion), ("filetype", filetype),
                        ("sha256_digest", link.get("hashes", {}).get("sha256", ""))]
            async with copy_out(relpath) as path:
                status, text = await post_form(url, auth, form, (filename, path))
            if link.get("rel") == DOCZIP:
                log.append([status, "docfile", name])
            else:
                log.append([status, "upload", relpath] + ([] if 200 <= status < 300 else [text]))
        if not log:
            raise NotFound(f"no release/files found for {name} {version}")
        return log[-1][0] in (200, 201), log
