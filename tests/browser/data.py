"""Putting what the browser tests look at into a running daemon through its HTTP API:
users, indexes, releases with their descriptions, files and documentation."""

from __future__ import annotations

import base64
import io
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

import urllib3

from tests.support import call, login, make_wheel


def user(url: str, name: str, password: str, **profile: str) -> tuple[str, str]:
    """A new user ``name``, logged in."""
    status, body, _ = call(f"{url}/{name}", "PUT", {"password": password, **profile})
    assert status == 201, body
    return login(url, name, password)


def index(url: str, auth: tuple[str, str], name: str, **config: object) -> None:
    """A new index ``name`` (``user/index``) of ``auth``'s user, with ``config``."""
    status, body, _ = call(f"{url}/{name}", "PUT", config, auth)
    assert status == 200, body


def post(url: str, index_name: str, auth: tuple[str, str],
         fields: list[tuple[str, str | tuple[str, bytes]]]) -> None:
    """One multipart POST of ``fields`` to the index (what setup.py upload, twine and
    devpi-client send); it must succeed."""
    body, content_type = urllib3.encode_multipart_formdata(fields)
    request = urllib.request.Request(f"{url}/{index_name}/", data=body, method="POST", headers={
        "Content-Type": content_type, "Accept": "application/json",
        "X-Devpi-Auth": base64.b64encode(":".join(auth).encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{fields[:3]}: {e.code} {e.read()[:500]!r}") from None


def release(url: str, index_name: str, auth: tuple[str, str], work: Path, name: str,
            version: str, description: str = "", content_type: str = "text/plain",
            **metadata: str) -> bytes:
    """``name`` ``version`` registered with its metadata and a wheel uploaded; the wheel's
    bytes."""
    wheel = make_wheel(work, name, version)
    meta: list[tuple[str, str | tuple[str, bytes]]] = [
        ("name", name), ("version", version), ("metadata_version", "2.1"),
        ("description", description), ("description_content_type", content_type),
        *metadata.items()]
    post(url, index_name, auth, [(":action", "submit"), *meta])
    data = wheel.read_bytes()
    post(url, index_name, auth, [(":action", "file_upload"), *meta,
                                 ("content", (wheel.name, data))])
    return data


def docs(url: str, index_name: str, auth: tuple[str, str], name: str, version: str,
         pages: dict[str, str]) -> None:
    """Documentation of ``name`` ``version``: a zip of ``pages`` (path: HTML)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in pages.items():
            archive.writestr(path, text)
    post(url, index_name, auth, [(":action", "doc_upload"), ("name", name), ("version", version),
                                 ("content", (f"{name}-{version}.doc.zip", buffer.getvalue()))])


def file_url(url: str, index_name: str, project: str, version: str) -> str:
    """The +f URL of the one file of ``project`` ``version`` (from the JSON API)."""
    status, reply, _ = call(f"{url}/{index_name}/{project}/{version}")
    assert status == 200, reply
    return str(reply["result"]["+links"][0]["href"])


def toxresult(url: str, index_name: str, auth: tuple[str, str], project: str, version: str,
              report: Mapping[str, object]) -> None:
    """A tox report about the one file of ``project`` ``version``."""
    status, reply, _ = call(file_url(url, index_name, project, version), "POST", report, auth)
    assert status == 200, reply
