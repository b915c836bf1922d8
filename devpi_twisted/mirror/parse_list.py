"""Parse upstream's project name list (its simple index root, spec/mirror.md 2): PEP 691
JSON or PEP 503 HTML, a plain list of anchors read without the HTML parser. Pure
functions, no I/O; an unusable list raises PageError."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import SplitResult, unquote, urlsplit

import attrs
from packaging.utils import canonicalize_name

from devpi_twisted.mirror.parse import (
    _DEFAULT_PORTS, MAX_ANCHOR_TEXT, PageError, _collect, _decode, _is_json, _load_json,
    _resolved,
)

MAX_PROJECT_NAME_LENGTH = 256
_NAME_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f/\\]")
# a project list as PyPI, devpi and most mirrors write it: anchors of exactly this form
# (a relative href), and no markup that could hide or move them from a parser
_PLAIN_ANCHOR = re.compile(r'<a href="([^"\s<>:?#&\\/][^"\s<>:?#&\\]*)">([^<]*)</a>')
_ODD_MARKUP = re.compile(r"<(?:a[\s>/]|base|!--|!\[|script|style)", re.IGNORECASE)


def parse_project_list(body: bytes, content_type: str, list_url: str) -> dict[str, str]:
    """Upstream's project names, normalised name -> name as given (first spelling wins).

    Raises PageError for a page that is not a usable list.
    """
    if _is_json(content_type):
        names: Iterable[str] = _json_project_names(_load_json(body))
    else:
        text = _decode(body, content_type)
        names = _plain_project_names(text, list_url) or _html_project_names(text, list_url)
    result: dict[str, str] = {}
    for name in names:
        name = name.strip()
        if name and len(name) <= MAX_PROJECT_NAME_LENGTH and not _NAME_UNSAFE.search(name):
            result.setdefault(canonicalize_name(name), name)
    return result


def _json_project_names(data: Mapping[str, object]) -> Iterator[str]:
    projects = data.get("projects")
    if not isinstance(projects, list):
        raise PageError("invalid JSON list: 'projects' is not a list")
    for item in projects:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise PageError("invalid JSON list: a project has no 'name'")
        yield name


def _plain_project_names(text: str, list_url: str) -> list[str] | None:
    """The names of a list made only of plain anchors (_PLAIN_ANCHOR), read without the
    HTML parser, giving what it would give (PyPI's 40 MB list: 1 s instead of 16 s of
    a thread holding the GIL); None (the parser's turn) for anything else. The text is
    scanned a match at a time (no single long call holding the GIL), the markup between
    the anchors checked for any other anchor or for what could hide or move them."""
    if not urlsplit(list_url).path.endswith("/"):
        return None
    names = []
    end = 0
    for match in _PLAIN_ANCHOR.finditer(text):
        if _ODD_MARKUP.search(text, end, match.start()):
            return None
        end = match.end()
        href, label = match.groups()
        if "." in href and any(segment in (".", "..") for segment in href.split("/")):
            return None
        if "&" in label:
            label = html.unescape(label)
        names.append(label[:MAX_ANCHOR_TEXT].strip() or _last_segment(href))
    return None if _ODD_MARKUP.search(text, end) else names


def _html_project_names(text: str, list_url: str) -> Iterator[str]:
    base, anchors = _collect(text, list_url)
    scope = _Scope.of(list_url)
    for anchor in anchors:
        try:
            target = urlsplit(_resolved(base, anchor.href))
            below = scope.contains(target)
        except ValueError:  # e.g. "http://[broken/" or a port out of range
            continue
        if below:
            yield "".join(anchor.text).strip() or _last_segment(target.path)


@attrs.frozen
class _Scope:
    """The URLs strictly below a list URL's path on its host."""

    scheme: str
    hostname: str | None
    port: int | None
    directory: str

    @classmethod
    def of(cls, url: str) -> _Scope:
        parts = urlsplit(url)
        directory = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme.lower(), parts.hostname, _port(parts), directory)

    def contains(self, target: SplitResult) -> bool:
        """Raises ValueError for a target with an invalid port."""
        return (target.path.startswith(self.directory)
                and len(target.path) > len(self.directory)
                and target.scheme.lower() == self.scheme
                and target.hostname == self.hostname
                and _port(target) == self.port)


def _port(parts: SplitResult) -> int | None:
    return parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())


def _last_segment(path: str) -> str:
    segments = [segment for segment in path.split("/") if segment]
    return unquote(segments[-1]) if segments else ""
