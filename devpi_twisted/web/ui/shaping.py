"""What the pages show, shaped from the stored values (pure functions): the versions
of a project with the index each comes from, a version's metadata, files and tox
results, the names ``latest`` and ``stable``, project URLs that are safe to link."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs
from packaging.version import InvalidVersion, Version

from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.releases import split_filename, version_sort_key
from devpi_twisted.storage.values import FileLink, VersionData
from devpi_twisted.web.ui.templating import parse_time

RELEASE, TOX, DOCS = "releasefile", "toxresult", "doczip"
LATEST, STABLE = "latest", "stable"


@attrs.frozen
class Release:
    """One version as seen from an index: the stage it comes from (first wins)."""

    stage: str
    version: str
    data: VersionData

    @property
    def files(self) -> tuple[FileLink, ...]:
        return tuple(link for link in self.data.links if link.rel == RELEASE)

    @property
    def uploaded(self) -> float | None:
        """When its first file was uploaded (else its first log entry)."""
        times = [t for t in (parse_time(f.upload_time) for f in self.files) if t is not None]
        if not times:
            times = [t for f in self.data.links for e in f.log[:1]
                     if isinstance(e, Mapping) and (t := parse_time(e.get("when"))) is not None]
        return min(times) if times else None

    @property
    def yanked(self) -> bool:
        files = self.files
        return bool(files) and all(f.yanked not in (False, None) for f in files)

    @property
    def has_docs(self) -> bool:
        return any(link.rel == DOCS for link in self.data.links)


def stage_of(data: VersionData, default: str) -> str:
    """The ``user/index`` of a version's first link (a mirror's synthesised versions)."""
    for link in data.links:
        parts = link.entrypath.split("/", 2)
        if len(parts) == 3:
            return f"{parts[0]}/{parts[1]}"
    return default


def first_wins(found: Iterable[tuple[str, Iterable[tuple[str, VersionData]]]]) -> list[Release]:
    """Versions of the stages in resolution order (the first stage with a version
    wins), newest first."""
    chosen: dict[str, Release] = {}
    for stage, versions in found:
        for version, data in versions:
            if version not in chosen:
                chosen[version] = Release(stage, version, data)
    return sorted(chosen.values(), key=lambda r: version_sort_key(r.version), reverse=True)


def _stable(version: str) -> bool:
    try:
        return not Version(version).is_prerelease
    except InvalidVersion:
        return False


def resolve(releases: Sequence[Release], name: str) -> Release | None:
    """The release called ``name``; ``latest`` (the newest) and ``stable`` (the newest
    that is no pre-release) where no version has that name."""
    for release in releases:
        if release.version == name:
            return release
    if name == LATEST:
        return releases[0] if releases else None
    if name == STABLE:
        return next((r for r in releases if _stable(r.version)), None)
    return None


def safe_url(value: str) -> str | None:
    """``value`` if it is an http(s) URL (never ``javascript:`` and the like)."""
    try:
        scheme = urlsplit(value.strip()).scheme.lower()
    except ValueError:
        return None
    return value.strip() if scheme in ("http", "https") else None


def project_urls(metadata: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(label, text, linkable URL or None) of the home page and Project-URL entries."""
    found: list[tuple[str, str, str | None]] = []
    home = metadata.get("home_page")
    if isinstance(home, str) and home.strip():
        found.append(("Homepage", home, safe_url(home)))
    for entry in metadata.get("project_urls") or ():
        label, sep, url = str(entry).partition(",")
        if not sep:
            label, url = "URL", label
        found.append((label.strip(), url.strip(), safe_url(url)))
    return found


def _text(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    return value.strip() if isinstance(value, str) else ""


def _list(metadata: Mapping[str, Any], key: str) -> list[str]:
    value = metadata.get(key)
    return [str(v) for v in value if v] if isinstance(value, list) else []


def metadata_view(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata a version page lists."""
    author = _text(metadata, "author") or _text(metadata, "author_email")
    if _text(metadata, "author") and _text(metadata, "author_email"):
        author = f"{_text(metadata, 'author')} <{_text(metadata, 'author_email')}>"
    maintainer = _text(metadata, "maintainer") or _text(metadata, "maintainer_email")
    return {
        "summary": _text(metadata, "summary"),
        "requires_python": _text(metadata, "requires_python"),
        "requires_dist": _list(metadata, "requires_dist"),
        "extras": _list(metadata, "provides_extras"),
        "classifiers": _list(metadata, "classifiers"),
        "license": _text(metadata, "license_expression") or _text(metadata, "license"),
        "urls": project_urls(metadata),
        "author": author,
        "maintainer": maintainer,
        "keywords": _text(metadata, "keywords"),
    }


def uploader(link: FileLink) -> str:
    """Who uploaded (or pushed) a file: the ``who`` of its first log entry."""
    for entry in link.log:
        if isinstance(entry, Mapping) and entry.get("who"):
            return str(entry["who"])
    return ""


def yank_reason(link: FileLink) -> str | None:
    """None if not yanked, else its reason ("" for none given)."""
    if link.yanked in (False, None):
        return None
    return link.yanked if isinstance(link.yanked, str) else ""


def mirror_versions(value: Mapping[str, Any]) -> set[str]:
    """The versions of a mirror's cached page (from its links' file names)."""
    found = set()
    for link in value.get("links") or ():
        try:
            found.add(split_filename(str(link.get("filename", "")))[1])
        except InvalidInput:
            pass
    return found
