"""ServerOps with a Directory (model/directory.py): who is asked, the shared login
throttle, remembered checks, login tokens of directory users. The directory here is
a stand-in answering from a table; the real one (ldaptor against slapd) is tested in
tests/identity and tests/e2e/test_ldap.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from devpi_twisted.model.acl import ANONYMOUS_IDENTITY, Identity, Policy, matches, may_read
from devpi_twisted.model.directory import REMEMBER_SECONDS
from devpi_twisted.model.errors import TooManyAttempts, Unauthenticated, Unavailable
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.passwords import hash_password
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.storage.executor import InlineExecutor
from devpi_twisted.storage.interface import UserRecord
from devpi_twisted.storage.sqlite import SqliteStorage
from tests.support import failure_of, result_of


class TableDirectory:
    def __init__(self, name: str = "ldap://directory") -> None:
        self.name = name
        self.users = {"alice": ("alice-pw", frozenset({"devs"})), "root": ("x", frozenset())}
        self.asked: list[str] = []
        self.down = False

    def check(self, username: str, password: str) -> Deferred[frozenset[str] | None]:
        self.asked.append(username)
        if self.down:
            return fail(Unavailable("the LDAP directory cannot be reached; try again later"))
        known = self.users.get(username)
        return succeed(known[1] if known is not None and known[0] == password else None)


def _offload(fn: Any, *args: Any) -> Deferred[Any]:
    return succeed(fn(*args))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ServerOps, TableDirectory, Clock, Any]:
    storage = SqliteStorage.open(tmp_path / "db.sqlite3", InlineExecutor())
    root = UserRecord("root", {"created": "2024-01-01T00:00:00Z"}, hash_password(""), 0)
    result_of(storage.bootstrap([root], []))
    clock = Clock()
    clock.advance(1_700_000_000)
    directory = TableDirectory()
    ops = ServerOps(storage, Policy(), TokenSigner(b"k" * 16, clock.seconds), _offload,
                    clock.seconds, directory=directory)
    return ops, directory, clock, storage


def test_a_directory_user_gets_a_token_with_its_groups(setup: Any) -> None:
    ops, directory, _, _ = setup
    token = result_of(ops.login({"user": "alice", "password": "alice-pw"}))["password"]
    assert result_of(ops.authenticate("alice", token)) == Identity("alice", frozenset({"devs"}))
    assert result_of(ops.authenticate("bob", token)) == ANONYMOUS_IDENTITY
    assert directory.asked == ["alice"]  # the token is not checked with the directory


def test_root_and_local_users_are_never_asked_of_the_directory(setup: Any) -> None:
    ops, directory, _, storage = setup
    assert result_of(ops.authenticate("root", "x")) == ANONYMOUS_IDENTITY
    assert result_of(ops.login({"user": "root", "password": ""}))["password"]
    result_of(storage.create_user("alice", {}, hash_password("local-pw")))
    assert result_of(ops.authenticate("alice", "alice-pw")) == ANONYMOUS_IDENTITY
    assert result_of(ops.authenticate("alice", "local-pw")) == Identity("alice")
    assert directory.asked == []


@pytest.mark.parametrize("name", [" alice", "alice ", "al ice", "al*ce", "ROOT", "Root"])
def test_names_no_user_could_have_and_root_in_any_case_are_not_asked(
        setup: Any, name: str) -> None:
    ops, directory, _, _ = setup
    directory.users[name] = ("pw", frozenset({"devs"}))  # a directory matching loosely
    assert result_of(ops.authenticate(name, "pw")) == ANONYMOUS_IDENTITY
    assert isinstance(failure_of(ops.login({"user": name, "password": "pw"})), Unauthenticated)
    assert directory.asked == []


def test_a_directory_token_ends_when_a_local_user_takes_the_name(setup: Any) -> None:
    ops, _, _, storage = setup
    token = result_of(ops.login({"user": "alice", "password": "alice-pw"}))["password"]
    result_of(storage.create_user("alice", {}, hash_password("local-pw")))
    assert result_of(ops.authenticate("alice", token)) == ANONYMOUS_IDENTITY


def test_a_directory_token_is_refused_by_a_server_of_another_directory(
        setup: Any, tmp_path: Path) -> None:
    ops, _, clock, storage = setup
    token = result_of(ops.login({"user": "alice", "password": "alice-pw"}))["password"]
    other = ServerOps(storage, Policy(), TokenSigner(b"k" * 16, clock.seconds), _offload,
                      clock.seconds, directory=TableDirectory("ldap://elsewhere"))
    assert result_of(other.authenticate("alice", token)) == ANONYMOUS_IDENTITY
    plain = ServerOps(storage, Policy(), TokenSigner(b"k" * 16, clock.seconds), _offload,
                      clock.seconds)
    assert result_of(plain.authenticate("alice", token)) == ANONYMOUS_IDENTITY


def test_basic_auth_is_remembered_for_a_while_and_login_always_asks(setup: Any) -> None:
    ops, directory, clock, _ = setup
    alice = Identity("alice", frozenset({"devs"}))
    assert result_of(ops.authenticate("alice", "alice-pw", client="a")) == alice
    assert result_of(ops.authenticate("alice", "alice-pw", client="a")) == alice
    assert directory.asked == ["alice"]
    result_of(ops.authenticate("alice", "alice-pw", client="b"))  # another client: asked
    result_of(ops.login({"user": "alice", "password": "alice-pw"}, client="a"))
    assert directory.asked == ["alice"] * 3
    clock.advance(REMEMBER_SECONDS + 1)
    result_of(ops.authenticate("alice", "alice-pw", client="a"))
    assert directory.asked == ["alice"] * 4


def test_an_empty_password_is_refused_without_asking(setup: Any) -> None:
    ops, directory, _, _ = setup
    assert result_of(ops.authenticate("alice", "")) == ANONYMOUS_IDENTITY
    assert directory.asked == []


def test_failed_directory_logins_are_throttled_like_local_ones(setup: Any) -> None:
    ops, directory, _, _ = setup
    for n in range(6):  # PER_USER: five free failures, the sixth makes the next wait
        e = failure_of(ops.login({"user": "alice", "password": f"wrong{n}"}, client="c"))
        assert isinstance(e, Unauthenticated)
    e = failure_of(ops.login({"user": "alice", "password": "alice-pw"}, client="c"))
    assert isinstance(e, TooManyAttempts) and e.retry_after > 0
    assert len(directory.asked) == 6  # the throttled attempt did not reach the directory


def test_a_directory_that_is_down_answers_unavailable_and_counts_no_failure(setup: Any) -> None:
    ops, directory, _, _ = setup
    directory.down = True
    for _ in range(8):
        e = failure_of(ops.login({"user": "alice", "password": "alice-pw"}, client="d"))
        assert isinstance(e, Unavailable) and "cannot be reached" in e.message
    assert result_of(ops.login({"user": "root", "password": ""}, client="d"))["password"]
    directory.down = False
    assert result_of(ops.login({"user": "alice", "password": "alice-pw"}, client="d"))


def test_directory_groups_feed_the_acls(setup: Any) -> None:
    ops, directory, _, _ = setup
    directory.users["carol"] = ("carol-pw", frozenset({"ops"}))
    alice = result_of(ops.authenticate("alice", "alice-pw"))
    carol = result_of(ops.authenticate("carol", "carol-pw"))
    assert may_read(alice, "team", "dev", (":devs",)) and matches(alice, [":devs"])
    assert not may_read(carol, "team", "dev", (":devs",)) and not matches(carol, [":devs"])
