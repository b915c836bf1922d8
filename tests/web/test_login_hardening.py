"""Issue 19 items 1, 4 and 11 through the routes: who may set a password hash and at
what cost, failed logins throttled per user and per client, password checks on a
bounded pool of their own, login tokens bound to the user's current password."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater

from devpi_twisted.model.acl import Policy
from devpi_twisted.model.errors import TooManyAttempts, Unauthenticated
from devpi_twisted.model.ops import ServerOps
from devpi_twisted.model.names import MAX_NAME
from devpi_twisted.model.passwords import DUMMY_HASH, check_password, hash_password
from devpi_twisted.model.tokens import TokenSigner
from devpi_twisted.web.hashing import HashingPool
from tests.support import failure_of, result_of
from tests.web.conftest import Server, cached_hash, make_server, pg_of

# A real argon2id hash of "secret" with 300 passes (over a tiny memory, so the test can
# afford to make it): the cost a client must not be able to choose.
DEAR_T = PasswordHasher(time_cost=300, memory_cost=8, parallelism=1).hash("secret")
OURS = cached_hash("pw")


class Recorder:
    """The executor of password checks, run inline, remembering what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []
        self.fresh_salts = False  # True: every hash is made anew, as the server does

    def __call__(self, fn: Any, *args: Any) -> Deferred[Any]:
        self.calls.append((fn, args))
        if fn is hash_password and not self.fresh_salts:
            return succeed(cached_hash(*args))
        return succeed(fn(*args))

    def checks(self) -> list[tuple[Any, ...]]:
        return [args for fn, args in self.calls if fn is check_password]


@pytest.fixture(params=["sqlite", "postgres"])
def recorded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Recorder]]:
    recorder = Recorder()
    made = make_server(tmp_path, pg=pg_of(request), hashing=recorder)
    yield made, recorder
    made.storage.close()


def _root(server: Server) -> dict[str, Any]:
    return server.devpi_auth("root", server.login("root", ""))


def _user(server: Server, name: str = "alice", password: str = "secret") -> None:
    assert server.client.request("PUT", f"/{name}", {"password": password}).code == 201


def _login(server: Server, user: str, password: str, client: str | None = None) -> Any:
    headers = {"X-Real-IP": [client]} if client else None
    return server.client.request("POST", "/+login", {"user": user, "password": password},
                                 headers=headers)


