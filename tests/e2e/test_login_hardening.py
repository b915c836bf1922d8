"""Issue 19 items 1, 4 and 11 against the real daemon (sqlite; PostgreSQL with two
workers beside the main process, so consecutive requests reach different processes)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from argon2 import PasswordHasher

from tests.support import Daemon, call, login

DEAR = PasswordHasher(time_cost=300, memory_cost=8, parallelism=1).hash("secret")


def _request(url: str, method: str = "GET", body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def _auth(user: str, secret: str) -> dict[str, str]:
    return {"X-Devpi-Auth": base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _authstatus(daemon: Daemon, user: str, token: str) -> set[str]:
    """The answers of several requests, which the workers share between them."""
    return {_request(daemon.url + "/+api", headers=_auth(user, token))[1]["result"]["authstatus"][0]
            for _ in range(8)}


def test_old_token_is_refused_by_every_process_after_a_password_change(daemon: Daemon) -> None:
    assert call(daemon.url + "/tok1", "PUT", {"password": "first"})[0] == 201
    _, token = login(daemon.url, "tok1", "first")
    assert _authstatus(daemon, "tok1", token) == {"ok"}
    status, reply, _ = _request(daemon.url + "/tok1", "PATCH", {"password": "second"},
                                _auth("tok1", token))
    assert status == 200
    assert _authstatus(daemon, "tok1", token) == {"noauth"}
    assert _authstatus(daemon, "tok1", reply["result"]["password"]) == {"ok"}


def test_token_of_a_deleted_user_is_refused_for_the_recreated_one(daemon: Daemon) -> None:
    assert call(daemon.url + "/tok2", "PUT", {"password": "same"})[0] == 201
    _, token = login(daemon.url, "tok2", "same")
    assert _request(daemon.url + "/tok2", "DELETE", headers=_auth("tok2", token))[0] == 200
    assert call(daemon.url + "/tok2", "PUT", {"password": "same"})[0] == 201
    assert _authstatus(daemon, "tok2", token) == {"noauth"}


def test_a_client_cannot_choose_the_cost_of_its_password_hash(daemon: Daemon) -> None:
    status, reply, _ = _request(daemon.url + "/dear", "PUT", {"pwhash": DEAR})
    assert status == 403 and "only root" in reply["message"]
    _, root = login(daemon.url, "root", "")
    status, reply, _ = _request(daemon.url + "/dear", "PUT", {"pwhash": DEAR}, _auth("root", root))
    assert status == 400 and "t=300" in reply["message"]
    assert call(daemon.url + "/dear")[0] == 404


def test_failed_logins_are_answered_429_with_retry_after(daemon: Daemon) -> None:
    # From a client address of its own (X-Real-IP counts: the request comes from loopback),
    # so the other tests' logins from 127.0.0.1 stay unthrottled.
    assert call(daemon.url + "/flooded", "PUT", {"password": "right"})[0] == 201
    statuses = []
    for n in range(40):
        status, reply, headers = _request(daemon.url + "/+login", "POST",
                                          {"user": "flooded", "password": f"wrong{n}"},
                                          {"X-Real-IP": "198.51.100.77"})
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert reply == {"message": "too many failed logins, try again later"}
    assert set(statuses) <= {401, 429} and 429 in statuses
    # another client with the right password is not held back by the per-client count,
    # and a different user is not held back by this one's
    assert call(daemon.url + "/other", "PUT", {"password": "pw"})[0] == 201
    assert login(daemon.url, "other", "pw")
