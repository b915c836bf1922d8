"""Domain values as storage hands them out: index configurations, file links, version data.

Each is parsed from the stored JSON when a record is built (``IndexRecord`` and
``VersionRecord`` convert their field, wherever the record comes from: a row, the
in-memory cache, a test), so the layers above read attributes, never JSON keys.
``to_json()`` gives the stored JSON back exactly (keys, their order, values): that is
what the API shows, exports write and the changelog carries.

Every value is also a read-only ``Mapping`` of its JSON, for the code that treats the
configuration generically (PATCH forms, devpi 7's inheritance rules) or has not moved to
the attributes yet (the mirror's reads of its configuration).

The storage layer imports nothing above it, so these values hold no rules of the
domain (defaults of an ACL, validation): those stay in ``model/``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

STAGE = "stage"
MIRROR = "mirror"
ELINKS = "+elinks"  # the key of a version's file links in its stored data


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


def _json_copy(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@attrs.frozen(eq=False)
class _JsonValue(Mapping[str, Any]):
    """A value over its stored JSON object (kept as stored, read through properties)."""

    _json: Mapping[str, Any] = attrs.field(converter=_json_copy, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)

    def __eq__(self, other: object) -> bool:
        """Equal to any mapping with the same JSON (a record's field used to be a dict)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self._json) == dict(other)

    def to_json(self) -> dict[str, Any]:
        """The JSON object as stored (a fresh top-level dict the caller may change)."""
        return dict(self._json)


@attrs.frozen(eq=False)
class IndexConfig(_JsonValue):
    """What every index type's configuration has."""

    @property
    def type(self) -> str:
        return str(self._json.get("type", STAGE))

    @property
    def is_mirror(self) -> bool:
        return False

    @property
    def volatile(self) -> bool:
        return _flag(self._json.get("volatile"), True)

    @property
    def title(self) -> str | None:
        value = self._json.get("title")
        return None if value is None else str(value)


@attrs.frozen(eq=False)
class StageConfig(IndexConfig):
    """A private index (``type`` stage): uploads, bases it inherits from, ACLs."""

    @property
    def bases(self) -> tuple[str, ...]:
        return _names(self._json.get("bases"))

    @property
    def acl_upload(self) -> tuple[str, ...]:
        return _names(self._json.get("acl_upload"))

    @property
    def acl_toxresult_upload(self) -> tuple[str, ...] | None:
        """None when not set (the model's default applies)."""
        value = self._json.get("acl_toxresult_upload")
        return None if value is None else _names(value)


@attrs.frozen(eq=False)
class MirrorConfig(IndexConfig):
    """A mirror of another index server (``type`` mirror)."""

    @property
    def is_mirror(self) -> bool:
        return True

    @property
    def mirror_url(self) -> str:
        return str(self._json.get("mirror_url") or "")

    @property
    def mirror_cache_expiry(self) -> Any:
        """As stored (None when not set): the mirror decides what a bad value means."""
        return self._json.get("mirror_cache_expiry")

    @property
    def mirror_no_project_list(self) -> bool:
        return _flag(self._json.get("mirror_no_project_list"), False)

    @property
    def mirror_ignore_serial_header(self) -> bool:
        return _flag(self._json.get("mirror_ignore_serial_header"), False)

    @property
    def mirror_use_external_urls(self) -> bool:
        return _flag(self._json.get("mirror_use_external_urls"), False)

    @property
    def mirror_web_url_fmt(self) -> str | None:
        value = self._json.get("mirror_web_url_fmt")
        return None if value is None else str(value)


def index_config(value: Mapping[str, Any]) -> IndexConfig:
    """The configuration of the stored JSON's type (already parsed: as it is)."""
    if isinstance(value, IndexConfig):
        return value
    return MirrorConfig(value) if value.get("type") == MIRROR else StageConfig(value)


@attrs.frozen(eq=False)
class FileLink(_JsonValue):
    """One entry of a version's ``+elinks``: a release file, doc zip or tox result."""

    @property
    def rel(self) -> str:
        return str(self._json.get("rel", ""))

    @property
    def entrypath(self) -> str:
        return str(self._json["entrypath"])

    @property
    def filename(self) -> str:
        return self.entrypath.rsplit("/", 1)[-1]

    @property
    def for_entrypath(self) -> str | None:
        value = self._json.get("for_entrypath")
        return str(value) if value else None

    @property
    def hashes(self) -> Mapping[str, str]:
        return dict(self._json.get("hashes") or {})

    @property
    def sha256(self) -> str:
        return str(self.hashes.get("sha256", ""))

    @property
    def hash_spec(self) -> str:
        return str(self._json.get("hash_spec", ""))

    @property
    def log(self) -> list[Any]:
        return list(self._json.get("_log", []))

    @property
    def core_metadata(self) -> Mapping[str, Any] | None:
        value = self._json.get("core_metadata")
        return value if value else None


def _links(value: Any) -> tuple[FileLink, ...]:
    return tuple(link if isinstance(link, FileLink) else FileLink(link) for link in value or ())


@attrs.frozen(eq=False)
class VersionData(_JsonValue):
    """One version's data: its metadata and the links of its files."""

    links: tuple[FileLink, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "links", _links(self._json.get(ELINKS)))

    @classmethod
    def of(cls, metadata: Mapping[str, Any], links: Sequence[Mapping[str, Any]]) -> VersionData:
        """New version data: the metadata, and the links if there are any."""
        data = dict(metadata)
        if links:
            data[ELINKS] = [dict(link) for link in links]
        return cls(data)

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata (every key not starting with ``+``)."""
        return {k: v for k, v in self._json.items() if not k.startswith("+")}


def version_data(value: Mapping[str, Any]) -> VersionData:
    """The version data of the stored JSON (already parsed: as it is)."""
    return value if isinstance(value, VersionData) else VersionData(value)

