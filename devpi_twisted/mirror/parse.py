"""Parse upstream "simple" project pages: PEP 503 HTML and PEP 691 JSON (spec/mirror.md
5), and the decoding, anchors and URL rules the project list parser shares
(mirror/parse_list.py).

Pure functions from response bodies to values: no I/O, no Twisted. A page we cannot
use as a whole raises PageError; a single link we cannot use is dropped.
"""

from __future__ import annotations

import html
import html.parser
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import attrs
from packaging.utils import canonicalize_name

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"

# Longest first, so that ".tar.gz" wins over a shorter match and ".doc.zip" over ".zip".
ARCHIVE_EXTENSIONS = tuple(sorted(
    (".deb", ".dmg", ".doc.zip", ".egg", ".exe", ".msi", ".rpm", ".tar", ".tar.bz2", ".tar.gz",
     ".tgz", ".whl", ".zip"), key=len, reverse=True))

MAX_URL_LENGTH = 8192
MAX_FILENAME_LENGTH = 255
MAX_ANCHOR_TEXT = 1024

# Hex digest length of every fixed-size hashlib algorithm we can verify a download with.
_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha224": 56, "sha256": 64, "sha384": 96,
                "sha512": 128, "sha3_224": 56, "sha3_256": 64, "sha3_384": 96, "sha3_512": 128}

_DEFAULT_PORTS = {"http": 80, "https": 443}

_T = TypeVar("_T")

_HEX = re.compile(r"[0-9a-fA-F]+")
_FRAGMENT_DIGEST = re.compile(r"([A-Za-z0-9_]+)=([0-9a-fA-F]+)")
_API_VERSION = re.compile(r"([0-9]{1,9})(\.[0-9]{1,9})*")
_VERSION_START = re.compile(r"v?[0-9]", re.IGNORECASE)
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@attrs.frozen
class UpstreamLink:
    """One release file offered by an upstream project page."""

    filename: str
    url: str
    hash_algo: str | None
    hash_value: str | None
    requires_python: str | None = None
    yanked: bool | str = False
    core_metadata: bool | str = False
    size: int | None = None
    upload_time: str | None = None


class PageError(ValueError):
    """Upstream answered something we cannot use."""


def parse_project_page(body: bytes, content_type: str, page_url: str,
                       project: str) -> list[UpstreamLink]:
    """The release files of ``project`` on its upstream page, in upstream order.

    Links of other projects, other file types, non-http(s) URLs and unusable filenames
    are dropped; one link per filename is kept (spec/mirror.md 5). Raises PageError.
    """
    if _is_json(content_type):
        candidates = _json_links(_load_json(body), page_url)
    else:
        candidates = _html_links(_decode(body, content_type), page_url)
    canonical = canonicalize_name(project)
    return _deduplicated(link for link in candidates if _belongs(link.filename, canonical))


# -- content types and decoding ----------------------------------------------------


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    kind, *params = content_type.split(";")
    parsed: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if sep:
            parsed.setdefault(key.strip().lower(), value.strip().strip('"'))
    return kind.strip().lower(), parsed


def _is_json(content_type: str) -> bool:
    return _media_type(content_type)[0] == JSON_CONTENT_TYPE


def _decode(body: bytes, content_type: str) -> str:
    """The HTML text: the declared charset (else UTF-8), bad bytes replaced."""
    charset = _media_type(content_type)[1].get("charset") or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # unknown, or not a text encoding ("base64")
        return body.decode("utf-8", errors="replace")


# -- JSON (PEP 691) ----------------------------------------------------------------


