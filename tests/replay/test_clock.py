"""The replay's virtual clock: every action due runs, in time and then scheduling order, however
many share an instant; the clock never goes back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from reactivex.scheduler import VirtualTimeScheduler

from rxinvest.errors import ConfigurationError
from rxinvest.replay import ReplayScheduler

T0 = datetime(2026, 11, 30, 10, tzinfo=UTC)
MS = timedelta(milliseconds=1)

# An action: (due in ms from T0, or None for "submit now"); advances: ms from T0 to advance to.
actions = st.lists(st.one_of(st.none(), st.integers(0, 50)), max_size=60)
steps = st.lists(st.integers(0, 60), min_size=1, max_size=10)


@given(actions, steps)
def test_every_due_action_runs_in_time_then_scheduling_order(
    plan: list[int | None], advances: list[int]
) -> None:
    scheduler = ReplayScheduler(T0)
    ran: list[tuple[int, datetime]] = []
    for index, due in enumerate(plan):
        if due is None:
            scheduler.submit(lambda index=index: ran.append((index, scheduler.now)))
        else:
            scheduler.schedule_absolute(
                T0 + due * MS, lambda *_, index=index: ran.append((index, scheduler.now))
            )
    clock = T0
    expected: list[tuple[int, datetime]] = []
    waiting = [(0 if due is None else due, index) for index, due in enumerate(plan)]
    for step in advances:
        target = max(clock, T0 + step * MS)  # the oracle: a plain sort of what is due by then
        due_now = sorted(w for w in waiting if T0 + w[0] * MS <= target)
        waiting = [w for w in waiting if w not in due_now]
        for ms, index in due_now:
            clock = max(clock, T0 + ms * MS)
            expected.append((index, clock))
        clock = target
        scheduler.advance_to(T0 + step * MS)
        assert scheduler.now == clock
    assert ran == expected
    assert scheduler.pending == len(waiting)


def test_ten_thousand_actions_at_one_instant_all_run_at_that_instant() -> None:
    scheduler = ReplayScheduler(T0)
    seen: list[datetime] = []
    for _ in range(10_000):
        scheduler.schedule_absolute(T0 + MS, lambda *_: seen.append(scheduler.now))
    scheduler.advance_to(T0 + MS)
    assert len(seen) == 10_000 and set(seen) == {T0 + MS}
    # RxPY's own scheduler, driven the same way, leaves work scheduled for the current instant
    # waiting (advance_to an instant equal to now returns at once): why the replay has its own.
    stock = VirtualTimeScheduler(T0)
    stock.advance_to(T0 + MS)
    ran: list[int] = []
    stock.schedule(lambda *_: ran.append(1))
    stock.advance_to(T0 + MS)
    assert ran == []


def test_actions_scheduled_while_advancing_run_in_the_same_advance_when_due() -> None:
    scheduler = ReplayScheduler(T0)
    order: list[str] = []

    def first(*_: object) -> None:
        order.append("first")
        scheduler.submit(lambda: order.append("now"))
        scheduler.schedule_relative(5 * MS, lambda *_: order.append("later"))
        scheduler.schedule_relative(50 * MS, lambda *_: order.append("too late"))

    scheduler.schedule_absolute(T0 + MS, first)
    scheduler.advance_to(T0 + 10 * MS)
    assert order == ["first", "now", "later"]
    assert scheduler.now == T0 + 10 * MS and scheduler.next_due() == T0 + 51 * MS


def test_the_clock_never_goes_back_and_cancelled_actions_do_not_run() -> None:
    scheduler = ReplayScheduler(T0)
    ran: list[int] = []
    scheduler.schedule_absolute(T0 + 2 * MS, lambda *_: ran.append(1)).dispose()
    scheduler.advance_to(T0 + 5 * MS)
    scheduler.advance_to(T0 + 3 * MS)  # a frame stamped a little earlier by another thread
    assert scheduler.now == T0 + 5 * MS and ran == []


def test_start_and_naive_times_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="advance_to"):
        ReplayScheduler(T0).start()
    with pytest.raises(ConfigurationError, match="aware"):
        ReplayScheduler(datetime(2026, 1, 1))

    scheduler = ReplayScheduler(T0)

    def nested(*_: object) -> None:
        scheduler.advance_to(T0 + 2 * MS)

    scheduler.schedule_absolute(T0 + MS, nested)
    with pytest.raises(ConfigurationError, match="from an action"):
        scheduler.advance_to(T0 + 3 * MS)


def test_an_action_that_raises_leaves_the_rest_due() -> None:
    scheduler = ReplayScheduler(T0)
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("an action failed")

    scheduler.submit(lambda: ran.append(1))
    scheduler.submit(boom)
    scheduler.submit(lambda: ran.append(3))
    with pytest.raises(RuntimeError):
        scheduler.advance_to(T0 + MS)
    assert ran == [1] and scheduler.pending == 1
    scheduler.advance_to(T0 + MS)
    assert ran == [1, 3]


def test_an_advance_to_an_earlier_time_still_runs_what_is_due_now() -> None:
    scheduler = ReplayScheduler(T0)
    scheduler.advance_to(T0 + 5 * MS)
    ran: list[str] = []
    scheduler.schedule(lambda *_: ran.append("scheduled now"))
    scheduler.submit(lambda: ran.append("submitted"))
    scheduler.advance_to(T0 + 3 * MS)  # a frame stamped earlier by another reader thread
    assert ran == ["scheduled now", "submitted"] and scheduler.now == T0 + 5 * MS


def test_actions_submitted_from_other_threads_while_it_advances_all_run() -> None:
    import sys
    import threading

    scheduler = ReplayScheduler(T0)
    counts = [0]
    per_thread, threads = 20_000, 4

    def bump() -> None:
        counts[0] += 1

    def producer() -> None:
        for _ in range(per_thread):
            scheduler.submit(bump)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race, if any, shows
    try:
        workers = [threading.Thread(target=producer) for _ in range(threads)]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            scheduler.advance_to(scheduler.now)
        for worker in workers:
            worker.join(10)
    finally:
        sys.setswitchinterval(interval)
    scheduler.advance_to(scheduler.now)
    assert counts[0] == per_thread * threads and scheduler.pending == 0
