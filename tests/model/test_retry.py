"""retrying(): the one re-read-and-retry loop of the read-modify-write use cases."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from devpi_twisted.model.errors import NotFound, Unavailable
from devpi_twisted.model.retry import RETRIES, retrying
from devpi_twisted.storage.interface import StaleRecord

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that awaits nothing asynchronous (our attempts here)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise AssertionError("the coroutine waited for something")


def _attempts(stale: int) -> tuple[list[int], Any]:
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(len(calls))
        if len(calls) <= stale:
            raise StaleRecord("changed meanwhile")
        return "written"
    return calls, attempt


def test_the_first_attempt_that_is_not_stale_wins() -> None:
    calls, attempt = _attempts(stale=3)
    assert _run(retrying(attempt, "busy")) == "written"
    assert len(calls) == 4


def test_an_attempt_that_commits_at_once_runs_once() -> None:
    calls, attempt = _attempts(stale=0)
    assert _run(retrying(attempt, "busy")) == "written"
    assert calls == [0]


def test_too_many_stale_attempts_are_answered_unavailable() -> None:
    calls, attempt = _attempts(stale=RETRIES)
    with pytest.raises(Unavailable, match="^x is being changed$"):
        _run(retrying(attempt, "x is being changed"))
    assert len(calls) == RETRIES


def test_tries_bound_the_attempts() -> None:
    calls, attempt = _attempts(stale=5)
    with pytest.raises(Unavailable):
        _run(retrying(attempt, "busy", tries=2))
    assert len(calls) == 2


def test_other_errors_end_the_retries_at_once() -> None:
    calls: list[None] = []

    async def attempt() -> None:
        calls.append(None)
        raise NotFound("gone")
    with pytest.raises(NotFound):
        _run(retrying(attempt, "busy"))
    assert len(calls) == 1
