"""``ops.to_bars`` with marbles on a TestScheduler: virtual second N is exchange time epoch + N."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from reactivex.testing import ReactiveTest, TestScheduler

from rxinvest import ops
from rxinvest.derived import Bar, BarState, ClosedBy, Gap, GapCause, LateTrade, Subscribed
from rxinvest.errors import ConfigurationError
from rxinvest.model import (
    Candle,
    SecurityTradingStatus,
    SubscriptionInterval,
    Trade,
    TradeDirection,
    TradingStatus,
)
from rxinvest.testing.marbles import run_marbles

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
S = Subscribed(stream="MarketDataStream", targets=("A",))


def trade(at: int, price: int, quantity: int = 1, uid: str = "A") -> Trade:
    return Trade(
        instrument_uid=uid,
        price=Decimal(price),
        quantity=quantity,
        direction=TradeDirection.TRADE_DIRECTION_BUY,
        time=EPOCH + timedelta(seconds=at),
    )


def bars(messages: list[object]) -> list[tuple[float, Bar | LateTrade]]:
    return [(m.time, m.value.value) for m in messages if m.value.kind == "N"]  # type: ignore[attr-defined]


def run(*events: Any, **options: Any) -> tuple[list[tuple[float, Any]], list[str]]:
    # The operator gets no scheduler: it takes the subscribe-time one, run_marbles' TestScheduler.
    options.setdefault("markers", False)
    outcome = run_marbles(ops.to_bars(MINUTE, **options), events, subscribe_at=200, until=1000)
    return list(outcome.values), list(outcome.kinds)


def test_a_bar_closes_at_the_first_trade_of_the_next_bucket() -> None:
    #  trades:  ---230---235---250---|300    (grace 30 s: the timer would fire only at 270)
    emitted, kinds = run(
        on_next(230, trade(230, 10)), on_next(235, trade(235, 12)), on_next(250, trade(250, 11)),
        on_completed(300), grace=timedelta(seconds=30),
    )  # fmt: skip
    (at, first), (end, second) = emitted
    assert at == 250 and (first.start, first.end) == (
        EPOCH + timedelta(seconds=180),
        EPOCH + timedelta(seconds=240),
    )
    assert (first.open, first.high, first.close, first.volume, first.closed_by) == (
        10,
        12,
        12,
        2,
        ClosedBy.NEXT_TRADE,
    )
    assert end == 300 and second.closed_by is ClosedBy.COMPLETION and kinds[-1] == "C"


def test_an_idle_bar_closes_at_exactly_end_plus_grace() -> None:
    emitted, _ = run(on_next(230, trade(230, 10)), grace=timedelta(seconds=7))
    ((at, bar),) = emitted
    assert at == 247  # 240 + 7, by the scheduler's clock: no later trade was needed
    assert bar.closed_by is ClosedBy.TIMER and bar.state is BarState.CLOSED


def test_a_trade_exactly_at_the_end_belongs_to_the_next_bar() -> None:
    emitted, _ = run(on_next(230, trade(230, 10)), on_next(240, trade(240, 99)), on_completed(250))
    (at, first), (_, second) = emitted
    assert at == 240 and first.close == 10 and first.volume == 1
    assert second.start == EPOCH + timedelta(seconds=240) and second.open == 99


def test_completion_flushes_the_open_bar() -> None:
    emitted, kinds = run(on_next(230, trade(230, 10)), on_completed(235))
    ((at, bar),) = emitted
    assert at == 235 and bar.closed_by is ClosedBy.COMPLETION
    assert kinds == ["N", "C"]


def test_a_gap_closes_the_bar_as_incomplete() -> None:
    since, until = EPOCH + timedelta(seconds=231), EPOCH + timedelta(seconds=262)
    gap = Gap(cause=GapCause.RECONNECT, since=since, until=until, target="A_TQBR", instrument_uid="A")
    emitted, _ = run(
        on_next(205, S), on_next(230, trade(230, 10)), on_next(245, gap), on_next(265, trade(265, 11)),
        on_completed(270), markers=True, grace=timedelta(seconds=30),
    )  # fmt: skip
    (at, cut), (_, after) = emitted
    assert at == 245 and (cut.closed_by, cut.incomplete) == (ClosedBy.GAP, True)
    assert after.incomplete  # it starts at 240, inside the gap: trades may be missing from it


def test_updates_emit_every_revision_of_the_forming_bar() -> None:
    emitted, _ = run(
        on_next(230, trade(230, 10)), on_next(231, trade(231, 11)), on_completed(232), emit="updates"
    )
    assert [(at, bar.state) for at, bar in emitted] == [
        (230, BarState.FORMING), (231, BarState.FORMING), (232, BarState.CLOSED)
    ]  # fmt: skip


def test_late_trades_correct_within_grace_and_are_reported_after() -> None:
    emitted, _ = run(
        on_next(230, trade(230, 10)), on_next(241, trade(241, 11)), on_next(243, trade(238, 9, 2)),
        on_next(250, trade(237, 8, 3)), on_completed(260), grace=timedelta(seconds=5),
    )  # fmt: skip
    kinds = [(at, type(e).__name__, getattr(e, "state", None)) for at, e in emitted]
    assert kinds[:3] == [
        (241, "Bar", BarState.CLOSED),
        (243, "Bar", BarState.CORRECTED),
        (250, "LateTrade", None),
    ]
    corrected = emitted[1][1]
    assert isinstance(corrected, Bar) and (corrected.low, corrected.volume) == (9, 3)


def test_state_is_per_subscription() -> None:
    scheduler = TestScheduler()
    cold = scheduler.create_cold_observable(on_next(30, trade(30, 10)), on_completed(40))
    piped = cold.pipe(ops.to_bars(MINUTE, markers=False, scheduler=scheduler))
    observers = [scheduler.create_observer(), scheduler.create_observer()]
    scheduler.schedule_absolute(100, lambda *_: piped.subscribe(observers[0]))
    scheduler.schedule_absolute(500, lambda *_: piped.subscribe(observers[1]))
    scheduler.start()
    first, second = (bars(o.messages) for o in observers)
    assert [at for at, _ in first] == [140] and [at for at, _ in second] == [540]
    assert first[0][1] == second[0][1]  # each subscription folds the same tape on its own


def test_without_markers_it_refuses_by_default() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(230, trade(230, 10)))
    result = scheduler.start(lambda: source.pipe(ops.to_bars(MINUTE, scheduler=scheduler)))
    ((message),) = result.messages
    assert message.value.kind == "E" and isinstance(message.value.exception, ConfigurationError)


def test_bad_arguments_are_refused_at_the_call() -> None:
    with pytest.raises(ConfigurationError):
        ops.to_bars(timedelta(0))
    with pytest.raises(ConfigurationError):
        ops.to_bars(MINUTE, emit="sometimes")
    with pytest.raises(ConfigurationError):
        ops.to_bars(MINUTE, grace=timedelta(seconds=-1))


def candle(minute: int, close: int, volume: int, *, at: int) -> Candle:
    """A 1-minute candle of A starting at ``minute`` (virtual minutes), its last trade at ``at`` s."""
    return Candle(
        instrument_uid="A",
        interval=SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
        time=EPOCH + timedelta(minutes=minute),
        open=Decimal(10),
        high=Decimal(max(10, close)),
        low=Decimal(min(10, close)),
        close=Decimal(close),
        volume=volume,
        last_trade_ts=EPOCH + timedelta(seconds=at),
    )


def test_closed_candles_emit_each_minute_once_with_its_last_values() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(205, candle(3, 11, 1, at=205)), on_next(215, candle(3, 12, 2, at=215)),
        on_next(215, candle(3, 12, 2, at=215)),  # a repeat: nothing
        on_next(245, candle(4, 9, 1, at=245)),  # the next minute: minute 3 closes
        on_next(250, candle(3, 13, 3, at=239)),  # a correction of minute 3
    )  # fmt: skip
    result = scheduler.start(
        lambda: source.pipe(ops.closed_candles(grace=timedelta(seconds=5), scheduler=scheduler))
    )
    emitted = [
        (at, bar.start.minute, bar.state, bar.close, bar.closed_by) for at, bar in bars(result.messages)
    ]
    assert emitted == [
        (245, 3, BarState.CLOSED, 12, ClosedBy.SERVER),
        (250, 3, BarState.CORRECTED, 13, ClosedBy.SERVER),
        (305, 4, BarState.CLOSED, 9, ClosedBy.TIMER),  # idle: 5:00 + 5 s by the candles' clock
    ]


def test_tick_and_volume_bars() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        on_next(210, trade(210, 10, 3)), on_next(220, trade(220, 11, 4)), on_next(230, trade(230, 12, 5)),
        on_completed(240),
    )  # fmt: skip
    volumes = scheduler.start(lambda: source.pipe(ops.volume_bars(5)))
    assert [(at, b.volume) for at, b in bars(volumes.messages)] == [(220, 5), (230, 5), (240, 2)]
    ticks = TestScheduler()
    tape = ticks.create_hot_observable(
        on_next(210, trade(210, 10)),
        on_next(220, trade(220, 11)),
        on_next(230, trade(230, 12)),
        on_completed(240),
    )
    counted = ticks.start(lambda: tape.pipe(ops.tick_bars(2)))
    assert [(at, b.trade_count, b.close) for at, b in bars(counted.messages)] == [(220, 2, 11), (240, 1, 12)]
    with pytest.raises(ConfigurationError):
        ops.volume_bars(0)


def test_resample_takes_candles_as_replacing_revisions() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(
        *(
            on_next(200 + minute * 10 + k, candle(minute, 10 + k, 1 + k, at=60 * minute))
            for minute in range(5)
            for k in range(3)
        ),
        on_next(260, candle(5, 20, 4, at=300)),
        on_completed(270),
    )  # fmt: skip
    result = scheduler.start(lambda: source.pipe(ops.resample(timedelta(minutes=5))))
    (first_at, first), (_, second) = bars(result.messages)
    assert first_at == 260 and first.volume == 5 * 3  # the last revision of each minute: 3 lots
    assert (first.start, first.end, first.close) == (EPOCH, EPOCH + timedelta(minutes=5), 12)
    assert second.start == EPOCH + timedelta(minutes=5) and second.volume == 4


def test_a_break_in_trading_merged_in_closes_the_bar_at_once() -> None:
    brk = TradingStatus(
        instrument_uid="A", trading_status=SecurityTradingStatus.SECURITY_TRADING_STATUS_BREAK_IN_TRADING
    )
    emitted, _ = run(on_next(230, trade(230, 10)), on_next(233, brk), grace=timedelta(minutes=5))
    ((at, bar),) = emitted
    assert at == 233 and bar.closed_by is ClosedBy.SESSION
