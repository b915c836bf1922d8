"""Simple pages (PEP 503 HTML, PEP 691 JSON with PEP 700 keys) and who gets which."""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterator, Sequence

from devpi_twisted.model.pagelinks import Link, ProjectPage
from devpi_twisted.web.deps import HttpRequest

JSON_SIMPLE = "application/vnd.pypi.simple.v1+json"
HTML_SIMPLE = "application/vnd.pypi.simple.v1+html"
INSTALLER = re.compile(r"^(?:\S+\s+)*(?:distribute|setuptools|pip|pex|uv)/")


SEEN = 256  # distinct header values whose answers are remembered (clients send few)


def is_installer(request: HttpRequest) -> bool:
    return _installer_agent(request.getHeader(b"User-Agent"))


@functools.lru_cache(maxsize=SEEN)
def _installer_agent(agent: bytes | None) -> bool:
    return bool(agent and INSTALLER.match(agent.decode("latin-1")))


def _quality(accept: str, media: str) -> float:
    best = 0.0
    for item in accept.split(","):
        parts = [p.strip() for p in item.split(";")]
        kind = parts[0].lower()
        q = 1.0
        for param in parts[1:]:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if kind == media or kind == "*/*" or (kind.endswith("/*") and media.startswith(kind[:-1])):
            exact = 1 if kind == media else 0
            best = max(best, q + exact * 1e-6)
    return best


def wants_json(request: HttpRequest) -> bool:
    """PEP 691 negotiation between HTML and JSON (HTML wins a tie); ``?format=`` overrides."""
    return _negotiate((request.args or {}).get(b"format", [b""])[0], request.getHeader(b"Accept"))


@functools.lru_cache(maxsize=SEEN)
def _negotiate(format_arg: bytes, value: bytes | None) -> bool:
    fmt = format_arg.decode("latin-1")
    if fmt:
        return fmt == JSON_SIMPLE
    accept = value.decode("latin-1") if value else ""
    if not accept:
        return False
    as_json = _quality(accept, JSON_SIMPLE)
    as_html = max(_quality(accept, "text/html"), _quality(accept, HTML_SIMPLE))
    return as_json > as_html


def _up(request: HttpRequest) -> str:
    """From the requested page back to the server root (below any mount path), relative."""
    segments = [*(request.prepath or ()), *(request.postpath or ())]
    return "../" * max(len(segments) - 1, 0)


def _href(link: Link, up: str) -> str:
    return up + link.relpath


def render_project(request: HttpRequest, page: ProjectPage) -> tuple[bytes, bytes]:
    """(body, content type) of a project page for this request."""
    up = _up(request)
    if wants_json(request):
        files = []
        for link in page.links:
            item: dict[str, object] = {"filename": link.filename, "url": _href(link, up),
                                       "hashes": {"sha256": link.sha256} if link.sha256 else {}}
            if link.requires_python:
                item["requires-python"] = link.requires_python
            if link.yanked:
                item["yanked"] = link.yanked
            if link.size is not None:
                item["size"] = link.size
            if link.upload_time:
                item["upload-time"] = link.upload_time
            if link.core_metadata:  # PEP 714's name, and PEP 658's for older installers
                item["core-metadata"] = item["dist-info-metadata"] = {"sha256": link.core_metadata}
            files.append(item)
        body = {"meta": {"api-version": "1.1"}, "name": page.project, "files": files,
                "versions": list(page.versions)}
        return json.dumps(body).encode(), JSON_SIMPLE.encode()
    title = html.escape(f"{page.index}: links for {page.project}")
    lines = [f'<!DOCTYPE html><html lang="en"><head><title>{title}</title></head><body><h1>{title}</h1>']
    for link in page.links:
        fragment = f"#sha256={link.sha256}" if link.sha256 else ""
        attrs = ""
        if link.requires_python:
            attrs += f' data-requires-python="{html.escape(link.requires_python)}"'
        if link.yanked:
            reason = "" if link.yanked is True else str(link.yanked)
            attrs += f' data-yanked="{html.escape(reason)}"'
        if link.core_metadata:
            spec = html.escape(f"sha256={link.core_metadata}")
            attrs += f' data-core-metadata="{spec}" data-dist-info-metadata="{spec}"'
        lines.append(f'{html.escape(link.stage)} <a href="{html.escape(_href(link, up) + fragment)}"'
                     f'{attrs}>{html.escape(link.filename)}</a><br>')
    lines.append("</body></html>")
    return "\n".join(lines).encode(), b"text/html; charset=UTF-8"


LIST_CHUNK = 10_000  # names rendered at a time (a list of PyPI's size is never one string)


def project_list_chunks(index: str, names: Sequence[str], as_json: bool) -> Iterator[str]:
    """The project list of ``index`` as PEP 691 JSON or PEP 503 HTML, in parts."""
    if as_json:
        yield '{"meta": {"api-version": "1.1"}, "projects": ['
        for start in range(0, len(names), LIST_CHUNK):
            part = json.dumps([{"name": n} for n in names[start:start + LIST_CHUNK]])[1:-1]
            yield part if start == 0 else ", " + part
        yield "]}"
        return
    title = html.escape(f"{index}: simple list (including inherited indices)")
    yield f'<!DOCTYPE html><html lang="en"><head><title>{title}</title></head><body><h1>{title}</h1>\n'
    for start in range(0, len(names), LIST_CHUNK):
        part = "\n".join(f'<a href="{e}/">{e}</a>'
                         for e in map(html.escape, names[start:start + LIST_CHUNK]))
        yield part if start == 0 else "\n" + part
    yield "\n</body></html>"


def list_type(as_json: bool) -> bytes:
    return JSON_SIMPLE.encode() if as_json else b"text/html; charset=UTF-8"


def render_project_list(request: HttpRequest, index: str, names: Sequence[str]) -> tuple[bytes, bytes]:
    as_json = wants_json(request)
    return "".join(project_list_chunks(index, names, as_json)).encode(), list_type(as_json)
