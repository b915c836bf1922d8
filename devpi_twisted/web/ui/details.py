"""A version's details for its page (VersionDetails): the long description rendered
(on a thread, once per content: describe.Rendered) and each release file with its
tox reports read from the blob store (once per report: kept by sha256)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import attrs
from markupsafe import Markup

from devpi_twisted.storage.blobs import BlobError
from devpi_twisted.storage.values import FileLink
from devpi_twisted.web.blobcopy import BlobCopies
from devpi_twisted.web.deps import Offload
from devpi_twisted.web.ui import shaping
from devpi_twisted.web.ui.describe import (CACHED, MAX_TOX_REPORT, Rendered, ToxReport,
                                           render_description, summarise_tox)


@attrs.frozen
class ToxRow:
    filename: str
    entrypath: str
    report: ToxReport


@attrs.frozen
class FileRow:
    link: FileLink
    uploader: str
    yanked: str | None  # None: not yanked; else the reason ("" for none)
    toxresults: tuple[ToxRow, ...]


@attrs.frozen
class Details:
    description: Markup  # sanitised by readme-renderer (the only HTML marked safe)
    files: tuple[FileRow, ...]


def _read_limited(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(MAX_TOX_REPORT + 1)


class VersionDetails:
    """Descriptions and tox reports of versions. Needs local copies of blobs and a
    thread to render and read on."""

    def __init__(self, copies: BlobCopies, offload: Offload) -> None:
        self._copies = copies
        self._offload = offload
        self._rendered = Rendered()
        self._reports: OrderedDict[str, ToxReport] = OrderedDict()

    async def description(self, text: str, content_type: str) -> Markup:
        if not text.strip():
            return Markup("")
        key = Rendered.key(text, content_type)
        html = self._rendered.get(key)
        if html is None:
            html = str(await self._offload(render_description, text, content_type))
            self._rendered.put(key, html)
        return Markup(html)  # readme-renderer's sanitised output

    async def report(self, link: FileLink) -> ToxReport:
        kept = self._reports.get(link.sha256) if link.sha256 else None
        if kept is not None:
            return kept
        try:
            async with self._copies.local_copy(link.entrypath) as path:
                data = await self._offload(_read_limited, path)
        except (BlobError, OSError) as e:
            return ToxReport("", "", (), f"report unreadable: {type(e).__name__}")
        report = summarise_tox(data)
        if link.sha256:
            self._reports[link.sha256] = report
            if len(self._reports) > CACHED:
                self._reports.popitem(last=False)
        return report

    async def of(self, release: shaping.Release) -> Details:
        metadata = release.data.metadata
        text = metadata.get("description")
        ctype = metadata.get("description_content_type")
        description = await self.description(text if isinstance(text, str) else "",
                                              ctype if isinstance(ctype, str) else "")
        reports: dict[str, list[ToxRow]] = {}
        for link in release.data.links:
            if link.rel == shaping.TOX and link.for_entrypath:
                reports.setdefault(link.for_entrypath, []).append(
                    ToxRow(link.filename, link.entrypath, await self.report(link)))
        files = tuple(FileRow(link, shaping.uploader(link), shaping.yank_reason(link),
                              tuple(reports.get(link.entrypath, ())))
                      for link in release.files)
        return Details(description, files)
