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
# Unicode categories of characters that do not show: controls, format characters
# (zero-width, bidi, BOM), lone surrogates, line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NOT_ALNUM_RUN = re.compile(r"[^A-Za-z0-9]+")


def hidden_char(text: str, spaces: bool = False) -> str | None:
    """The first character of ``text`` that does not show (a control, format character,
    lone surrogate or line separator; with ``spaces`` also a Unicode space), else None."""
    for char in text:
        category = unicodedata.category(char)
        if category in _HIDDEN or (spaces and category == "Zs"):
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
    hidden = hidden_char(name, spaces=True)
    if hidden is not None:
        raise InvalidInput(
            f"{kind} {name[:MAX_NAME]!r} contains the invisible character U+{ord(hidden):04X}, "
            "which isn't allowed")
    if len(name.encode("utf-8")) > MAX_NAME:
        raise InvalidInput(f"{kind} '{name[:40]}...' is longer than {MAX_NAME} bytes")
    return name


def is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode: no lone surrogates, which cannot be encoded
    (JSON's ``\\ud800`` escapes make them), stored or sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def can_be_stored(text: str) -> bool:
    """Whether ``text`` could be a stored name or version at all: neither NUL nor a lone
    surrogate can be part of a PostgreSQL key. Lookups of other text answer "not found"
    without asking storage."""
    return "\x00" not in text and is_unicode(text)


def normalize_project(name: str) -> str:
    """devpi's canonical project name: runs of non-alphanumerics become '-', lower case.

    Equal to PEP 503 normalisation for every valid distribution name.
    """
    return _NOT_ALNUM_RUN.sub("-", name).lower()
