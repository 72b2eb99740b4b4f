"""rxinvest.testing.marbles: timelines in, (virtual second, value) pairs out, on one clock where
virtual second N is EPOCH + N, with no drift however many items fall due at one instant."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import reactivex
from hypothesis import given
from hypothesis import strategies as st
from reactivex import operators as rx
from reactivex.testing import ReactiveTest

from rxinvest import ops
from rxinvest.derived import Bar, ClosedBy, Subscribed
from rxinvest.errors import ConfigurationError
from rxinvest.model import Trade, TradeDirection
from rxinvest.testing import strategies as s
from rxinvest.testing.marbles import (
    COMPLETED,
    EPOCH,
    LINGER,
    Failure,
    at,
    diagram,
    run_marbles,
    seconds_of,
    timeline,
)

MINUTE = timedelta(minutes=1)


def trade(seconds: float, price: int = 10, quantity: int = 1) -> Trade:
    return Trade(
        instrument_uid="A",
        price=Decimal(price),
        quantity=quantity,
        direction=TradeDirection.TRADE_DIRECTION_BUY,
        time=EPOCH + timedelta(seconds=seconds),
    )


@given(moment=s.utc_datetimes(min_value=EPOCH))
def test_at_and_seconds_of_are_inverse(moment: datetime) -> None:
    assert at(seconds_of(moment)) == moment
    assert seconds_of(EPOCH) == 0 and at(0) == datetime.fromtimestamp(0, UTC)


MICROSECONDS = st.integers(0, 10**12).map(lambda us: us / 10**6)  # the clock's resolution


@given(items=st.lists(st.tuples(MICROSECONDS, st.integers()), max_size=30))
def test_values_come_out_at_their_seconds_in_time_then_list_order(items: list[tuple[float, int]]) -> None:
    outcome = run_marbles(rx.map(lambda x: x * 2), items)
    expected = [(t, x * 2) for t, x in sorted(items, key=lambda item: item[0])]  # sorted() is stable
    assert list(outcome.values) == expected
    assert outcome.completed is None and outcome.error is None and outcome.kinds == "N" * len(items)


def test_times_are_kept_to_the_microsecond() -> None:
    assert run_marbles(lambda source: source, [(1.0000004, "x")]).values == ((1.0, "x"),)


def test_a_burst_of_ten_thousand_at_one_instant_does_not_move_the_clock() -> None:
    burst = [(5.0, k) for k in range(10_000)]
    clock: list[float] = []
    outcome = run_marbles(
        lambda source: reactivex.defer(
            lambda scheduler: source.pipe(rx.do_action(lambda _: clock.append(seconds_of(scheduler.now))))
        ),
        burst,
    )
    assert outcome.items == list(range(10_000))
    assert {t for t, _ in outcome.values} == {5.0} and set(clock) == {5.0}


def test_a_burst_of_trades_closes_its_bar_at_exactly_end_plus_grace() -> None:
    # 150 prints at second 10: reactivex's start() would have moved the clock on by a tick
    tape = [trade(10, price=10 + k % 3) for k in range(150)]
    outcome = run_marbles(ops.to_bars(MINUTE, grace=timedelta(seconds=7), markers=False), timeline(tape))
    ((when, bar),) = outcome.values  # the operator took the subscribe-time (virtual) scheduler
    assert isinstance(bar, Bar) and bar.closed_by is ClosedBy.TIMER and bar.trade_count == 150
    assert when == seconds_of(bar.end) + 7 == 67


def test_completion_and_failure_items_end_the_source() -> None:
    done = run_marbles(rx.map(str), [(1, 1), (2, 2), (3, COMPLETED)])
    assert done.values == ((1, "1"), (2, "2")) and done.completed == 3 and done.kinds == "NNC"
    boom = ValueError("boom")
    failed = run_marbles(rx.map(str), [(1, 1), (2, Failure(boom))])
    assert failed.error is boom and failed.error_at == 2 and failed.kinds == "NE"


def test_subscription_and_disposal_bound_what_is_seen() -> None:
    items = [(5, "before"), (10, "at the subscription"), (20, "inside"), (30, "at the disposal")]
    outcome = run_marbles(lambda source: source, items, subscribe_at=10, until=30)
    assert outcome.items == ["at the subscription", "inside"]


def test_by_default_a_run_lingers_after_the_last_item() -> None:
    ticks = run_marbles(lambda _: reactivex.interval(10.0), [(100, "x")])
    assert [t for t, _ in ticks.values][-1] == max(t for t in range(10, 100 + int(LINGER), 10))


def test_several_timelines_feed_a_function_of_several_sources() -> None:
    left, right = [(1, "a"), (3, "c")], [(2, "b"), (3, "d")]
    outcome = run_marbles(lambda a, b: a.pipe(rx.merge(b)), left, right)
    assert outcome.values == ((1, "a"), (2, "b"), (3, "c"), (3, "d"))  # one instant: earlier timeline first


def test_reactivex_recorded_messages_are_timelines_too() -> None:
    on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
    outcome = run_marbles(rx.map(lambda x: -x), [on_next(210, 1), on_completed(220)], subscribe_at=200)
    assert outcome.values == ((210, -1),) and outcome.completed == 220


def test_a_diagram_is_a_timeline() -> None:
    values: dict[str | float, Any] = {"a": trade(1), "b": trade(2)}
    assert diagram("-a-(b,a)-|", values, start=100, timespan=2) == [
        (102.0, values["a"]),
        (106.0, values["b"]),
        (106.0, values["a"]),
        (118.0, COMPLETED),  # as in reactivex: a group takes as many frames as its characters
    ]
    ((when, failure),) = diagram("--#", error=KeyError("k"))
    assert when == 2 and isinstance(failure, Failure) and isinstance(failure.error, KeyError)


def test_timeline_puts_events_at_their_own_times_late_ones_with_their_predecessor() -> None:
    marker = Subscribed(stream="MarketDataStream", targets=("A",))
    late, early, later = trade(7), trade(3), trade(9)
    assert timeline([marker, late, early, later]) == [(7, marker), (7, late), (7, early), (9, later)]
    assert timeline([early, marker], delay=0.5) == [(3.5, early), (3.5, marker)]
    assert timeline([marker]) == [(0.0, marker)]


@given(tape=s.trade_tapes(max_delay=timedelta(seconds=4)))
def test_a_tapes_timeline_keeps_its_order_and_never_runs_ahead(tape: list[Trade]) -> None:
    line = timeline(tape)
    assert [event for _, event in line] == tape
    seconds = [t for t, _ in line]
    assert seconds == sorted(seconds)
    assert all(t >= seconds_of(event.time) for t, event in line if event.time is not None)


def test_bad_times_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        run_marbles(lambda source: source, [(-1, "x")])
    with pytest.raises(ConfigurationError):
        run_marbles(lambda source: source, [(1, "x")], subscribe_at=5, until=5)


def test_marbles_and_the_package_never_import_hypothesis() -> None:
    code = "import sys, rxinvest.testing, rxinvest.testing.marbles; sys.exit('hypothesis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
