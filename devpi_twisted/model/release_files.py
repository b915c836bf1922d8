"""Release files of private indexes: the kinds of links, an upload as received, and the
pieces of data uploads and pushes write (file entries, link history, paths to delete).
"""

from __future__ import annotations

import datetime
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from devpi_twisted.model import releases
from devpi_twisted.model.errors import Conflict, InvalidInput, NotFound
from devpi_twisted.storage.values import FileLink, VersionData

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
    """The core metadata (PEP 658) taken from the uploaded archive (at most
    archives.MAX_MEMBER_SIZE): held in memory and written straight to its key, not
    spooled to a file of its own first."""

    body: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.body)


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


def http_date(now: float) -> str:
    return email.utils.formatdate(now, usegmt=True)


def iso_time(now: float) -> str:
    """PEP 700's upload-time: ISO 8601 UTC with microseconds."""
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_entry(sha256: str, size: int, project: str, version: str, now: float) -> dict[str, Any]:
    return {"hash_spec": f"sha256={sha256}", "hashes": {"sha256": sha256},
            "last_modified": http_date(now), "project": project, "version": version, "size": size}


def gone_paths(link: FileLink) -> dict[str, Mapping[str, Any]]:
    """File records to mark deleted with a link: the file and its core metadata."""
    gone: dict[str, Mapping[str, Any]] = {link.entrypath: {}}
    if link.core_metadata:
        gone[link.entrypath + METADATA_SUFFIX] = {}
    return gone


def gmtime(now: float) -> tuple[int, ...]:
    return tuple(time.gmtime(now)[:6])


def overwritten(old: FileLink, now: float) -> dict[str, Any]:
    """The history entry that starts a link replacing ``old`` in a volatile index, as devpi
    records it: nobody named, ``count`` going on from the replaced link's."""
    count = sum(entry["count"] for entry in old.log
                if entry.get("what") == "overwrite" and isinstance(entry.get("count"), int))
    return releases.log_entry("overwrite", None, now, count=count + 1)


def without_file(data: VersionData, relpath: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The version's data (JSON) without the file ``relpath`` and the tox results
    pointing at it (None: no link is left), and the paths that go with them."""
    removed = [link for link in data.links
               if link.entrypath == relpath or link.for_entrypath == relpath]
    kept = [link for link in data.links if link not in removed]
    gone: dict[str, Any] = {path: entry for link in removed
                            for path, entry in gone_paths(link).items()}
    gone[relpath] = {}
    return (data.with_links(kept) if kept else None), gone


def with_yanked(data: VersionData, filename: str | None, yanked: bool | str) -> dict[str, Any] | None:
    """The version's data (JSON) with its release files (or the one named) yanked
    (``True`` or a reason) or unyanked (``False``); None when no release file matches."""
    links: list[FileLink | dict[str, Any]] = []
    for link in data.links:
        if link.rel == RELEASEFILE and filename in (None, link.filename):
            changed = {k: v for k, v in link.to_json().items() if k != "yanked"}
            links.append(changed if yanked is False else {**changed, "yanked": yanked})
        else:
            links.append(link)
    touched = any(isinstance(link, dict) for link in links)
    return data.with_links(links) if touched else None
