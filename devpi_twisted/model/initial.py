"""The state a new server starts with (init, and an import without them): the ``root``
user and the ``root/pypi`` mirror, and the check of an operator's root hash."""

from __future__ import annotations

from devpi_twisted.model import indexes as idx
from devpi_twisted.model import users as usr
from devpi_twisted.model.acl import ROOT
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.passwords import hash_password, hash_refusal
from devpi_twisted.storage.interface import IndexRecord, UserRecord


def check_root_hash(pwhash: str | None) -> None:
    """InvalidInput for an operator's ``--root-passwd-hash`` outside the costs an API
    caller may set (every login as root would pay them)."""
    refusal = None if pwhash is None else hash_refusal(pwhash)
    if refusal is not None:
        raise InvalidInput(f"--root-passwd-hash: {refusal}")


def root_user(password: str, pwhash: str | None, now: float) -> UserRecord:
    """The ``root`` user made by init (its hash computed here: init runs before the reactor)."""
    return UserRecord(ROOT, {"created": usr.timestamp(now)},
                      pwhash or hash_password(password), serial=0)


def root_pypi(mirror_url: str = "https://pypi.org/simple/") -> IndexRecord:
    config = {
        "type": idx.MIRROR, "volatile": False, "title": "PyPI", "mirror_url": mirror_url,
        "mirror_web_url_fmt": "https://pypi.org/project/{name}/",
    }
    return IndexRecord(ROOT, "pypi", config, serial=0)
