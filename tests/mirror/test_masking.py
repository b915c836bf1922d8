"""Credentials in mirror URLs are masked wherever a URL is shown or logged (issue 19 item 9)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from devpi_twisted.mirror.upstream import Upstream, UpstreamError, public_url, split_credentials
from devpi_twisted.mirror.urls import masked_url
from tests.support import failure_of


@pytest.mark.parametrize(("url", "shown"), [
    ("https://pypi.org/simple/", "https://pypi.org/simple/"),
    ("https://bob:s3cret@h.example/simple/", "https://bob:****@h.example/simple/"),
    ("https://s3cret@h.example/simple/", "https://****@h.example/simple/"),  # a token as user
    ("https://bob:@h.example/", "https://bob:****@h.example/"),
    ("https://:s3cret@h.example/", "https://****@h.example/"),
    ("https://bob%3As3cret@h.example/", "https://****@h.example/"),  # percent-encoded
    ("https://bob:s3%40cret@h.example/", "https://bob:****@h.example/"),
    ("https://bob:s3@cret@h.example:8443/simple/", "https://bob:****@h.example:8443/simple/"),
    ("https://bob:s3/cret@h.example/simple/", "https://****@h.example/simple/"),  # '/' in it
    ("https://bob:s3?cret@h.example/simple/", "https://****@h.example/simple/"),  # '?' in it
    ("http://bob:s3cret@h.example:abc/simple/", "http://bob:****@h.example:abc/simple/"),
    ("http://bob:s3cret@[::1/simple/", "http://bob:****@[::1/simple/"),  # does not parse
    ("https://h.example/simple/?token=s3cret", "https://h.example/simple/?token=****"),
    ("https://h.example/s/?a=1&access_token=s3cret&b=2", "https://h.example/s/?a=1&access_token=****&b=2"),
    ("https://h.example/s/?password=s3cret;API_KEY=s3cret", "https://h.example/s/?password=****;API_KEY=****"),
    ("https://h.example/s/?client_secret=s3cret&x-auth=s3cret", "https://h.example/s/?client_secret=****&x-auth=****"),
    ("https://h.example/s/?X-Amz-Signature=s3cret&page=2", "https://h.example/s/?X-Amz-Signature=****&page=2"),
    ("https://h.example/s/#access_token=s3cret", "https://h.example/s/#access_token=****"),
    ("https://h.example/#=?token=s3cret", "https://h.example/#=?token=****"),  # hypothesis found
    ("https://u:p@h.example/s/?token=s3cret", "https://u:****@h.example/s/?token=****"),
    ("https://h.example/s/?email=a@b.example", "https://****@b.example"),  # "@": better too much
])
def test_masked_url_hides_every_form_of_credentials(url: str, shown: str) -> None:
    assert masked_url(url) == shown


SECRET = "s3cretXYZ"
_urlish = st.text(st.characters(codec="utf-8"), max_size=30)


@given(_urlish, _urlish, _urlish, st.sampled_from(["token", "access_token", "password", "apikey", "auth"]))
def test_masked_url_never_raises_and_never_shows_a_query_secret(
        host: str, path: str, user: str, key: str) -> None:
    url = f"https://{user}:{SECRET}@{host}/{path}?{key}={SECRET}"
    shown = masked_url(url)
    assert f":{SECRET}@" not in shown and f"{key}={SECRET}" not in shown


def test_split_credentials_takes_a_stored_url_with_a_bad_port_or_host() -> None:
    # mirror_url values stored before validation: the request fails, this must not
    assert split_credentials("http://bob:pw@h.example:abc/simple/") == (
        "http://h.example:abc/simple/", "Basic Ym9iOnB3")
    assert split_credentials("http://[::1/simple/") == ("http://[::1/simple/", None)
    assert public_url("https://bob:pw@h.example/simple/?token=x") == "https://h.example/simple/?token=****"


class Refusing:
    """A treq client whose every request fails as a refused connection does."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return fail(ConnectionRefusedError("refused"))


def test_upstream_errors_and_logs_mask_a_token_in_the_query() -> None:
    upstream = Upstream(Clock(), Refusing(), retries=0)
    with capturedLogs() as events:
        error = failure_of(upstream.get_page(f"https://bob:{SECRET}@h.example/simple/?token={SECRET}"))
    assert isinstance(error, UpstreamError)
    assert SECRET not in str(error) and "token=****" in str(error)
    assert events and not any(SECRET in formatEvent(e) or SECRET in repr(e) for e in events)
