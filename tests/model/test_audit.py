"""The audit rules as pure functions: the failed-login gate, the details of changes, the
query parameters of GET /+audit."""

from __future__ import annotations

import pytest

from devpi_twisted.model import audit
from devpi_twisted.model.acl import Identity, Scope
from devpi_twisted.model.errors import InvalidInput


def test_the_gate_admits_a_few_per_address_and_sums_up_the_rest() -> None:
    gate = audit.FailureGate()
    admitted = [gate.admit("10.0.0.1", f"n{i}", 100.0)[0] for i in range(25)]
    assert admitted == [True] * audit.FLOOD_PER_CLIENT + [False] * (25 - audit.FLOOD_PER_CLIENT)
    assert gate.admit("10.0.0.2", "x", 101.0)[0]  # another address has its own share
    assert gate.due(100.0 + audit.FLOOD_WINDOW - 1) == []
    summaries = gate.due(100.0 + audit.FLOOD_WINDOW)
    assert [(s.client, s.details["suppressed"], len(s.details["names"])) for s in summaries] == [
        ("10.0.0.1", 25 - audit.FLOOD_PER_CLIENT, audit.FLOOD_NAMES)]
    assert gate.admit("10.0.0.1", "n", 200.0)[0]  # a new window


def test_the_gate_bounds_rows_from_many_addresses() -> None:
    gate = audit.FailureGate()
    rows = sum(gate.admit(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", None, 5.0)[0]
               for i in range(audit.FLOOD_TOTAL + audit.FLOOD_MAX_CLIENTS + 500))
    assert rows == audit.FLOOD_TOTAL
    summaries = gate.due(5.0 + audit.FLOOD_WINDOW)
    assert len(summaries) == audit.FLOOD_MAX_CLIENTS + 1
    assert summaries[0].client == audit.EVERY_CLIENT and summaries[0].details["suppressed"] == 500


def test_index_changes_name_acls_before_and_after() -> None:
    old = {"type": "stage", "acl_upload": ["alice"], "title": "a"}
    new = {"type": "stage", "acl_upload": ["alice", "bob"], "acl_read": [":devs"], "title": "a"}
    assert audit.index_changes(old, new) == {
        "changed": ["acl_read", "acl_upload"],
        "acl": {"acl_read": {"old": None, "new": [":devs"]},
                "acl_upload": {"old": ["alice"], "new": ["alice", "bob"]}}}


def test_urls_are_recorded_without_credentials() -> None:
    assert audit.without_userinfo("https://u:p@host:8/x/y") == "https://host:8/x/y"
    assert audit.without_userinfo("http://host/") == "http://host/"


def test_events_carry_the_identitys_name_and_address() -> None:
    event = audit.by(Identity("alice", client="10.1.2.3"), audit.UPLOAD, "alice/dev", project="p")
    assert (event.actor, event.client, event.index, event.details) == (
        "alice", "10.1.2.3", "alice/dev", {"project": "p"})
    assert Identity("alice", client="a") == Identity("alice", client="b")  # not compared


def test_query_parameters_become_filters() -> None:
    query = audit.parse_query({"kind": ["login,upload", "yank"], "user": ["alice"],
                               "index": ["alice/dev"], "client": ["::FFFF:10.0.0.1"],
                               "since": ["10"], "until": ["20.5"], "limit": ["7"],
                               "cursor": ["99"]})
    assert query.kinds == {"login", "upload", "yank"}
    assert (query.actor, query.index, query.client) == ("alice", "alice/dev", "::ffff:a00:1")
    assert (query.since, query.until, query.limit, query.before_id) == (10.0, 20.5, 7, 99)
    assert audit.parse_query({}).limit == audit.DEFAULT_LIMIT


@pytest.mark.parametrize("params", [{"limit": ["1001"]}, {"since": ["inf"]}, {"client": ["x"]},
                                    {"kind": ["token"]}, {"cursor": ["0"]}, {"index": ["/a"]}])
def test_bad_query_parameters_are_refused(params: dict[str, list[str]]) -> None:
    with pytest.raises(InvalidInput):
        audit.parse_query(params)


def test_tokens_read_the_log_only_without_restrictions() -> None:
    from devpi_twisted.model.acl import Policy

    ops = audit.AuditOps(None, Policy())  # type: ignore[arg-type]  # (no storage needed)
    assert ops.may_read(Identity("root"))
    assert ops.may_read(Identity("root", scope=Scope()))
    assert not ops.may_read(Identity("root", scope=Scope(allowed=frozenset({"upload"}))))
    assert not ops.may_read(Identity("alice"))
