"""``ops.require_markers``, with marbles on a TestScheduler."""

from __future__ import annotations

from datetime import UTC, datetime

from reactivex.testing import ReactiveTest, TestScheduler

from rxinvest import ops
from rxinvest.derived import Gap, GapCause, Subscribed
from rxinvest.errors import ConfigurationError

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe
T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
S = Subscribed(stream="MarketDataStream", targets=("SBER_TQBR",))
G = Gap(cause=GapCause.RECONNECT, since=T0, until=T0)


def test_a_source_with_markers_passes_through_unchanged() -> None:
    scheduler = TestScheduler()
    #             ---S---a---G---b---|
    source = scheduler.create_hot_observable(
        on_next(210, S), on_next(220, "a"), on_next(230, G), on_next(240, "b"), on_completed(250)
    )
    result = scheduler.start(lambda: source.pipe(ops.require_markers("bars")))
    assert result.messages == [
        on_next(210, S), on_next(220, "a"), on_next(230, G), on_next(240, "b"), on_completed(250)
    ]  # fmt: skip
    assert source.subscriptions == [subscribe(200, 250)]


def test_a_plain_source_fails_at_its_first_item_and_is_let_go() -> None:
    scheduler = TestScheduler()
    #             -------a-------b---|
    source = scheduler.create_hot_observable(on_next(220, "a"), on_next(240, "b"), on_completed(250))
    result = scheduler.start(lambda: source.pipe(ops.require_markers("bars")))
    ((time, notification),) = [(m.time, m.value) for m in result.messages]
    assert time == 220
    assert notification.kind == "E"
    assert isinstance(notification.exception, ConfigurationError)
    assert "bars must see gaps" in str(notification.exception)
    assert source.subscriptions == [subscribe(200, 220)]  # disposed at the error


def test_state_is_per_subscription() -> None:
    """Two subscriptions to one guarded plain source both fail: the first item is checked for each."""
    scheduler = TestScheduler()
    guarded = scheduler.create_cold_observable(on_next(10, "a"), on_completed(30)).pipe(
        ops.require_markers("bars")
    )
    observers = [scheduler.create_observer(), scheduler.create_observer()]
    scheduler.schedule_absolute(100, lambda *_: guarded.subscribe(observers[0]))
    scheduler.schedule_absolute(200, lambda *_: guarded.subscribe(observers[1]))
    scheduler.start()
    assert [[(m.time, m.value.kind) for m in o.messages] for o in observers] == [[(110, "E")], [(210, "E")]]
