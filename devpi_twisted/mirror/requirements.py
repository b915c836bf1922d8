"""The projects a release requires, read from its core metadata (METADATA, PKG-INFO):
what the mirror prefetches (spec/mirror.md 3). Pure, no I/O."""

from __future__ import annotations

import email.parser
import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

MAX_REQUIREMENTS = 200  # projects taken from one metadata file
_EXTRA = re.compile(r"\bextra\b")


def parse_requirements(metadata: bytes) -> list[str]:
    """The normalised names of the projects a core metadata file (METADATA, PKG-INFO)
    requires, in order, each once: its ``Requires-Dist`` entries but those of an extra
    (``; extra == ...``); at most MAX_REQUIREMENTS. Unreadable entries are left out."""
    try:
        # The parser's default policy is compat32 (email.policy, which would import the
        # header registry for nothing, is about 0.6 MB resident).
        headers = email.parser.BytesHeaderParser().parsebytes(metadata)
        values = headers.get_all("Requires-Dist") or []
    except Exception:  # not a metadata file at all
        return []
    names: dict[str, None] = {}
    for value in values:
        try:
            requirement = Requirement(str(value).strip())
        except InvalidRequirement:
            continue
        if requirement.marker is not None and _EXTRA.search(str(requirement.marker)):
            continue
        names.setdefault(canonicalize_name(requirement.name), None)
        if len(names) >= MAX_REQUIREMENTS:
            break
    return list(names)
