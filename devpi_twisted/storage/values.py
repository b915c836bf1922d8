"""Domain values as storage hands them out: index configurations, file links, version data.

Each is parsed from the stored JSON when a record is built (``IndexRecord`` and
``VersionRecord`` convert their field, wherever the record comes from: a row, the
in-memory cache, a test): its attributes are computed then, so a bad value fails where
storage builds it and the layers above read plain attributes, never JSON keys.
``to_json()`` gives the stored JSON back exactly (keys, their order, values, keys no
attribute covers): that is what the API shows, exports write and the changelog carries,
and what the code that treats a configuration generically (PATCH forms, devpi 7's
inheritance rules) starts from. Two values are equal when their JSON is.

The storage layer imports nothing above it, so these values hold no rules of the
domain (defaults of an ACL, validation): those stay in ``model/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

STAGE = "stage"
MIRROR = "mirror"
ELINKS = "+elinks"  # the key of a version's file links in its stored data
# an index without ``acl_read`` is readable by everybody (the principal of model/acl.py)
DEFAULT_ACL_READ = (":ANONYMOUS:",)


def _flag(value: Any, default: bool) -> bool:
    """A stored boolean (configs from old exports may spell it as text)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes")
    return bool(value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return tuple(str(item) for item in value or ())


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_copy(value: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return dict(value)


def _set(value: object, **fields: Any) -> None:
    """Set the parsed fields of a frozen value (from its ``__attrs_post_init__``)."""
    for name, field in fields.items():
        object.__setattr__(value, name, field)


def _parsed() -> Any:
    return attrs.field(init=False, eq=False, repr=False)


@attrs.frozen(eq=False)
class _JsonValue:
    """A value over its stored JSON object (kept as stored; attributes parsed from it)."""

    _json: Mapping[str, Any] = attrs.field(converter=_json_copy, repr=False)

    def __eq__(self, other: object) -> bool:
        """Equal to a value of the same kind with the same JSON."""
        if not isinstance(other, _JsonValue):
            return NotImplemented
        return type(self) is type(other) and self._json == other._json

    def to_json(self) -> dict[str, Any]:
        """The JSON object as stored (a fresh top-level dict the caller may change)."""
        return dict(self._json)


@attrs.frozen(eq=False)
class IndexConfig(_JsonValue):
    """What every index type's configuration has."""

    is_mirror: ClassVar[bool] = False
    type: str = _parsed()
    volatile: bool = _parsed()
    title: str | None = _parsed()
    # who may read the index (principals, as stored); not set: everybody, as before
    acl_read: tuple[str, ...] = _parsed()

    def __attrs_post_init__(self) -> None:
        json = self._json
        read = json.get("acl_read")
        _set(self, type=str(json.get("type", STAGE)), volatile=_flag(json.get("volatile"), True),
             title=_text(json.get("title")),
             acl_read=DEFAULT_ACL_READ if read is None else _names(read))


@attrs.frozen(eq=False)
class StageConfig(IndexConfig):
    """A private index (``type`` stage): uploads, bases it inherits from, ACLs."""

    bases: tuple[str, ...] = _parsed()
    acl_upload: tuple[str, ...] = _parsed()
    acl_toxresult_upload: tuple[str, ...] | None = _parsed()  # None: the model's default
    mirror_whitelist: tuple[str, ...] = _parsed()
    mirror_whitelist_inheritance: str = _parsed()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        json = self._json
        toxresult = json.get("acl_toxresult_upload")
        _set(self, bases=_names(json.get("bases")), acl_upload=_names(json.get("acl_upload")),
             acl_toxresult_upload=None if toxresult is None else _names(toxresult),
             mirror_whitelist=_names(json.get("mirror_whitelist")),
             mirror_whitelist_inheritance=str(json.get("mirror_whitelist_inheritance", "union")))


@attrs.frozen(eq=False)
class MirrorConfig(IndexConfig):
    """A mirror of another index server (``type`` mirror). Its flags are the truth of the
    stored value, as the mirror has always read them."""

    is_mirror: ClassVar[bool] = True
    mirror_url: str = _parsed()
    mirror_cache_expiry: Any = _parsed()  # as stored (None: not set): the mirror judges it
    mirror_no_project_list: bool = _parsed()
    mirror_ignore_serial_header: bool = _parsed()
    mirror_use_external_urls: bool = _parsed()
    mirror_web_url_fmt: str | None = _parsed()

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        json = self._json
        _set(self, mirror_url=str(json.get("mirror_url") or ""),
             mirror_cache_expiry=json.get("mirror_cache_expiry"),
             mirror_no_project_list=bool(json.get("mirror_no_project_list")),
             mirror_ignore_serial_header=bool(json.get("mirror_ignore_serial_header")),
             mirror_use_external_urls=bool(json.get("mirror_use_external_urls")),
             mirror_web_url_fmt=_text(json.get("mirror_web_url_fmt")))


def index_config(value: Mapping[str, Any] | IndexConfig) -> IndexConfig:
    """The configuration of the stored JSON's type (already parsed: as it is)."""
    if isinstance(value, IndexConfig):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return MirrorConfig(value) if value.get("type") == MIRROR else StageConfig(value)


@attrs.frozen(eq=False)
class FileLink(_JsonValue):
    """One entry of a version's ``+elinks``: a release file, doc zip or tox result."""

    rel: str = _parsed()
    entrypath: str = _parsed()
    filename: str = _parsed()
    for_entrypath: str | None = _parsed()
    hashes: Mapping[str, str] = _parsed()
    sha256: str = _parsed()
    hash_spec: str = _parsed()
    log: tuple[Any, ...] = _parsed()
    core_metadata: Mapping[str, Any] | None = _parsed()  # None when not given (or empty)
    yanked: Any = _parsed()  # False, True or a reason text (PEP 592)
    size: Any = _parsed()  # as stored (None: not given)
    upload_time: str | None = _parsed()

    def __attrs_post_init__(self) -> None:
        json = self._json
        if "entrypath" not in json:
            raise ValueError("a file link needs an entrypath")
        entrypath = str(json["entrypath"])
        hashes = MappingProxyType(dict(json.get("hashes") or {}))
        _set(self, rel=str(json.get("rel", "")), entrypath=entrypath,
             filename=entrypath.rsplit("/", 1)[-1],
             for_entrypath=str(json["for_entrypath"]) if json.get("for_entrypath") else None,
             hashes=hashes, sha256=str(hashes.get("sha256", "")),
             hash_spec=str(json.get("hash_spec", "")), log=tuple(json.get("_log", ())),
             core_metadata=json.get("core_metadata") or None, yanked=json.get("yanked", False),
             size=json.get("size"), upload_time=_text(json.get("upload_time")))


def _links(value: Any) -> tuple[FileLink, ...]:
    return tuple(FileLink(link) for link in value or ())


@attrs.frozen(eq=False)
class VersionData(_JsonValue):
    """One version's data: its metadata and the links of its files."""

    links: tuple[FileLink, ...] = _parsed()
    metadata: Mapping[str, Any] = _parsed()  # every key not starting with ``+``
    requires_python: str | None = _parsed()

    def __attrs_post_init__(self) -> None:
        json = self._json
        _set(self, links=_links(json.get(ELINKS)),
             metadata=MappingProxyType({k: v for k, v in json.items() if not k.startswith("+")}),
             requires_python=json.get("requires_python") or None)

    @classmethod
    def of(cls, metadata: Mapping[str, Any], links: Sequence[Mapping[str, Any]]) -> VersionData:
        """New version data: the metadata, and the links if there are any."""
        data = dict(metadata)
        if links:
            data[ELINKS] = [dict(link) for link in links]
        return cls(data)

    def with_links(self, links: Sequence[Mapping[str, Any] | FileLink]) -> dict[str, Any]:
        """The JSON of this version with ``links`` as its file links (order of keys kept)."""
        data = self.to_json()
        data[ELINKS] = [link.to_json() if isinstance(link, FileLink) else dict(link)
                        for link in links]
        return data


def version_data(value: Mapping[str, Any] | VersionData) -> VersionData:
    """The version data of the stored JSON (already parsed: as it is)."""
    return value if isinstance(value, VersionData) else VersionData(value)
