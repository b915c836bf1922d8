"""Webhooks' rules: a hook's validation, who manages which hooks, the signature scheme
README.rst documents, the retry delays."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from devpi_twisted.model import hooks
from devpi_twisted.model.acl import Identity, Scope
from devpi_twisted.model.errors import InvalidInput


def test_a_valid_hook_keeps_the_events_in_their_canonical_order() -> None:
    assert hooks.parse_hook({"url": "https://example.com:8443/in", "secret": "12345678",
                             "events": ["index", "upload", "upload"]}) == (
        "https://example.com:8443/in", "12345678", ("upload", "index"))


@pytest.mark.parametrize("url", ["ftp://h/", "h/x", "http:///x", "http://h x/", "javascript:1",
                                 "http://h:0x1/", "https://h/\n"])
def test_only_http_and_https_urls(url: str) -> None:
    with pytest.raises(InvalidInput, match="'url'"):
        hooks.parse_hook({"url": url, "secret": "12345678", "events": ["upload"]})


def test_an_unknown_event_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown event 'uploaded'"):
        hooks.parse_hook({"url": "http://h/", "secret": "12345678", "events": ["uploaded"]})


def test_who_manages_hooks() -> None:
    alice, root = Identity("alice"), Identity("root")
    assert hooks.may_manage(alice, "alice/dev") and hooks.may_manage(root, "alice/dev")
    assert not hooks.may_manage(Identity("bob"), "alice/dev")
    assert not hooks.may_manage(Identity(), "alice/dev")
    assert hooks.may_manage(root, "") and not hooks.may_manage(alice, "")
    narrow = Identity("alice", scope=Scope(allowed=frozenset({"upload"})))
    assert not hooks.may_manage(narrow, "alice/dev")
    other_index = Identity("alice", scope=Scope(indexes=frozenset({"alice/prod"})))
    assert not hooks.may_manage(other_index, "alice/dev")


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"event":"upload"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert hooks.signature("s3cret", "1700000000", body) == "sha256=" + expected
    assert hooks.verify("s3cret", "1700000000", body, "sha256=" + expected)
    assert not hooks.verify("s3cret", "1700000001", body, "sha256=" + expected)
    assert not hooks.verify("other", "1700000000", body, "sha256=" + expected)


def test_retry_delays_grow_exponentially_with_jitter_up_to_a_cap() -> None:
    low = [hooks.retry_delay(n, lambda: 0.0) for n in range(1, 6)]
    assert low == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert hooks.retry_delay(3, lambda: 0.999) < 8.0
    assert hooks.retry_delay(40, lambda: 0.0) == hooks.MAX_DELAY / 2