def _load_json(body: bytes) -> Mapping[str, object]:
    """The top-level object of a PEP 691 page with a supported api-version."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise PageError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise PageError("invalid JSON page: not an object")
    meta = data.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            raise PageError("invalid JSON page: 'meta' is not an object")
        _check_api_version(meta.get("api-version", "1.0"))
    return data


def _check_api_version(version: object) -> None:
    match = _API_VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None or int(match.group(1)) != 1:
        raise PageError(f"unsupported api-version {version!r} (need >= 1.0, < 2.0)")


def _json_links(data: Mapping[str, object], page_url: str) -> Iterator[UpstreamLink]:
    files = data.get("files")
    if not isinstance(files, list):
        raise PageError("invalid JSON page: 'files' is not a list")
    for item in files:
        if not isinstance(item, dict):
            raise PageError("invalid JSON page: a file is not an object")
        url = _field(item, "url", str)
        if url is None:
            raise PageError("invalid JSON page: a file has no 'url'")
        size = _field(item, "size", int)
        if size is not None and (isinstance(size, bool) or size < 0):
            raise PageError(f"invalid JSON page: bad 'size' {size!r}")
        link = _release_link(
            _resolved(page_url, url), _json_digest(_field(item, "hashes", dict) or {}),
            requires_python=_blank_is_none(_field(item, "requires-python", str)),
            yanked=_json_yanked(item.get("yanked")),
            core_metadata=_json_core_metadata(item),
            size=size, upload_time=_field(item, "upload-time", str))
        if link is not None:
            yield link


def _field(item: Mapping[str, object], key: str, kind: type[_T]) -> _T | None:
    """``item[key]``, None when missing or null; PageError for another type."""
    value = item.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise PageError(f"invalid JSON page: {key!r} is not a {kind.__name__}")


def _json_digest(hashes: Mapping[str, object]) -> tuple[str, str] | None:
    """sha256 if usable, else the first usable entry; PageError for a non-string value."""
    usable = []
    for algo, value in hashes.items():
        if not isinstance(value, str):
            raise PageError(f"invalid JSON page: hash {algo!r} is not a string")
        digest = _digest(algo, value)
        if digest is not None:
            usable.append(digest)
    for digest in usable:
        if digest[0] == "sha256":
            return digest
    return usable[0] if usable else None


def _json_yanked(value: object) -> bool | str:
    if value is None or value is False:
        return False
    if value is True or value == "":
        return True
    if isinstance(value, str):
        return value
    raise PageError(f"invalid JSON page: bad 'yanked' {value!r}")


def _json_core_metadata(item: Mapping[str, object]) -> bool | str:
    """PEP 714 ``core-metadata``, else the older ``dist-info-metadata``."""
    key = "core-metadata" if "core-metadata" in item else "dist-info-metadata"
    value = item.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, dict):  # available; advertise its sha256 when given
        sha256 = value.get("sha256")
        digest = _digest("sha256", sha256) if isinstance(sha256, str) else None
        return f"sha256={digest[1]}" if digest else True
    raise PageError(f"invalid JSON page: bad {key!r} {value!r}")


# -- HTML (PEP 503) ----------------------------------------------------------------


@attrs.define
class _Anchor:
    attributes: dict[str, str | None]
    text: list[str] = attrs.Factory(list)
    text_length: int = 0

    @property
    def href(self) -> str:
        return self.attributes.get("href") or ""


class _AnchorCollector(html.parser.HTMLParser):
    """Collects every ``<a href>`` (attributes, text) and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[_Anchor] = []
        self._open: _Anchor | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("a", "base"):
            return
        attributes: dict[str, str | None] = {}
        for key, value in attrs:
            attributes.setdefault(key, value)  # the first of repeated attributes counts
        if tag == "base":
            if self.base is None and attributes.get("href") is not None:
                self.base = attributes["href"]
            return
        self._open = None
        if attributes.get("href") is not None:
            self._open = _Anchor(attributes)
            self.anchors.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None

    def handle_data(self, data: str) -> None:
        anchor = self._open
        if anchor is not None and anchor.text_length < MAX_ANCHOR_TEXT:
            anchor.text.append(data[:MAX_ANCHOR_TEXT])
            anchor.text_length += len(data)


def _collect(text: str, url: str) -> tuple[str, list[_Anchor]]:
    """The base URL (``<base href>`` resolved against ``url``) and the anchors of a page."""
    collector = _AnchorCollector()
    try:
        collector.feed(text)
        collector.close()
    except AssertionError as e:  # _markupbase's reaction to broken "<![...]>" sections
        raise PageError(f"invalid HTML: {e}") from None
    base = url if collector.base is None else _resolved(url, collector.base)
    return base, collector.anchors


def _html_links(text: str, page_url: str) -> Iterator[UpstreamLink]:
    base, anchors = _collect(text, page_url)
    for anchor in anchors:
        attributes = anchor.attributes
        yanked: bool | str = False
        if "data-yanked" in attributes:
            yanked = attributes["data-yanked"] or True
        link = _release_link(
            _resolved(base, anchor.href), None,
            requires_python=_blank_is_none(attributes.get("data-requires-python")),
            yanked=yanked, core_metadata=_html_core_metadata(attributes))
        if link is not None:
            yield link


