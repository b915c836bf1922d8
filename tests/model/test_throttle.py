"""Failed-login throttle rules (issue 19 item 4): pure, the clock passed in."""

from __future__ import annotations

from devpi_twisted.model.throttle import LoginThrottle, ThrottleRule

USER = ThrottleRule(free=2, first=1.0, longest=8.0, forget=100.0)
CLIENT = ThrottleRule(free=4, first=1.0, longest=8.0, forget=100.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(max_keys: int = 100) -> tuple[LoginThrottle, Clock]:
    clock = Clock()
    return LoginThrottle(clock, USER, CLIENT, max_keys), clock


def test_free_failures_cost_no_wait() -> None:
    throttle, _ = _throttle()
    for _ in range(2):
        assert throttle.wait("alice", "a") == 0
        throttle.failed("alice", "a")
    assert throttle.wait("alice", "a") == 0


def test_each_further_failure_doubles_the_wait_up_to_the_longest() -> None:
    throttle, clock = _throttle()
    waits = []
    for n in range(8):
        throttle.failed("alice", f"client{n}")
        waits.append(throttle.wait("alice", "elsewhere"))
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 8, 8]


def test_the_wait_runs_out_with_time() -> None:
    throttle, clock = _throttle()
    for _ in range(4):
        throttle.failed("alice", "a")
    assert throttle.wait("alice", "b") == 2
    clock.now += 1.5
    assert throttle.wait("alice", "b") == 0.5
    clock.now += 0.5
    assert throttle.wait("alice", "b") == 0


def test_a_client_is_throttled_for_every_user_it_fails_for() -> None:
    throttle, _ = _throttle()
    for n in range(5):
        throttle.failed(f"user{n}", "mallory")
    assert throttle.wait("alice", "mallory") == 1
    assert throttle.wait("alice", "someone") == 0


def test_a_success_clears_the_users_count_but_not_the_clients() -> None:
    throttle, _ = _throttle()
    for _ in range(5):
        throttle.failed("alice", "a")
    throttle.succeeded("alice")
    assert throttle.wait("alice", "b") == 0
    assert throttle.wait("bob", "a") > 0


def test_a_quiet_key_starts_over() -> None:
    throttle, clock = _throttle()
    for _ in range(3):
        throttle.failed("alice", "a")
    clock.now += 101
    throttle.failed("alice", "a")
    assert throttle.wait("alice", "b") == 0


def test_the_tables_hold_a_bounded_number_of_keys() -> None:
    throttle, _ = _throttle(max_keys=10)
    for _ in range(3):
        throttle.failed("alice", "a")
    for n in range(10):
        throttle.failed(f"random{n}", f"client{n}")
    assert throttle.wait("alice", "b") == 0  # the oldest went first
    assert len(throttle._users._entries) == 10 and len(throttle._clients._entries) == 10


def test_after_a_failure_checks_under_way_count_against_what_is_left() -> None:
    throttle, _ = _throttle()
    throttle.failed("alice", "a")
    throttle.started("alice", "a")
    assert throttle.wait("alice", "b") == 1  # 1 failure + 1 under way: USER allows 2
    throttle.settled("alice", "a")
    assert throttle.wait("alice", "b") == 0


def test_once_locked_out_one_check_at_a_time_when_the_wait_ends() -> None:
    throttle, clock = _throttle()
    for _ in range(3):
        throttle.failed("alice", "a")
    clock.now += throttle.wait("alice", "b")
    assert throttle.wait("alice", "b") == 0
    throttle.started("alice", "b")
    assert throttle.wait("alice", "c") == 1
    throttle.settled("alice", "b")


def test_a_key_without_failures_may_have_free_checks_under_way() -> None:
    throttle, _ = _throttle()
    throttle.started("alice", "client1")
    assert throttle.wait("alice", "another") == 0
    throttle.started("alice", "client2")
    assert throttle.wait("alice", "another") == 1
    throttle.settled("alice", "client1")
    assert throttle.wait("alice", "another") == 0
