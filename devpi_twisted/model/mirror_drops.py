"""Deletions on a mirror index: what it cached is dropped, not the project (mirror.md 9).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from devpi_twisted.model import releases
from devpi_twisted.model.errors import InvalidInput, NotFound
from devpi_twisted.model.ops import Written
from devpi_twisted.model.release_files import METADATA_SUFFIX
from devpi_twisted.storage.interface import RecordMissing, Storage


async def forget_mirrored(storage: Storage, user: str, index: str, project: str,
                          version: str | None = None, relpath: str | None = None) -> Written:
    """A mirror's cached data dropped (mirror.md 9): a project's page and downloaded
    files (asked upstream again next time); a version's or one file's downloads,
    the page kept (downloaded again when asked) unless no download remains."""
    record = await storage.get_mirror_project(user, index, project)
    if record is None:
        raise NotFound("project not found")
    stored: dict[str, str] = {}  # relpath -> version, of every live download
    for link in record.value.get("links", []):
        try:
            link_version = releases.split_filename(link["filename"])[1]
        except InvalidInput:
            link_version = ""
        for path in (link["entrypath"], link["entrypath"] + METADATA_SUFFIX):
            found = await storage.get_file(path)
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
            serial = await storage.write_mirror_project(user, index, project, None, files)
        else:
            serial = await storage.write_mirror_files(user, index, project, files)
    except RecordMissing:
        raise NotFound(f"The stage {user}/{index} could not be found.") from None
    what = relpath or (f"version '{version}' of {project}" if version else f"project {project}")
    return Written(serial, None, f"{what} deleted from mirror {user}/{index}")
