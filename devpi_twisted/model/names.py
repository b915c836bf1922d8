"""User, index and project names (spec/model.md section 1)."""

from __future__ import annotations

import re

from devpi_twisted.model.errors import InvalidInput

# ASCII controls, space and every ASCII punctuation but "-.@_".
_FORBIDDEN = re.compile(r"[\x00-\x20!\"#$%&'()*+,/:;<=>?\[\\\]^`{|}~]")
_NOT_ALNUM_RUN = re.compile(r"[^A-Za-z0-9]+")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid user or index name, else raise InvalidInput.

    ``kind`` is ``"username"`` or ``"indexname"``, as in devpi's messages.
    """
    if not name or _FORBIDDEN.search(name):
        raise InvalidInput(
            f"{kind} '{name}' contains characters that aren't allowed. "
            "Any ascii symbol besides -.@_ is blocked.")
    return name


def normalize_project(name: str) -> str:
    """devpi's canonical project name: runs of non-alphanumerics become '-', lower case.

    Equal to PEP 503 normalisation for every valid distribution name.
    """
    return _NOT_ALNUM_RUN.sub("-", name).lower()
