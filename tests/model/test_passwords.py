"""Password hashes (spec/model.md section 2.2).

Every real argon2 hash at the server's parameters costs a few hundred milliseconds,
so the hashes are made once per module and the cheap cases use tiny parameters.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from argon2 import PasswordHasher, Type

from devpi_twisted.model.passwords import (
    DUMMY_HASH, check_password, hash_password, hash_refusal, legacy_hash, looks_like_hash,
    needs_rehash, verify_password,
)

PHC = re.compile(r"\$argon2id\$v=19\$m=65536,t=3,p=4\$([A-Za-z0-9+/]{22})\$([A-Za-z0-9+/]{43})")


@pytest.fixture(scope="module")
def empty_hash() -> str:
    return hash_password("")


@pytest.fixture(scope="module")
def unicode_hash() -> str:
    return hash_password("p\u00e4ssw\u00f6rd \U0001f600")


@pytest.fixture(scope="module")
def imported_hash() -> str:
    """A hash as found in imported data: argon2-cffi with other parameters."""
    return PasswordHasher(time_cost=2, memory_cost=102400, parallelism=8).hash("imported")


@pytest.fixture(scope="module")
def cheap_argon2i_hash() -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.I).hash("cheap")


def test_new_hash_is_argon2id_phc_with_passlib_default_parameters(unicode_hash: str) -> None:
    # 16-byte salt (22 base64 chars) and 32-byte digest (43 chars), no padding.
    assert PHC.fullmatch(unicode_hash)


def test_new_hashes_use_a_fresh_salt(empty_hash: str, unicode_hash: str) -> None:
    salt_a = PHC.fullmatch(empty_hash).group(1)  # type: ignore[union-attr]
    salt_b = PHC.fullmatch(unicode_hash).group(1)  # type: ignore[union-attr]
    assert salt_a != salt_b


def test_empty_password_verifies_like_root_default(empty_hash: str) -> None:
    assert verify_password("", empty_hash)


def test_non_empty_password_does_not_match_empty_password_hash(empty_hash: str) -> None:
    assert not verify_password(" ", empty_hash)


def test_unicode_password_verifies(unicode_hash: str) -> None:
    assert verify_password("p\u00e4ssw\u00f6rd \U0001f600", unicode_hash)


def test_wrong_password_does_not_verify(unicode_hash: str) -> None:
    assert not verify_password("passwort \U0001f600", unicode_hash)


def test_hash_with_current_parameters_needs_no_rehash(empty_hash: str) -> None:
    assert not needs_rehash(empty_hash)


def test_argon2_hash_with_other_parameters_verifies(imported_hash: str) -> None:
    assert imported_hash.startswith("$argon2id$v=19$m=102400,t=2,p=8$")
    assert verify_password("imported", imported_hash)


def test_argon2_hash_with_other_parameters_needs_rehash(imported_hash: str) -> None:
    assert needs_rehash(imported_hash)


def test_argon2i_hash_verifies_and_rejects_wrong_password(cheap_argon2i_hash: str) -> None:
    assert verify_password("cheap", cheap_argon2i_hash)
    assert not verify_password("Cheap", cheap_argon2i_hash)


def test_argon2i_hash_needs_rehash(cheap_argon2i_hash: str) -> None:
    assert needs_rehash(cheap_argon2i_hash)


def test_argon2_hashes_look_like_hashes(empty_hash: str, imported_hash: str, cheap_argon2i_hash: str) -> None:
    assert looks_like_hash(empty_hash)
    assert looks_like_hash(imported_hash)
    assert looks_like_hash(cheap_argon2i_hash)


@pytest.mark.parametrize("pwhash", [None, ""])
def test_missing_hash_never_verifies(pwhash: str | None) -> None:
    assert not verify_password("", pwhash)


@pytest.mark.parametrize("pwhash", [
    "garbage",
    "$argon2id$v=19$m=65536,t=3,p=4$xx$yy",
    "$argon2id$v=19$m=8,t=1,p=1",
    "$2b$12$abcdefghijklmnopqrstuu5Xq6Vn7NYpKy0tZ2j8uG4l1b5XH1e6u",
    "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8",
])
def test_unreadable_hash_does_not_verify_and_is_not_rehashed(pwhash: str) -> None:
    assert not verify_password("password", pwhash)
    assert not needs_rehash(pwhash)


@pytest.mark.parametrize("pwhash", ["garbage", "$2b$12$abcdefghijklmnopqrstuu5Xq6Vn7NYpKy0tZ2j8uG4l1b5XH1e6u"])
def test_non_argon2_strings_do_not_look_like_hashes(pwhash: str) -> None:
    assert not looks_like_hash(pwhash)


# -- the cost of a check is bounded before anything computes --------------------------


@pytest.mark.parametrize("params", ["m=65536,t=300,p=4", "m=1048576,t=3,p=4", "m=65536,t=3,p=64",
                                    "m=102400,t=3,p=8", "m=131072,t=1,p=1"])
def test_verify_refuses_a_stored_hash_dearer_than_any_we_made_or_imported(params: str) -> None:
    # A real hash at m=1 GiB would take a second and a gigabyte to check: it never verifies,
    # however right the password, because nothing is computed for it.
    dear = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("secret")
    dear = dear.replace("m=8,t=1,p=1", params)
    assert not verify_password("secret", dear)
    assert hash_refusal(dear) is not None


def test_the_dummy_hash_is_at_our_parameters_and_matches_nothing_likely() -> None:
    assert DUMMY_HASH.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not needs_rehash(DUMMY_HASH)
    assert hash_refusal(DUMMY_HASH) is None
    assert not verify_password("", DUMMY_HASH)


def test_a_client_may_set_hashes_at_our_parameters_or_cheaper(empty_hash: str,
                                                              cheap_argon2i_hash: str) -> None:
    assert hash_refusal(empty_hash) is None
    assert hash_refusal(cheap_argon2i_hash) is None


def test_a_client_may_not_set_the_parameters_old_devpi_dumps_carry(imported_hash: str) -> None:
    assert hash_refusal(imported_hash) is not None


def test_a_check_says_whether_a_match_is_rehashed(empty_hash: str, imported_hash: str,
                                                 cheap_argon2i_hash: str) -> None:
    # what the login asks of the password checks' child, in one call
    assert check_password("", empty_hash) == (True, False)
    assert check_password("imported", imported_hash) == (True, True)
    assert check_password("cheap", cheap_argon2i_hash) == (True, True)
    legacy = legacy_hash("salt", hashlib.sha256(b"saltold").hexdigest())
    assert check_password("old", legacy) == (True, True)
    # a wrong password is never rehashed, whatever the hash
    for pwhash in (empty_hash, imported_hash, legacy):
        assert check_password("wrong", pwhash) == (False, False)
    assert check_password("", DUMMY_HASH) == (False, False)
