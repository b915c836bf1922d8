"""Login tokens stop working on a replica when the password changes on the primary
(issue 19 item 11): validity comes from the replicated user record; an API token revoked
on the primary is refused by the replica as soon as it has the revocation (issue 21)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

from tests.e2e.test_replication import Pair, converged, fake, pair  # noqa: F401  (fixtures)
from tests.support import call, login


def _authstatus(url: str, user: str, token: str) -> str:
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    request = urllib.request.Request(url + "/+api", headers={"X-Devpi-Auth": auth,
                                                            "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["result"]["authstatus"][0])


def test_a_token_is_refused_on_the_replica_once_the_password_changed(pair: Pair) -> None:
    primary, replica = pair.primary.url, pair.replica.url
    assert call(primary + "/tokenuser", "PUT", {"password": "before"})[0] == 201
    auth = login(primary, "tokenuser", "before")
    converged(pair)
    assert _authstatus(replica, *auth) == "ok"
    assert call(primary + "/tokenuser", "PATCH", {"password": "after"}, auth)[0] == 200
    converged(pair)
    assert _authstatus(replica, *auth) == "noauth"
    assert _authstatus(primary, *auth) == "noauth"
    assert _authstatus(replica, *login(primary, "tokenuser", "after")) == "ok"


def _bearer(url: str, token: str) -> int:
    return call(url + "/+api", headers={"Authorization": f"Bearer {token}"})[0]


def test_an_api_token_revoked_on_the_primary_is_refused_by_the_replica(pair: Pair) -> None:
    """Issue 21 item 4: revocation reaches the replica through the changelog; the time
    from the DELETE on the primary to the replica's first refusal is printed."""
    primary, replica = pair.primary.url, pair.replica.url
    assert call(primary + "/apitok", "PUT", {"password": "pw"})[0] == 201
    auth = login(primary, "apitok", "pw")
    status, reply, _ = call(primary + "/apitok/+token-create", "POST", {}, auth)
    assert status == 200, reply
    token = reply["result"]["token"]
    converged(pair)
    assert _bearer(replica, token) == 200
    (token_id,) = call(primary + "/apitok/+tokens", "GET", None, auth)[1]["result"]["tokens"]
    started = time.monotonic()
    assert call(f"{primary}/apitok/+tokens/{token_id}", "DELETE", None, auth)[0] == 200
    polls = 0
    while _bearer(replica, token) != 401:
        polls += 1
        assert time.monotonic() - started < 30, "the replica still accepts the revoked token"
        time.sleep(0.005)
    took = time.monotonic() - started
    print(f"\nrevocation on the primary to the replica's first refusal: {took * 1000:.1f} ms "
          f"({polls} accepted meanwhile)")
    assert _bearer(primary, token) == 401
