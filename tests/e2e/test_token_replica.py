"""Login tokens stop working on a replica when the password changes on the primary
(issue 19 item 11): validity comes from the replicated user record."""

from __future__ import annotations

import base64
import json
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
