"""The staging file of streamed downloads (storage/spool.py), with the thread trips run
when the test says."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed

from devpi_twisted.storage.spool import Spool


class Trips:
    """An offload that runs each call when ``run_next`` is called, counting them."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., Any], tuple[Any, ...], Deferred[Any]]] = []
        self.count = 0

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.queued.append((fn, args, d))
        return d

    def run_next(self) -> None:
        fn, args, d = self.queued.pop(0)
        self.count += 1
        try:
            result = fn(*args)
        except Exception:
            d.errback()
        else:
            d.callback(result)

    def run_all(self) -> None:
        while self.queued:
            self.run_next()


def _inline(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
    try:
        return succeed(fn(*args))
    except Exception:
        return fail()


def test_a_small_body_costs_one_trip(tmp_path: Path) -> None:
    trips = Trips()
    spool = Spool(tmp_path, trips, prefix="t-", piece=100)
    spool.write(b"abc")
    spool.write(b"def")
    assert trips.queued == []
    closed = spool.close(True, lambda path: path.read_bytes())
    trips.run_all()
    assert trips.count == 1
    assert closed.result == b"abcdef"
    assert spool.size == 6 and spool.sha256.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    assert spool.path is not None and spool.path.name.startswith("t-")


def test_pieces_go_one_trip_at_a_time_in_order(tmp_path: Path) -> None:
    trips = Trips()
    spool = Spool(tmp_path, trips, piece=4)
    spool.write(b"1234")  # a piece: off to a thread
    spool.write(b"5678")  # waits for it
    spool.write(b"9")
    assert len(trips.queued) == 1
    closed = spool.close(True)
    assert len(trips.queued) == 1  # the close waits for the write under way
    trips.run_next()  # the first piece; then the rest went as one piece
    trips.run_all()
    assert closed.result == spool.path
    assert spool.path is not None and spool.path.read_bytes() == b"123456789"


def test_an_incomplete_body_is_closed_and_none_if_nothing_came(tmp_path: Path) -> None:
    spool = Spool(tmp_path, _inline)
    assert spool.close(False).result is None
    assert spool.path is None and list(tmp_path.iterdir()) == []
    spool = Spool(tmp_path, _inline, piece=1)
    spool.write(b"ab")
    assert spool.close(False).result is None
    assert spool.path is not None and spool.path.read_bytes() == b"ab"
    spool.remove()
    assert list(tmp_path.iterdir()) == []


def test_an_empty_complete_body_is_an_empty_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path, _inline)
    path = spool.close(True).result
    assert path is not None and path.read_bytes() == b""


def test_a_failed_write_fails_the_close_and_stops_spooling(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "gone", _inline, piece=1)  # no staging directory
    spool.write(b"a")
    assert spool.failure is not None
    spool.write(b"b")  # still counted
    assert spool.size == 2
    errors: list[Any] = []
    spool.close(True).addErrback(errors.append)
    assert errors and errors[0].check(FileNotFoundError)


@pytest.mark.parametrize("complete", [True, False])
def test_a_write_failing_under_a_close_fails_it(tmp_path: Path, complete: bool) -> None:
    trips = Trips()
    spool = Spool(tmp_path, trips, piece=1)
    spool.write(b"a")
    closed = spool.close(complete)
    fn, args, d = trips.queued.pop(0)
    d.errback(OSError("disk full"))
    trips.run_all()
    errors: list[Any] = []
    closed.addErrback(errors.append)
    assert errors and errors[0].check(OSError)
