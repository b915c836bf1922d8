"""mirror.upstream.Shared: one piece of work, many independent waiters."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred

from devpi_twisted.mirror.upstream import Shared


def test_every_waiter_gets_the_result_and_cancelling_one_spares_the_rest() -> None:
    work: Deferred[str] = Deferred()
    shared = Shared(work)
    first, second, third = shared.wait(), shared.wait(), shared.wait()
    second.cancel()
    work.callback("page")
    got: list[object] = []
    first.addCallback(got.append)
    third.addCallback(got.append)
    second.addErrback(lambda f: got.append(f.type))
    assert got == ["page", "page", CancelledError]
    late: list[object] = []
    shared.wait().addCallback(late.append)  # after the end: the same result at once
    assert late == ["page"] and shared.done


def test_a_failure_reaches_every_waiter() -> None:
    work: Deferred[str] = Deferred()
    shared = Shared(work)
    waiters = [shared.wait(), shared.wait()]
    work.errback(RuntimeError("upstream down"))
    for waiter in waiters:
        failures: list[object] = []
        waiter.addErrback(failures.append)
        assert len(failures) == 1 and failures[0].check(RuntimeError)  # type: ignore[attr-defined]


def test_on_done_runs_before_any_waiter_hears() -> None:
    order: list[str] = []
    work: Deferred[str] = Deferred()
    shared = Shared(work, lambda: order.append("done"))
    shared.wait().addCallback(lambda _: order.append("waiter"))
    work.callback("x")
    assert order == ["done", "waiter"]


def test_work_already_finished_is_done_at_once() -> None:
    from twisted.internet.defer import succeed

    shared = Shared(succeed("x"))
    got: list[object] = []
    shared.wait().addCallback(got.append)
    assert shared.done and got == ["x"]
