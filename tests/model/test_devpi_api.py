"""model/devpi_api.py (the devpi 6/7 views), model/project_paging.py, pure."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import succeed

from devpi_twisted.model.devpi_api import (API_6, API_7, index_view, request_keys,
                                           role_name, status_view, version_view)
from devpi_twisted.model.errors import InvalidInput
from devpi_twisted.model.project_paging import Paging, SortedNames, paging_of
from tests.support import result_of

MIRROR = {"type": "mirror", "volatile": True, "mirror_url": "https://x/simple/",
          "mirror_cache_expiry": 60, "mirror_ignore_serial_header": True,
          "mirror_provides_core_metadata": False, "title": "X"}
STAGE = {"type": "stage", "volatile": False, "bases": ["a/b"], "acl_upload": ["a"],
         "acl_toxresult_upload": [":ANONYMOUS:"], "mirror_whitelist": ["foo"],
         "mirror_whitelist_inheritance": "intersection", "custom_data": {"k": 1}}


def test_mode_6_shows_what_is_stored() -> None:
    assert index_view(MIRROR, API_6) == MIRROR and index_view(STAGE, API_6) == STAGE


def test_mode_7_renames_and_hides_what_devpi_7_lacks() -> None:
    assert index_view(MIRROR, API_7) == {"type": "remote", "volatile": True, "title": "X",
                                         "remote_url": "https://x/simple/",
                                         "remote_refresh_delay": 60}
    assert index_view(STAGE, API_7) == {
        "type": "local", "volatile": False, "bases": ["a/b"], "acl_upload": ["a"],
        "acl_toxresult_upload": [":ANONYMOUS:"], "custom_data": {"k": 1},
        "project_inheritance_rules": ["block type:remote if local_exists"]}
    union = {**STAGE, "mirror_whitelist": ["*"], "mirror_whitelist_inheritance": "union"}
    shown = index_view(union, API_7)
    assert shown["project_inheritance_rules"] == ["allow all"]
    assert shown["trust_inheritance_rules_from"] == "type:not remote"


def test_request_keys_take_either_spelling_once() -> None:
    assert request_keys({"remote_url": "u", "remote_refresh_delay": 5, "title": "t"}) == {
        "mirror_url": "u", "mirror_cache_expiry": 5, "title": "t"}
    assert request_keys({"remote_url": "u", "mirror_url": "u"}) == {"mirror_url": "u"}
    with pytest.raises(InvalidInput, match="remote_cache_expiry and remote_refresh_delay"):
        request_keys({"remote_cache_expiry": 1, "remote_refresh_delay": 2})


def test_status_roles_and_master_keys() -> None:
    assert [role_name(r, a) for r in ("standalone", "primary", "replica") for a in (6, 7)] == [
        "MASTER", "PRIMARY", "MASTER", "PRIMARY", "REPLICA", "REPLICA"]
    replica = {"role": "REPLICA", "primary-url": "u", "primary-serial": 3,
               "replica-files-in-sync-at": 1.0}
    six = status_view(replica, API_6)
    assert six["master-url"] == "u" and six["master-serial"] == 3
    assert status_view(six, API_7) == replica


def test_links_in_mode_7_carry_relpath_not_hashes() -> None:
    data = {"version": "1.0", "+links": [
        {"rel": "releasefile", "href": "http://h/a/b/+f/abc/0123456789abc/p-1.0.tar.gz",
         "hash_spec": "sha256=x", "hashes": {"sha256": "x"}, "log": []}]}
    assert version_view(data, API_6) == data
    assert version_view(data, API_7)["+links"] == [
        {"rel": "releasefile", "href": "http://h/a/b/+f/abc/0123456789abc/p-1.0.tar.gz",
         "relpath": "+f/abc/0123456789abc/p-1.0.tar.gz", "log": []}]


def test_paging_of_request_arguments() -> None:
    assert paging_of({}) is None
    assert paging_of({b"q": [b"Foo.Bar"], b"limit": [b"10"], b"offset": [b"5"]}) == Paging(
        "foo-bar", 10, 5)
    assert paging_of({b"limit": [b""]}) == Paging("", None, 0)
    names = [f"n{i:02d}" for i in range(20)]
    assert Paging("", 3, 18).page(names) == (["n18", "n19"], 20)
    assert Paging("n1", 2, 1).page(names) == (["n11", "n12"], 10)
    assert Paging("", None, 0).page(names) == (names, 20)


class _Storage:
    """What SortedNames asks of storage: sync, serial, listing_serial."""

    def __init__(self) -> None:
        self.serial = 5
        self.changed: dict[str, int] = {}

    def sync(self) -> Any:
        return succeed(None)

    def listing_serial(self, stages: list[str]) -> int:
        return max([-1, *(self.changed.get(stage, -1) for stage in stages)])


def test_sorted_names_are_read_again_only_after_their_index_changed() -> None:
    storage, reads = _Storage(), []

    async def names(user: str, index: str) -> list[str]:
        reads.append(f"{user}/{index}")
        return ["b", "a"] if index == "dev" else ["z"]

    kept = SortedNames(storage, names)  # type: ignore[arg-type]  # a stand-in storage
    assert result_of(kept("u", "dev")) == ["a", "b"]
    storage.serial, storage.changed["u/other"] = 6, 6  # a write to another index
    assert result_of(kept("u", "dev")) == ["a", "b"]
    assert reads == ["u/dev"]
    storage.serial, storage.changed["u/dev"] = 7, 7
    result_of(kept("u", "dev"))
    assert reads == ["u/dev", "u/dev"]
