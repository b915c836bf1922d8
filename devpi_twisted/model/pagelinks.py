"""The links of simple pages (Link), a page as built (ProjectPage), and the pure
functions model/simple.py builds pages with: links of a private stage's versions and
of a mirror's stored page, the versions they show, the short text of what a policy
held back, and which mirrors may supply a project (model.md 6.2)."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import attrs

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.names import normalize_project
from devpi_twisted.model.policy import Held
from devpi_twisted.model.releases import split_filename
from devpi_twisted.storage.values import IndexConfig, MirrorConfig, StageConfig, VersionData


@attrs.frozen
class Link:
    stage: str
    filename: str
    relpath: str
    sha256: str | None
    requires_python: str | None = None
    yanked: bool | str = False
    size: int | None = None
    upload_time: str | None = None
    core_metadata: str | None = None  # sha256 of the PEP 658 metadata file
    first_seen: str | None = None  # when the mirror first listed it (no upload_time)


@attrs.frozen
class ProjectPage:
    index: str
    project: str
    links: tuple[Link, ...]
    versions: tuple[str, ...]
    serial: int
    mirrors: tuple[tuple[str, MirrorConfig], ...] = ()  # consulted: (name, config)
    # built from a mirror's page not committed yet: its content is not the state at
    # ``serial`` (no ETag from that)
    provisional: bool = False
    hidden: tuple[str, ...] = ()  # stages of the order left out: the reader may not read them
    held: tuple[Held, ...] = ()  # versions/files the index's policy leaves out (model/policy.py)
    due: float | None = None  # when a file held back for its age is released: rebuilt then
    # what is held back, as a short text for the ETag: a page rebuilt when an age ran out
    # has the serial of the one before, but not its content
    held_tag: str = ""


def links_of_version(stage: str, data: VersionData) -> list[Link]:
    found = []
    for link in data.links:
        if link.rel != "releasefile":
            continue
        found.append(Link(
            stage=stage, filename=link.filename, relpath=link.entrypath,
            sha256=link.hashes.get("sha256"), requires_python=data.requires_python,
            yanked=link.yanked, size=link.size, upload_time=link.upload_time,
            core_metadata=(link.core_metadata or {}).get("sha256")))
    return found


def links_of_mirror(stage: str, value: Mapping[str, Any]) -> list[Link]:
    extracted = value.get("extracted", {})
    return [Link(stage=stage, filename=link["filename"], relpath=link["entrypath"],
                 sha256=link.get("sha256"), requires_python=link.get("requires_python"),
                 yanked=link.get("yanked", False), size=link.get("size"),
                 upload_time=link.get("upload_time"),
                 core_metadata=link.get("core_metadata") or extracted.get(link["filename"]),
                 first_seen=link.get("first_seen"))
            for link in value.get("links", [])]


def version_of(filename: str) -> str | None:
    try:
        return split_filename(filename)[1]
    except InvalidInput:
        return None


def held_text(held: tuple[Held, ...]) -> str:
    if not held:
        return ""
    return "%x" % zlib.crc32("|".join(f"{h.filename}:{h.rule}" for h in held).encode())


def versions_of(links: list[Link]) -> set[str]:
    versions = set()
    for link in links:
        try:
            versions.add(split_filename(link.filename)[1])
        except InvalidInput:
            pass
    return versions


def allowed_mirrors(configs: Mapping[str, IndexConfig], order: list[str],
                    requested: str, project: str, has: Mapping[str, bool]) -> set[str]:
    """The mirrors of ``order`` that may supply ``project`` (model.md 6.2)."""
    first = configs[requested]
    union = not (isinstance(first, StageConfig) and first.mirror_whitelist_inheritance == "intersection")
    allowed: set[str] | None = None
    whitelisted = private_hit = False
    mirrors = set()
    for stage in order:
        config = configs[stage]
        if config.is_mirror:
            if not private_hit or whitelisted:
                mirrors.add(stage)
            continue
        listed = config.mirror_whitelist if isinstance(config, StageConfig) else ()
        names = {n if n == "*" else normalize_project(n) for n in listed}
        if allowed is None:
            allowed = names
        else:
            allowed = allowed | names if union else allowed & names
        if "*" in allowed or project in allowed:
            whitelisted = True
        elif has.get(stage):
            private_hit = True
    return mirrors
