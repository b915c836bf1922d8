"""Uploads and pushes to an index (UploadApp): the legacy upload form twine and
devpi-client post (streamed to staging files, web/forms.py), a push to another index
here, a push to another index server.

Upload errors carry their message in the HTTP reason phrase where devpi's do:
twine and devpi-client show the reason phrase to the user (spec/api.md 8).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from treq.client import HTTPClient

from devpi_twisted.model.errors import DomainError, TooLarge, Unauthenticated
from devpi_twisted.model.release_ops import (
    DOCZIP, BadForm, Identical, IncomingFile, ReleaseOps, StageMissing,
)
from devpi_twisted.web import render
from devpi_twisted.web.blobcopy import BlobCopies
from devpi_twisted.web.deps import HttpRequest, Offload
from devpi_twisted.web.forms import check_archive, read_upload
from devpi_twisted.web.helpers import RequestHelpers, written

# upload refusals whose status line is the standard one in devpi (its reason phrase then
# names no cause): the message stays in the body
PLAIN_REASON = (Unauthenticated, StageMissing, BadForm, TooLarge)


def _reason(text: str) -> bytes:
    return " ".join(text.split()).encode("latin-1", "replace")[:400]


class UploadApp:
    """POST and PUSH to ``/USER/INDEX``. Needs the release operations, the request
    helpers, local copies of stored bodies, a thread to offload to, the staging
    directory, an HTTP client (pushes to other servers) and whether the mirror cache
    is offline (no pushes out then)."""

    def __init__(self, releases: ReleaseOps, helpers: RequestHelpers, copies: BlobCopies,
                 offload: Offload, staging: Path, http: HTTPClient | None,
                 offline: Callable[[], bool]) -> None:
        self._releases = releases
        self._helpers = helpers
        self._copies = copies
        self._offload = offload
        self._staging = staging
        self._http = http
        self._offline = offline

    async def upload(self, request: HttpRequest, user: str, index: str) -> bytes:
        ctype = (request.getHeader(b"Content-Type") or b"").decode("latin-1")
        identity = await self._helpers.identity(request)
        media = ctype.split(";", 1)[0].strip().lower()
        if request.method == b"PUSH" or media not in (
                "multipart/form-data", "application/x-www-form-urlencoded"):
            body = render.read_json(request)
            if isinstance(body, Mapping) and not body.get("targetindex") and "posturl" in body:
                ok, log = await self._releases.push_external(
                    identity, user, index, body, self._copies.local_copy, self._post_form,
                    offline=self._offline())
                return render.result(request, "actionlog", log, status=200 if ok else 502)
            log = await self._releases.push(identity, user, index, body, self._copies.copy_blob)
            return render.result(request, "actionlog", log)
        try:
            config = await self._releases.check_upload(identity, user, index)
            read = await self._offload(read_upload, request.content, ctype, self._staging)
        except DomainError as e:
            return self._upload_error(request, e)
        form, metadata = read.form, read.metadata

        async def check_archive(checked: IncomingFile, rel: str) -> None:
            """The verdict read_upload found (the same file, checked as ``rel``)."""
            if checked.path != content_path or (rel == DOCZIP) != (form.first(":action") == "doc_upload"):
                await self._check_archive(checked, rel)
            elif read.archive_error is not None:
                raise read.archive_error

        content_path = None
        try:
            content = form.files.get("content")
            incoming = None
            if content is not None:
                content_path = content.path
                incoming = IncomingFile(content.filename, content.path, content.size,
                                        content.sha256, metadata)
            stored = await self._releases.submit_form(identity, user, index, form.fields,
                                                      incoming, check_archive, config)
        except Identical as e:
            request.setResponseCode(200, _reason(e.message))
            return b""
        except DomainError as e:
            return self._upload_error(request, e)
        finally:
            form.discard()
        written(request, stored)
        request.setResponseCode(200)
        return b""

    @staticmethod
    def _upload_error(request: HttpRequest, e: DomainError) -> bytes:
        """A refused upload: the message in the body, and in the reason phrase where devpi
        puts its own there (twine and devpi-client print it); a missing login, a missing
        index and a body that is no form get the plain phrase ("401 Unauthorized"), as
        devpi answers them before its form handling speaks."""
        body = render.domain_error(request, e)
        if not isinstance(e, PLAIN_REASON):
            request.setResponseCode(request.code, _reason(e.message))
        return body

    async def _check_archive(self, content: IncomingFile, rel: str) -> None:
        await self._offload(check_archive, content.path, content.filename, rel == DOCZIP)

    async def _post_form(self, url: str, auth: tuple[str, str], fields: list[tuple[str, str]],
                         file: tuple[str, Path] | None) -> tuple[int, str]:
        """POST a legacy upload form to another index server; (status, text), -1 if unreachable."""
        try:
            if self._http is None:
                raise RuntimeError("no HTTP client")
            if file is None:
                response = await self._http.post(url, data=fields, auth=auth, timeout=60)
            else:
                with open(file[1], "rb") as body:
                    response = await self._http.post(
                        url, data=fields, auth=auth, timeout=300,
                        # treq takes a file too (its annotation names body producers only)
                        files={"content": (file[0], body)})  # type: ignore[arg-type]
            text = (await response.text())[:500]
            return response.code, text
        except Exception as e:  # connection refused, timeouts, TLS: reported in the action log
            return -1, f"exception on posting to {url}: {e}"