def _html_core_metadata(attributes: Mapping[str, str | None]) -> bool | str:
    """PEP 714 ``data-core-metadata``, else ``data-dist-info-metadata``."""
    key = "data-core-metadata" if "data-core-metadata" in attributes else "data-dist-info-metadata"
    value = (attributes.get(key) or "").strip()
    if value.lower() == "true":
        return True
    algo, sep, hexdigest = value.partition("=")
    digest = _digest(algo, hexdigest) if sep else None
    if digest is None:
        return False  # absent, or a value we do not understand: do not advertise it
    return f"sha256={digest[1]}" if digest[0] == "sha256" else True


# -- links -------------------------------------------------------------------------


def _resolved(base: str, href: str) -> str:
    """``href`` (surrounding whitespace ignored, as browsers do) resolved against ``base``."""
    try:
        return urljoin(base, href.strip())
    except ValueError:
        return ""


def _release_link(url: str, digest: tuple[str, str] | None, *, requires_python: str | None,
                  yanked: bool | str, core_metadata: bool | str, size: int | None = None,
                  upload_time: str | None = None) -> UpstreamLink | None:
    """A link to ``url`` (hash from ``digest``, else its fragment), or None if unusable."""
    if not url or len(url) > MAX_URL_LENGTH or _URL_UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    filename = _filename(parts.path)
    if filename is None:
        return None
    if digest is None:
        match = _FRAGMENT_DIGEST.fullmatch(parts.fragment)
        digest = _digest(match.group(1), match.group(2)) if match else None
    algo, value = digest if digest else (None, None)
    return UpstreamLink(filename=filename, url=urldefrag(url).url, hash_algo=algo,
                        hash_value=value, requires_python=requires_python, yanked=yanked,
                        core_metadata=core_metadata, size=size, upload_time=upload_time)


def _digest(algo: str, value: str) -> tuple[str, str] | None:
    """(algo, hex) in lower case if ``algo`` is one we can verify and ``value`` fits it."""
    algo = algo.lower()
    if _HEX_LENGTHS.get(algo) != len(value) or not _HEX.fullmatch(value):
        return None
    return algo, value.lower()


def _filename(path: str) -> str | None:
    """The percent-decoded last segment of ``path``, or None if it is no safe file name."""
    try:
        name = unquote(path.rpartition("/")[2], errors="strict")
    except UnicodeDecodeError:
        return None
    if (not name or name in (".", "..") or len(name) > MAX_FILENAME_LENGTH
            or "/" in name or "\\" in name or _CONTROL.search(name)):
        return None
    return name


def _belongs(filename: str, project: str) -> bool:
    """``filename`` is a release file type of the canonical ``project``.

    Wheels: the first "-"-separated part is the project. Others: the normalised stem
    is "<project>-<something starting like a version>", so "foo-bar-1.0.tar.gz" and
    "foobar-1.0.tar.gz" are not files of "foo".
    """
    lowered = filename.lower()
    extension = next((ext for ext in ARCHIVE_EXTENSIONS if lowered.endswith(ext)), None)
    if extension is None:
        return False
    stem = filename[:-len(extension)]
    if extension == ".whl":
        name, _, rest = stem.partition("-")
        return canonicalize_name(name) == project and bool(_VERSION_START.match(rest))
    normalized = canonicalize_name(stem)
    prefix = project + "-"
    return (normalized.startswith(prefix)
            and bool(_VERSION_START.match(normalized, len(prefix))))


def _deduplicated(links: Iterable[UpstreamLink]) -> list[UpstreamLink]:
    """One link per filename at the place of the first; a later one wins if it knows more."""
    kept: dict[str, UpstreamLink] = {}
    for link in links:
        old = kept.get(link.filename)
        if old is None or _knows_more(link, old):
            kept[link.filename] = link
    return list(kept.values())


def _knows_more(new: UpstreamLink, old: UpstreamLink) -> bool:
    if old.hash_value is not None:
        return False
    if new.hash_value is not None:
        return True
    return old.requires_python is None and new.requires_python is not None


def _blank_is_none(value: str | None) -> str | None:
    return value.strip() or None if value else None
