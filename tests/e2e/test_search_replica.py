"""Search on a replica (two real daemons, as tests/e2e/test_replication.py starts them):
the rows arrive with the changes the replica imports (a description, the text of
uploaded docs), and leave with them (a deleted version)."""

from __future__ import annotations

import time
from urllib.parse import quote

from tests.e2e.test_replication import Pair, converged, fake, pair  # noqa: F401 (fixtures)
from tests.e2e.test_search import _docs, _post_form
from tests.support import call, login


def _total(url: str, query: str) -> int:
    status, reply, _ = call(f"{url}/+search?query={quote(query)}")
    assert status == 200, reply
    return int(reply["result"]["total"])


def test_search_on_the_replica_follows_the_primary(pair: Pair) -> None:
    primary, replica = pair.primary, pair.replica
    assert call(primary.url + "/finder", "PUT", {"password": "pw"})[0] == 201
    auth = login(primary.url, "finder", "pw")
    assert call(primary.url + "/finder/dev", "PUT", {}, auth)[0] == 200
    assert _post_form(f"{primary.url}/finder/dev/", auth, {
        ":action": "submit", "name": "tidy", "version": "1.0",
        "description": "keeps the lagoon clean"}) == 200
    assert _post_form(f"{primary.url}/finder/dev/", auth, {
        ":action": "doc_upload", "name": "tidy", "version": "1.0"}, ("tidy-1.0.doc.zip", _docs())) == 200
    converged(pair)
    for url in (primary.url, replica.url):
        assert (_total(url, "lagoon"), _total(url, "axolotl")) == (1, 1), url
    assert call(primary.url + "/finder/dev/tidy/1.0", "DELETE", auth=auth)[0] == 200
    converged(pair)
    deadline = time.monotonic() + 10
    while _total(replica.url, "axolotl") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (_total(replica.url, "lagoon"), _total(replica.url, "axolotl")) == (0, 0)
