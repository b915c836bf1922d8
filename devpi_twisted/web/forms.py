"""The legacy PyPI upload form: multipart bodies parsed from the spooled request body.

Parsing runs in a thread (``parse_form`` blocks): text fields are collected,
the file part is copied into a temporary file in the server's staging
directory while its sha256 is computed, so no body is ever held in memory
whole and the file can be renamed into the file store without another copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs

import attrs
import multipart

from devpi_twisted import archives
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.release_ops import BadForm, IncomingMetadata

CHUNK = 1024 * 1024
MAX_PARTS = 4096
MAX_TEXT = 8 * 1024 * 1024  # all text fields together (descriptions can be long)


@attrs.frozen
class UploadedFile:
    """A file part, spooled to ``path`` (the caller removes it)."""

    filename: str
    path: Path
    size: int
    sha256: str


@attrs.frozen
class Form:
    fields: Mapping[str, list[str]]
    files: Mapping[str, UploadedFile]

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def discard(self) -> None:
        for uploaded in self.files.values():
            try:
                uploaded.path.unlink()
            except FileNotFoundError:
                pass


def _spool(source: IO[bytes], staging: Path) -> tuple[Path, int, str]:
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(dir=staging, prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), size, digest.hexdigest()


def parse_form(body: IO[bytes], content_type: str, staging: Path) -> Form:
    """Fields and files of a ``multipart/form-data`` or urlencoded body; BadForm if broken."""
    ctype, options = multipart.parse_options_header(content_type or "")
    body.seek(0)
    if ctype == "application/x-www-form-urlencoded":
        text = body.read(MAX_TEXT + 1)
        if len(text) > MAX_TEXT:
            raise BadForm("Bad request: form too large")
        return Form({k: v for k, v in parse_qs(text.decode("utf-8", "replace"),
                                                keep_blank_values=True).items()}, {})
    if ctype != "multipart/form-data" or not options.get("boundary"):
        raise BadForm("Bad request: expected a multipart/form-data upload form")
    fields: dict[str, list[str]] = {}
    files: dict[str, UploadedFile] = {}
    parser = multipart.MultipartParser(
        body, options["boundary"], part_limit=MAX_PARTS, memory_limit=MAX_TEXT,
        spool_limit=256 * 1024)
    try:
        for part in parser:
            try:
                if part.filename is not None:
                    if part.name in files:
                        raise BadForm(f"Bad request: more than one '{part.name}' file")
                    path, size, sha256 = _spool(part.file, staging)
                    files[part.name] = UploadedFile(part.filename, path, size, sha256)
                else:
                    fields.setdefault(part.name, []).append(part.value)
            finally:
                part.close()
    except (multipart.MultipartError, UnicodeDecodeError) as e:
        Form(fields, files).discard()
        raise BadForm(f"Bad request: broken multipart form ({e})") from None
    except BaseException:
        Form(fields, files).discard()
        raise
    return Form(fields, files)


@attrs.frozen
class Upload:
    """An upload form read (read_upload): the form, the core metadata of its release file
    (in memory) and the archive check's verdict on its ``content`` file: None when sound,
    else the error, raised only once the form's own checks passed (devpi's order)."""

    form: Form
    metadata: IncomingMetadata | None
    archive_error: InvalidInput | None


def read_upload(body: IO[bytes], content_type: str, staging: Path) -> Upload:
    """An upload form parsed (parse_form), the core metadata of its release file read
    and the archive checked (check_archive, as a doc zip for a doc_upload), in one go, for
    one trip to a thread."""
    form = parse_form(body, content_type, staging)
    try:
        content = form.files.get("content")
        if content is None:
            return Upload(form, None, None)
        docs = form.first(":action") == "doc_upload"
        metadata = None if docs else core_metadata_of(content.path, content.filename)
        error = None
        if metadata is None or not content.filename.lower().endswith(".whl"):
            try:  # (a wheel whose metadata was read is a zip whose members could be listed)
                check_archive(content.path, content.filename, docs)
            except InvalidInput as e:
                error = e
        return Upload(form, metadata, error)
    except BaseException:
        form.discard()
        raise


def core_metadata_of(path: Path, filename: str) -> IncomingMetadata | None:
    """The archive's core metadata (wheel METADATA, sdist PKG-INFO) and its sha256, if any."""
    data = archives.core_metadata(path, filename)
    return None if data is None else IncomingMetadata(data, hashlib.sha256(data).hexdigest())


def spool_core_metadata(path: Path, filename: str, staging: Path) -> UploadedFile | None:
    """The archive's core metadata (core_metadata_of) in a staging file, if any."""
    metadata = core_metadata_of(path, filename)
    if metadata is None:
        return None
    fd, name = tempfile.mkstemp(dir=staging, prefix="metadata-")
    with os.fdopen(fd, "wb") as out:
        out.write(metadata.body)
    return UploadedFile(filename + ".metadata", Path(name), metadata.size, metadata.sha256)


def spool_body(body: IO[bytes], staging: Path) -> UploadedFile:
    """A whole request body (a tox report) copied to a staging file, hashed."""
    body.seek(0)
    path, size, sha256 = _spool(body, staging)
    return UploadedFile("body", path, size, sha256)


def check_archive(path: Path, filename: str, docs: bool) -> None:
    """InvalidInput unless ``path`` is a zip of documentation with safe member names
    (``docs``), or, for a release file named a wheel, a zip archive."""
    if docs:
        try:
            archives.check_doc_zip(path)
        except archives.BadDocZip as e:
            raise InvalidInput(f"invalid documentation zip: {e}") from None
    elif filename.lower().endswith(".whl") and not archives.is_zip(path):
        raise InvalidInput(f"{filename!r} is not a wheel: not a zip file")
