"""Pushes of a release: to another index of this server (a copy of its links and file
bodies, api.md 9.1) or to another index server with the legacy upload form (9.2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from devpi_twisted.model import audit, hooks, releases
from devpi_twisted.model.acl import PKG_READ, UPLOAD, Identity, check_read, matches
from devpi_twisted.model.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.release_files import (
    DOCZIP, METADATA_SUFFIX, RELEASEFILE, TOXRESULT, file_entry, overwritten,
)
from devpi_twisted.model.retry import retrying
from devpi_twisted.model.token_ops import require_scope
from devpi_twisted.storage.values import ELINKS, IndexConfig, StageConfig

if TYPE_CHECKING:
    from devpi_twisted.model.release_ops import ReleaseOps


def may_upload(identity: Identity, config: IndexConfig) -> bool:
    """Whether ``identity`` is in the index's ``acl_upload`` (a mirror takes no uploads)."""
    return isinstance(config, StageConfig) and matches(identity, config.acl_upload)


def http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:  # a broken IPv6 literal or port
        return False


async def push(ops: ReleaseOps, identity: Identity, user: str, index: str, body: Any,
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
    source_config = await ops.stage(user, index)  # read: pkg_read on the source
    project = normalize_project(name)
    check_read(identity, user, index, source_config.acl_read, project)
    current = await ops.version_record(user, index, project, version) if name and version else None
    if current is None:
        raise InvalidInput(f"there are no files for {name} {version} on stage {source}")
    target = str(body["targetindex"]).strip("/")
    if target.count("/") != 1:
        raise InvalidInput("targetindex not in format user/index")
    target_user, target_index = target.split("/")
    target_config = await ops.stage(target_user, target_index)
    if not may_upload(identity, target_config):
        raise Unauthenticated(f"user '{identity.username}' cannot upload to '{target}'")
    require_scope(identity, PKG_READ, source, project)
    require_scope(identity, UPLOAD, target, project)
    wanted = {RELEASEFILE, TOXRESULT} if body.get("no_docs") else \
        {DOCZIP} if body.get("only_docs") else {RELEASEFILE, TOXRESULT, DOCZIP}
    links = [link for link in current.data.links if link.rel in wanted]
    if not links:
        raise NotFound(f"no release/files found for {name} {version}")
    volatile = target_config.volatile
    now = ops.now()
    # the search text of pushed docs goes with them (it was extracted at their upload)
    docs = await ops.storage.get_doc_pages(user, index, project, version) \
        if any(link.rel == DOCZIP for link in links) else None

    async def attempt() -> list[list[Any]]:
        existing = await ops.version_record(target_user, target_index, project, version)
        data = dict(current.data.metadata)
        old_links = list(existing.data.links) if existing else []
        new_links: list[dict[str, Any]] = []
        files: dict[str, Mapping[str, Any]] = {}
        log: list[list[Any]] = [[200, "register", name, version, "->", target]]
        for link in sorted(links, key=lambda l: l.entrypath):
            filename, sha256 = link.filename, link.sha256
            relpath = f"{target}/{link.entrypath.split('/', 2)[2]}"
            clash = [l for l in old_links if l.filename == filename and l.rel == link.rel]
            if clash and not volatile and clash[0].hashes.get("sha256") != sha256:
                raise Conflict(f"{filename} already exists in non-volatile index")
            old_links = [l for l in old_links if l not in clash]
            # the target's own count of overwrites, then the pushed file's history (a doc
            # zip's whole, a file's without the source's overwrites), then the push
            history = [overwritten(clash[0], now)] if clash and volatile else []
            history += [e for e in link.log if link.rel == DOCZIP or e.get("what") != "overwrite"]
            history.append(releases.log_entry("push", identity.username, now, src=source, dst=target))
            copied = {**link.to_json(), "entrypath": relpath, "_log": history}
            if link.for_entrypath:
                copied["for_entrypath"] = f"{target}/{link.for_entrypath.split('/', 2)[2]}"
            new_links.append(copied)
            files[relpath] = file_entry(sha256, int(link.size or 0), project, version, now)
            await copy_blob(link.entrypath, relpath, sha256)
            if link.core_metadata:
                meta_sha = link.core_metadata["sha256"]
                files[relpath + METADATA_SUFFIX] = file_entry(meta_sha, 0, project, version, now)
                await copy_blob(link.entrypath + METADATA_SUFFIX, relpath + METADATA_SUFFIX,
                                meta_sha)
            kind = {RELEASEFILE: "store_releasefile", TOXRESULT: "store_toxresult"}.get(link.rel)
            log.append([200, kind, relpath] if kind else [200, "store_doczip", name, version, "->", target])
        data[ELINKS] = [l.to_json() for l in old_links] + new_links
        event = hooks.event(hooks.PUSH, identity, target, project, version, source=source,
                            files=sorted(p.rsplit("/", 1)[-1] for p in files
                                         if not p.endswith(METADATA_SUFFIX)))
        await ops.storage.write_release(target_user, target_index, project, version, data,
                                        files, existing.serial if existing else -1, docs, [event])
        ops.auditor.record(audit.release(identity, audit.PUSH, source, project, version, target=target,
                                         files=sorted(p for p in files if not p.endswith(METADATA_SUFFIX))))
        return log
    return await retrying(attempt, f"{name} {version} is being changed by many requests at once")


async def push_external(ops: ReleaseOps, identity: Identity, user: str, index: str,
                        body: Mapping[str, Any], copy_out: Callable[[str], Any],
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
    if not http_url(body["posturl"]):
        raise InvalidInput("posturl must be an http or https URL")
    config = await ops.stage(user, index)
    check_read(identity, user, index, config.acl_read, normalize_project(name))
    if not may_upload(identity, config):
        if not identity.authenticated:
            raise Unauthenticated(f"log in with upload permission on {user}/{index} to push "
                                  "from it to another server")
        raise Forbidden(f"user '{identity.username}' may not upload to {user}/{index}, so "
                        "may not push from it to another server")
    require_scope(identity, UPLOAD, f"{user}/{index}", normalize_project(name))
    if offline:
        raise Forbidden("this server runs with --offline-mode: it pushes to no other server")
    project = normalize_project(name)
    current = await ops.version_record(user, index, project, version) if name and version else None
    if current is None:
        raise InvalidInput(f"there are no files for {name} {version} on stage {user}/{index}")
    url, auth = body["posturl"], (body["username"], body["password"])
    metadata = current.data.metadata
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
    for link in current.data.links:
        if link.rel not in wanted:
            continue
        relpath, filename = link.entrypath, link.filename
        if link.rel == DOCZIP:
            form = [(":action", "doc_upload"), ("name", name), ("version", version)]
        else:
            pyversion, filetype = releases.pyversion_and_filetype(filename)
            form = [(":action", "file_upload"), ("protocol_version", "1"), *fields,
                    ("pyversion", pyversion), ("filetype", filetype),
                    ("sha256_digest", link.sha256)]
        async with copy_out(relpath) as path:
            status, text = await post_form(url, auth, form, (filename, path))
        if link.rel == DOCZIP:
            log.append([status, "docfile", name])
        else:
            log.append([status, "upload", relpath] + ([] if 200 <= status < 300 else [text]))
    if not log:
        raise NotFound(f"no release/files found for {name} {version}")
    ops.auditor.record(audit.release(identity, audit.PUSH, f"{user}/{index}", project, version,
                                     posturl=audit.without_userinfo(url), username=auth[0],
                                     success=log[-1][0] in (200, 201)))
    return log[-1][0] in (200, 201), log
