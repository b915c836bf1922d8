"""Use cases of private indexes: uploads, tox results, yanking, the views of a project's
versions and the deletions of projects, versions and files (``ReleaseOps``; its pushes
are in push.py, deletions on a mirror in mirror_drops.py).

How an upload's file is stored and linked to its version: file_uploads.py. The other
writes here send the serial they read the version at; a concurrent change makes the
write refused and decided again on fresh data (``retry.retrying``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from devpi_twisted.model import audit, hooks
from devpi_twisted.model import push as pushing
from devpi_twisted.model import releases
from devpi_twisted.model.acl import (
    ANONYMOUS, DEL_ENTRY, DEL_PROJECT, DEL_VERDATA, TOXRESULT_UPLOAD, UPLOAD, Identity, matches,
    readable_order,
)
from devpi_twisted.model.errors import Forbidden, Gone, InvalidInput, NotFound, Unauthenticated
from devpi_twisted.model.indexes import resolution_order
from devpi_twisted.model.mirror_drops import forget_mirrored
from devpi_twisted.model.names import can_be_stored, normalize_project
from devpi_twisted.model.file_uploads import FileUploads, write_version
from devpi_twisted.model.ops import Written
from devpi_twisted.model.push import may_upload
from devpi_twisted.model.token_ops import require_scope
from devpi_twisted.model.release_files import (  # (the names the web layer imports from here)
    DOCZIP, RELEASEFILE, BadForm, CheckArchive, Identical, IncomingFile, IncomingMetadata,
    StageMissing, gone_paths, with_yanked, without_file,
)
from devpi_twisted.model.retry import retrying
from devpi_twisted.storage.blobs import BlobStore
from devpi_twisted.storage.interface import DocPage, FileRecord, Storage, VersionRecord
from devpi_twisted.storage.values import IndexConfig, StageConfig

# the text of an uploaded doc zip's pages, for search (doctext.py, run off the reactor)
DocText = Callable[[Path], Awaitable[Sequence[DocPage]]]

__all__ = ["DOCZIP", "BadForm", "Identical", "IncomingFile", "IncomingMetadata", "ReleaseOps",
           "StageMissing"]


class ReleaseOps:
    """Uploads, tox results, views and deletions of releases; pushes (``push.py``)."""

    def __init__(self, storage: Storage, blobs: BlobStore, clock: Callable[[], float],
                 auditor: audit.Auditor = audit.NO_AUDIT, doc_text: DocText | None = None) -> None:
        self._storage = storage
        self._doc_text = doc_text
        self.auditor = auditor
        self._blobs = blobs
        self._clock = clock
        self._files = FileUploads(storage, blobs, clock)

    @property
    def storage(self) -> Storage:
        return self._storage

    def now(self) -> float:
        return self._clock()

    async def file_record(self, relpath: str) -> FileRecord | None:
        return await self._storage.get_file(relpath)

    async def stage(self, user: str, index: str) -> IndexConfig:
        record = await self._storage.get_index(user, index) if can_be_stored(user + index) else None
        if record is None:
            raise StageMissing(f"The stage {user}/{index} could not be found.")
        return record.config

    @staticmethod
    def _check_upload_permission(identity: Identity, config: IndexConfig) -> None:
        if not may_upload(identity, config):
            if not identity.authenticated:
                raise Unauthenticated("not authenticated, log in to upload", challenge=True)
            raise Forbidden("no permission to submit")

    async def check_upload(self, identity: Identity, user: str, index: str) -> IndexConfig:
        """The checks before an upload body is even read, in devpi's order: the index
        exists (404), is no mirror (404), the identity may upload (401 or 403)."""
        config = await self.stage(user, index)
        if config.is_mirror:
            raise NotFound("cannot submit to mirror index")
        self._check_upload_permission(identity, config)
        require_scope(identity, UPLOAD, f"{user}/{index}")
        return config

    async def submit_form(self, identity: Identity, user: str, index: str,
                          fields: Mapping[str, Sequence[str]], content: IncomingFile | None,
                          check_archive: CheckArchive, config: IndexConfig | None = None) -> Written:
        """The legacy upload form (api.md 8): ``:action`` file_upload, doc_upload or submit.
        ``check_archive`` inspects the release file or doc zip once the form itself is
        found sound (InvalidInput if the archive is not acceptable); ``config``: what
        ``check_upload`` answered before the form was read (None: it is asked now)."""
        if config is None:
            config = await self.check_upload(identity, user, index)
        actions = fields.get(":action")
        action = actions[0] if actions else None
        if not action:  # devpi takes a form without one for a push and fails to read its JSON
            raise BadForm(":action field not found")
        if action not in ("file_upload", "submit", "doc_upload"):
            raise InvalidInput(f"action '{action}' not supported")
        name = (fields.get("name") or [""])[0]
        version = (fields.get("version") or [""])[0]
        require_scope(identity, UPLOAD, f"{user}/{index}", normalize_project(name))
        metadata = releases.metadata_from_form(fields)
        volatile = config.volatile
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
        return await self._files.add(self.auditor, identity, user, index, name, version, metadata,
                                     content, volatile)

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
        docs = list(await self._doc_text(content.path)) if self._doc_text is not None else None
        return await self._files.add(self.auditor, identity, user, index, name, version, metadata,
                                     content, volatile, rel=DOCZIP, filename=releases.doczip_filename(project, version),
                                    docs=docs)

    async def version_record(self, user: str, index: str, project: str, version: str) -> VersionRecord | None:
        if not can_be_stored(version):  # from a JSON body (push, yank)
            return None
        return await self._storage.get_version(user, index, project, version)

    async def _register(self, identity: Identity, user: str, index: str, name: str, version: str,
                        metadata: Mapping[str, Any]) -> Written:
        project = normalize_project(name)

        async def attempt() -> Written:
            current = await self.version_record(user, index, project, version)
            data = releases.new_version_data(name, version, metadata, full=True)
            if current is not None:
                data = {**data, **{k: v for k, v in current.data.to_json().items() if k.startswith("+")}}
            return Written(await write_version(self._storage, user, index, project, version, data,
                                               {}, current))
        return await retrying(attempt, f"{name} {version} is being changed by many requests at once")

    async def add_toxresult(self, identity: Identity, user: str, index: str, relpath: str,
                            content: IncomingFile) -> str:
        """Attach a tox report to a release file of this index (api.md 7.7); returns
        ``relpath#sha256=...`` of the stored report."""
        config = await self.stage(user, index)
        acl = config.acl_toxresult_upload if isinstance(config, StageConfig) else None
        if not matches(identity, (ANONYMOUS,) if acl is None else acl):
            raise Forbidden("No permission to upload tox results. You can use the devpi test "
                            "--no-upload option to skip the upload.")
        require_scope(identity, TOXRESULT_UPLOAD, f"{user}/{index}")

        return await self._files.add_toxresult(self.auditor, identity, user, index, relpath, content)

    # -- views and deletions ------------------------------------------------------------

    async def _stages_with(self, user: str, index: str, project: str, ignore_bases: bool,
                           reader: Identity | None = None) -> list[tuple[str, list[VersionRecord]]]:
        configs: dict[str, IndexConfig] = {i.name: i.config for i in await self._storage.list_indexes()}
        if f"{user}/{index}" not in configs:
            raise NotFound(f"The stage {user}/{index} could not be found.")
        order = [f"{user}/{index}"] if ignore_bases else resolution_order(f"{user}/{index}", configs.get)
        order = readable_order(reader, order, lambda stage: configs[stage].acl_read)
        found = []
        for stage in order:
            if configs[stage].is_mirror:
                continue
            owner, name = stage.split("/", 1)
            records = await self._storage.get_versions(owner, name, project)
            if records:
                found.append((stage, records))
        return found

    async def project_versions(self, user: str, index: str, name: str, ignore_bases: bool = False,
                               reader: Identity | None = None) -> dict[str, dict[str, Any]]:
        """version -> version data (first stage wins, later ones under ``+shadowing``), of
        the stages ``reader`` may read (refused if not the index; None: all)."""
        project = normalize_project(name)
        result: dict[str, dict[str, Any]] = {}
        stages = await self._stages_with(user, index, project, ignore_bases, reader)
        if not stages:
            raise NotFound(f"no project '{project}'")
        for _, records in stages:
            for record in records:
                if record.version in result:
                    result[record.version].setdefault("+shadowing", []).append(record.data.to_json())
                else:
                    result[record.version] = record.data.to_json()
        return result

    async def stage_versions(self, user: str, index: str, name: str,
                             reader: Identity | None = None
                             ) -> list[tuple[str, list[VersionRecord]]]:
        """The versions of ``name`` on each stage along ``user/index``'s bases that
        ``reader`` may read (refused if not the index; None: all), in resolution order:
        the web pages show which index each version comes from."""
        return await self._stages_with(user, index, normalize_project(name), False, reader)

    async def version_data(self, user: str, index: str, name: str, version: str) -> dict[str, Any]:
        versions = await self.project_versions(user, index, name)
        if version not in versions:
            raise NotFound(f"The version {version} of project {normalize_project(name)} does not exist.")
        return versions[version]

    async def project_names(self, user: str, index: str) -> list[str]:
        """The index's own projects (of a mirror: those it holds a page of)."""
        if (await self.stage(user, index)).is_mirror:
            return await self._storage.list_mirror_projects(user, index)
        return await self._storage.list_projects(user, index)

    async def _check_delete(self, identity: Identity, user: str, index: str, force: bool,
                            what: str, refused: str = "cannot delete version on non-volatile index",
                            scope: tuple[str, str | None] = (DEL_VERDATA, None)) -> None:
        """del_project/del_verdata/del_entry: acl_upload members, the owner, root; on a
        non-volatile index only with ``?force``; ``scope``: (permission, project) an API
        token must allow."""
        config = await self.stage(user, index)
        allowed = identity.username in ("root", user) or may_upload(identity, config)
        if not allowed:
            raise Forbidden(f"no permission to delete {what}")
        require_scope(identity, scope[0], f"{user}/{index}", scope[1])
        if not config.volatile and not force:
            raise Forbidden(refused)

    async def delete_project(self, identity: Identity, user: str, index: str, name: str,
                             force: bool = False) -> Written:
        project = normalize_project(name)
        await self._check_delete(identity, user, index, force, f"project {project}",
                                 f"project {project} on non-volatile index {user}/{index}, "
                                 "cannot delete without force", (DEL_PROJECT, project))
        event = audit.release(identity, audit.DELETE_PROJECT, f"{user}/{index}", project, force=force)
        if (await self.stage(user, index)).is_mirror:
            return audit.done(self.auditor, event, await forget_mirrored(self._storage, user, index, project))

        async def attempt() -> Written:
            records = await self._storage.get_versions(user, index, project)
            if not records:
                raise NotFound("project not found")
            serial = await self._storage.delete_project(
                user, index, project, {r.version: r.serial for r in records}, [
                    hooks.event(hooks.DELETE, identity, f"{user}/{index}", project)])
            return Written(serial, None, f"project {project} deleted from stage {user}/{index}")
        return audit.done(self.auditor, event, await retrying(
            attempt, f"{project} is being changed by many requests at once"))

    async def delete_version(self, identity: Identity, user: str, index: str, name: str,
                             version: str, force: bool = False) -> Written:
        project = normalize_project(name)
        await self._check_delete(identity, user, index, force, f"version {version} of {project}",
                                 scope=(DEL_VERDATA, project))
        event = audit.release(identity, audit.DELETE_VERSION, f"{user}/{index}", project, version,
                              force=force)
        if (await self.stage(user, index)).is_mirror:
            return audit.done(self.auditor, event,
                              await forget_mirrored(self._storage, user, index, project, version))

        async def attempt() -> Written:
            current = await self.version_record(user, index, project, version)
            if current is None:
                raise NotFound(f"The version {version} of project {project} does not exist.")
            gone = {path: entry for link in current.data.links
                    for path, entry in gone_paths(link).items()}
            serial = await self._storage.write_release(
                user, index, project, version, None, gone, current.serial, None, [
                    hooks.event(hooks.DELETE, identity, f"{user}/{index}", project, version)])
            return Written(serial, None, f"project '{project}' version '{version}' deleted")
        return audit.done(self.auditor, event, await retrying(
            attempt, f"{project} {version} is being changed by many requests at once"))

    async def delete_file(self, identity: Identity, user: str, index: str, relpath: str,
                          force: bool = False) -> Written:
        """Remove a release file (and tox results pointing at it); a version left without
        links goes too."""

        async def attempt() -> Written:
            record = await self._storage.get_file(relpath)
            if record is None:
                raise NotFound(f"package '{relpath}' doesn't exist")
            if record.deleted:
                raise Gone(f"file '{relpath}' existed, deleted in later serial")
            version = str(record.entry.get("version", ""))
            await self._check_delete(identity, user, index, force, f"file {relpath}",
                                     scope=(DEL_ENTRY, record.project))
            if (await self.stage(user, index)).is_mirror:
                return await forget_mirrored(self._storage, user, index, record.project, version,
                                             relpath=relpath)
            current = await self.version_record(user, index, record.project, version)
            if current is None:
                raise NotFound(f"package '{relpath}' doesn't exist")
            data, gone = without_file(current.data, relpath)
            serial = await self._storage.write_release(
                user, index, record.project, version, data, gone, current.serial, None, [
                    hooks.event(hooks.DELETE, identity, f"{user}/{index}", record.project, version,
                                relpath.rsplit("/", 1)[-1])])
            return Written(serial, None, f"package '{relpath}' deleted")
        written = await retrying(attempt, f"{relpath} is being changed by many requests at once")
        return audit.done(self.auditor, audit.by(identity, audit.DELETE_FILE, f"{user}/{index}",
                                                 path=relpath, force=force), written)

    # -- yanking (PEP 592) --------------------------------------------------------------

    async def set_yanked(self, identity: Identity, user: str, index: str, name: str, version: str,
                         yanked: Any, filename: str | None = None) -> Written:
        """Yank (``True`` or a reason) or unyank (``False``) the files of a version, or one
        file. Allowed to uploaders of the index, on non-volatile indexes too: yanking hides
        a release from resolvers without deleting it."""
        if not (isinstance(yanked, bool) or isinstance(yanked, str)):
            raise InvalidInput("'yanked' must be true, false or a reason text")
        config = await self.stage(user, index)
        if not (identity.username in ("root", user) or may_upload(identity, config)):
            raise Forbidden(f"no permission to yank in {user}/{index}")
        project = normalize_project(name)
        require_scope(identity, UPLOAD, f"{user}/{index}", project)

        async def attempt() -> Written:
            current = await self.version_record(user, index, project, version)
            if current is None:
                raise NotFound(f"The version {version} of project {project} does not exist.")
            data = with_yanked(current.data, filename, yanked)
            if data is None:
                raise NotFound(f"no release file {filename} in {project} {version}")
            kind = hooks.UNYANK if yanked is False else hooks.YANK
            serial = await self._storage.write_release(
                user, index, project, version, data, {}, current.serial, None, [
                    hooks.event(kind, identity, f"{user}/{index}", project, version, filename)])
            what = "unyanked" if yanked is False else "yanked"
            self.auditor.record(audit.yank(identity, f"{user}/{index}", project, version, filename, yanked))
            return Written(serial, None, f"{project} {version}{' ' + filename if filename else ''} {what}")
        return await retrying(attempt, f"{project} {version} is being changed by many requests at once")

    async def push(self, identity: Identity, user: str, index: str, body: Any,
                   copy_blob: Callable[[str, str, str], Any]) -> list[list[Any]]:
        """Copy one release of this index to another index on this server (push.py)."""
        return await pushing.push(self, identity, user, index, body, copy_blob)

    async def push_external(self, identity: Identity, user: str, index: str, body: Mapping[str, Any],
                            copy_out: Callable[[str], Any],
                            post_form: Callable[..., Any], *, offline: bool
                            ) -> tuple[bool, list[list[Any]]]:
        """Upload one release of this index to another index server (push.py)."""
        return await pushing.push_external(self, identity, user, index, body, copy_out,
                                           post_form, offline=offline)

    async def doc_zip(self, user: str, index: str, name: str, version: str) -> tuple[str, str]:
        """(relpath, sha256) of the doc zip of a version on this index; NotFound if none."""
        project = normalize_project(name)
        current = await self.version_record(user, index, project, version)
        for link in (current.data.links if current else ()):
            if link.rel == DOCZIP:
                return link.entrypath, link.sha256
        raise NotFound(f"no documentation for {project} {version}")
