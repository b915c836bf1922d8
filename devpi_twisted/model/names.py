"""User, index and project names (spec/model.md section 1).

User and index names follow devpi: case-sensitive and kept as given (devpi neither
lower-cases nor Unicode-normalises them), any Unicode but ASCII controls, space and
the ASCII punctuation other than ``-.@_``. As each becomes a path segment of blob keys
and file names, we also refuse ``.`` and ``..``, names longer than MAX_NAME bytes of
UTF-8, and the invisible characters devpi lets through: other control characters
(DEL, C1), format characters (zero-width spaces and joiners, bidi overrides, BOM),
lone surrogates and Unicode spaces and line separators.
"""

from __future__ import annotations

import re
import unicodedata

from devpi_twisted.model.errors import InvalidInput

MAX_NAME = 128  # bytes of UTF-8 in a user or index name
# ASCII controls, space and every ASCII punctuation but "-.@_" (devpi's blocklist).
_FORBIDDEN = re.compile(r"[\x00-\x20!\"#$%&'()*+,/:;<=>?\[\\\]^`{|}~]")
# Unicode categories of characters that do not show: controls, format characters,
# surrogates, spaces and line/paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})
_NOT_ALNUM_RUN = re.compile(r"[^A-Za-z0-9]+")


def _invisible(name: str) -> str | None:
    """The first character of ``name`` that does not show (ASCII ones but DEL are
    checked by _FORBIDDEN already)."""
    for char in name:
        if (char == "\x7f" or not char.isascii()) and unicodedata.category(char) in _INVISIBLE:
            return char
    return None


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid user or index name, else raise InvalidInput.

    ``kind`` is ``"username"`` or ``"indexname"``, as in devpi's messages.
    """
    if not name or _FORBIDDEN.search(name):
        raise InvalidInput(
            f"{kind} '{name}' contains characters that aren't allowed. "
            "Any ascii symbol besides -.@_ is blocked.")
    if name in (".", ".."):
        raise InvalidInput(f"{kind} '{name}' is not allowed")
    hidden = _invisible(name)
    if hidden is not None:
        raise InvalidInput(
            f"{kind} {name[:MAX_NAME]!r} contains the invisible character U+{ord(hidden):04X}, "
            "which isn't allowed")
    if len(name.encode("utf-8")) > MAX_NAME:
        raise InvalidInput(f"{kind} '{name[:40]}...' is longer than {MAX_NAME} bytes")
    return name


def storable(name: str) -> bool:
    """Whether ``name`` could be a stored user or index name at all (it may be one from
    before today's rules): read paths answer 404 for other names without asking storage."""
    if not name or "\x00" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize_project(name: str) -> str:
    """devpi's canonical project name: runs of non-alphanumerics become '-', lower case.

    Equal to PEP 503 normalisation for every valid distribution name.
    """
    return _NOT_ALNUM_RUN.sub("-", name).lower()