def _basic(user: str, password: str, client: str | None = None) -> dict[str, list[str]]:
    headers = {"Authorization": ["Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()]}
    if client:
        headers["X-Real-IP"] = [client]
    return headers


# -- item 1: the hash's cost is not the client's to choose -------------------------------


def test_anonymous_and_plain_users_may_not_set_a_pwhash(server: Server) -> None:
    reply = server.client.request("PUT", "/mallory", {"pwhash": OURS})
    assert reply.code == 403 and "only root" in reply.json["message"]
    _user(server)
    alice = server.devpi_auth("alice", server.login("alice", "secret"))
    serial = server.storage.serial
    reply = server.client.request("PATCH", "/alice", {"pwhash": OURS}, headers=alice)
    assert reply.code == 403 and "only root" in reply.json["message"]
    assert server.storage.serial == serial
    assert server.client.request("GET", "/mallory").code == 404


@pytest.mark.parametrize("pwhash", [
    DEAR_T,
    "$argon2id$v=19$m=1048576,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    "not a hash",
])
def test_root_may_not_set_a_pwhash_dearer_than_ours(server: Server, pwhash: str) -> None:
    root = _root(server)
    _user(server)
    serial = server.storage.serial
    created = server.client.request("PUT", "/mallory", {"pwhash": pwhash}, headers=root)
    modified = server.client.request("PATCH", "/alice", {"pwhash": pwhash}, headers=root)
    for reply in (created, modified):
        assert reply.code == 400 and "pwhash" in reply.json["message"]
    assert server.storage.serial == serial
    assert server.login("alice", "secret")


def test_root_sets_a_pwhash_at_our_parameters(server: Server) -> None:
    root = _root(server)
    assert server.client.request("PUT", "/alice", {"pwhash": OURS}, headers=root).code == 201
    assert server.login("alice", "pw")


def test_a_stored_hash_dearer_than_ours_is_never_checked(recorded: tuple[Server, Recorder]) -> None:
    server, recorder = recorded
    _user(server)
    user = result_of(server.storage.get_user("alice"))
    result_of(server.storage.update_user("alice", user.profile, DEAR_T, user.serial))
    assert _login(server, "alice", "secret").code == 401


def test_password_checks_beyond_the_pools_queue_are_503_and_pages_still_answer(
        tmp_path: Path) -> None:
    pool = HashingPool(Clock(), threads=1, queue=1)  # never started: checks stay pending
    server = make_server(tmp_path, hashing=pool)
    agent = server.client._http
    waiting = [agent.request("POST", "http://testserver/+login",
                             data=b'{"user": "root", "password": "x"}') for _ in range(2)]
    answered: list[Any] = []
    for d in waiting:
        d.addBoth(answered.append)
    assert pool.pending == 2 and answered == []
    reply = _login(server, "root", "x")
    assert reply.code == 503 and reply.header("Retry-After") == "2"
    assert "password checks" in reply.json["message"]
    assert server.client.get("/root/pypi/+api").code == 200
    assert server.client.get("/+api").code == 200


# -- item 4: failed logins throttled; an unknown user costs a check -------------------


def test_unknown_user_costs_a_check_against_the_dummy_hash(recorded: tuple[Server, Recorder]) -> None:
    server, recorder = recorded
    assert _login(server, "ghost", "guess").code == 401
    assert server.client.get("/+api", headers=_basic("ghost", "guess")).json["result"][
        "authstatus"][0] == "noauth"
    assert recorder.checks() == [("guess", DUMMY_HASH), ("guess", DUMMY_HASH)]


def test_failed_logins_for_a_user_are_throttled_with_429(recorded: tuple[Server, Recorder]) -> None:
    server, recorder = recorded
    _user(server)
    for n in range(6):
        assert _login(server, "alice", f"wrong{n}", client=f"10.0.0.{n}").code == 401
    checks = len(recorder.checks())
    for attempt in (_login(server, "alice", "secret", client="10.0.1.1"),
                    server.client.get("/+api", headers=_basic("alice", "wrong", "10.0.1.2"))):
        assert attempt.code == 429
        assert attempt.header("Retry-After") == "1"
        assert attempt.json == {"message": "too many failed logins, try again later"}
    assert len(recorder.checks()) == checks  # refused without computing anything
    server.clock.advance(1)
    assert _login(server, "alice", "secret", client="10.0.1.1").code == 200
    # the user's count starts over after a success
    for n in range(5):
        assert _login(server, "alice", f"again{n}", client=f"10.0.2.{n}").code == 401


def test_huge_unknown_names_share_one_throttle_key(server: Server) -> None:
    """Names longer than any that can exist count as their first MAX_NAME characters, so
    10,000-character names cannot grow the table of failures."""
    stem = "x" * MAX_NAME
    for n in range(6):
        name = f"{stem}{n:09999d}"
        assert _login(server, name, "guess", client=f"10.0.3.{n}").code == 401
    assert _login(server, stem + "y" * 9000, "guess", client="10.0.3.99").code == 429


def test_delays_double_with_every_further_failure(server: Server) -> None:
    _user(server)
    for n in range(6):
        _login(server, "alice", f"wrong{n}", client=f"10.0.0.{n}")
    server.clock.advance(1)
    assert _login(server, "alice", "wrong", client="10.0.0.9").code == 401
    assert _login(server, "alice", "secret", client="10.0.0.9").header("Retry-After") == "2"


def test_failed_logins_from_one_client_are_throttled_for_every_user(server: Server) -> None:
    _user(server)
    for n in range(21):
        assert _login(server, f"user{n}", "guess", client="192.0.2.7").code == 401
    refused = _login(server, "alice", "secret", client="192.0.2.7")
    assert refused.code == 429 and int(refused.header("Retry-After") or 0) >= 1
    assert _login(server, "alice", "secret", client="192.0.2.8").code == 200


def test_a_remembered_success_passes_the_throttle_only_from_its_own_client(server: Server) -> None:
    _user(server)
    ok = server.client.get("/+api", headers=_basic("alice", "secret", "10.1.1.1"))
    assert ok.json["result"]["authstatus"][0] == "ok"
    for n in range(6):
        _login(server, "alice", f"wrong{n}", client="10.6.6.6")
    again = server.client.get("/+api", headers=_basic("alice", "secret", "10.1.1.1"))
    assert again.json["result"]["authstatus"][0] == "ok"
    assert server.client.get("/+api", headers=_basic("alice", "secret", "10.6.6.6")).code == 429


def test_a_throttled_answer_is_held_back_a_moment(server: Server) -> None:
    """A client ignoring Retry-After gets at most one answer a second per connection."""
    _user(server)
    clock = server.clock
    ops = ServerOps(server.storage, Policy(), TokenSigner(b"k" * 16, clock.seconds),
                    lambda fn, *a: succeed(fn(*a)), clock.seconds,
                    pause=lambda seconds: deferLater(clock, seconds))
    for n in range(6):
        assert isinstance(failure_of(Deferred.fromCoroutine(ops.login(
            {"user": "alice", "password": f"wrong{n}"}, "10.0.0.1"))), Unauthenticated)
    held = Deferred.fromCoroutine(ops.login({"user": "alice", "password": "wrong"}, "10.0.0.1"))
    answered: list[Any] = []
    held.addBoth(answered.append)
    clock.advance(0.9)
    assert answered == []
    clock.advance(0.1)
    assert isinstance(answered[0].value, TooManyAttempts)


def test_tokens_are_not_throttled(server: Server) -> None:
    _user(server)
    token = server.login("alice", "secret")
    for n in range(30):
        _login(server, "alice", f"wrong{n}")
    assert server.client.get("/+api", headers=server.devpi_auth("alice", token)).json[
        "result"]["authstatus"][0] == "ok"


# -- item 11: tokens bound to the user's password -----------------------------------------


def _status(server: Server, user: str, token: str) -> str:
    return str(server.client.get("/+api", headers=server.devpi_auth(user, token)).json[
        "result"]["authstatus"][0])


def test_token_stops_working_when_the_password_changes(server: Server) -> None:
    _user(server)
    token = server.login("alice", "secret")
    alice = server.devpi_auth("alice", token)
    reply = server.client.request("PATCH", "/alice", {"password": "changed"}, headers=alice)
    assert reply.code == 200
    assert _status(server, "alice", token) == "noauth"
    assert _status(server, "alice", reply.json["result"]["password"]) == "ok"


def test_token_stops_working_when_root_resets_the_password(server: Server) -> None:
    _user(server)
    token = server.login("alice", "secret")
    root = _root(server)
    assert server.client.request("PATCH", "/alice", {"password": "reset"}, headers=root).code == 200
    assert _status(server, "alice", token) == "noauth"


def test_token_of_a_deleted_user_does_not_work_for_a_recreated_one(
        recorded: tuple[Server, Recorder]) -> None:
    server, recorder = recorded
    recorder.fresh_salts = True  # in the same second: only the new hash's salt differs
    _user(server)
    token = server.login("alice", "secret")
    alice = server.devpi_auth("alice", token)
    assert server.client.request("DELETE", "/alice", headers=alice).code == 200
    _user(server, "alice", "secret")  # same name, same password
    assert _status(server, "alice", token) == "noauth"
    reply = server.client.request("PATCH", "/alice", {"email": "a@b.c"}, headers=alice)
    assert reply.code == 403


def test_profile_changes_keep_the_token(server: Server) -> None:
    _user(server)
    token = server.login("alice", "secret")
    alice = server.devpi_auth("alice", token)
    assert server.client.request("PATCH", "/alice", {"email": "a@b.c"}, headers=alice).code == 200
    assert _status(server, "alice", token) == "ok"


def test_another_process_refuses_the_token_after_a_change_made_here(server: Server) -> None:
    """A second ServerOps over the same database, with nothing in memory in common but
    the key (as a worker or a replica has): the token's validity comes from the data."""
    _user(server)
    token = server.login("alice", "secret")
    other = ServerOps(server.storage, Policy(), TokenSigner(b"k" * 16, server.clock.seconds),
                      lambda fn, *a: succeed(fn(*a)), server.clock.seconds)
    assert result_of(other.authenticate("alice", token)).username == "alice"
    alice = server.devpi_auth("alice", token)
    assert server.client.request("PATCH", "/alice", {"password": "new"}, headers=alice).code == 200
    assert not result_of(other.authenticate("alice", token)).authenticated


def test_tokens_without_a_password_stamp_are_anonymous(server: Server) -> None:
    _user(server)
    old_style = TokenSigner(b"k" * 16, server.clock.seconds).make(["alice", [], True])
    assert _status(server, "alice", old_style) == "noauth"
