"""fold.bars against an independent OHLCV oracle, and the rules its module states, with hypothesis."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxinvest.derived import Bar, BarState, ClosedBy, LateTrade
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.bars import BarFold, bucket, merge
from rxinvest.fold.resample import ResampleFold
from rxinvest.model import SubscriptionInterval, Trade, TradeDirection

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TICK = Decimal("0.01")
MINUTE = timedelta(minutes=1)
BUY, SELL = TradeDirection.TRADE_DIRECTION_BUY, TradeDirection.TRADE_DIRECTION_SELL


def trade(uid: str, seconds: float, price: str, quantity: int, direction: TradeDirection = BUY) -> Trade:
    return Trade(
        instrument_uid=uid,
        price=Decimal(price),
        quantity=quantity,
        direction=direction,
        time=T0 + timedelta(seconds=seconds),
    )


@st.composite
def tapes(draw: st.DrawFn, max_size: int = 60) -> list[Trade]:
    """Trades of up to three instruments over ten minutes, in time order, with bursts of equal
    timestamps (times on a 250 ms grid), prices on a tick grid."""
    count = draw(st.integers(0, max_size))
    times = sorted(draw(st.lists(st.integers(0, 2400), min_size=count, max_size=count)))
    out = []
    for quarter in times:
        out.append(
            Trade(
                instrument_uid=draw(st.sampled_from(["A", "B", "C"])),
                price=draw(st.integers(9_000, 11_000)) * TICK,
                quantity=draw(st.integers(1, 50)),
                direction=draw(st.sampled_from([BUY, SELL, TradeDirection.TRADE_DIRECTION_UNSPECIFIED])),
                time=T0 + timedelta(milliseconds=250 * quarter),
            )
        )
    return out


def oracle(trades: list[Trade], interval: timedelta) -> dict[tuple[str, datetime], tuple[object, ...]]:
    """OHLCV per (instrument, bucket start), written from scratch: buckets from epoch arithmetic on
    seconds, open/close by time then arrival."""
    groups: dict[tuple[str, datetime], list[tuple[int, Trade]]] = defaultdict(list)
    for position, t in enumerate(trades):
        assert t.time is not None
        seconds = (
            int(t.time.timestamp() * 1000)
            // int(interval.total_seconds() * 1000)
            * int(interval.total_seconds())
        )
        groups[(t.instrument_uid, datetime.fromtimestamp(seconds, UTC))].append((position, t))
    out = {}
    for key, members in groups.items():
        first = min(members, key=lambda pt: (pt[1].time, pt[0]))[1]
        last = max(members, key=lambda pt: (pt[1].time, pt[0]))[1]
        prices = [t.price for _, t in members]
        out[key] = (
            first.price,
            max(prices),  # type: ignore[type-var]
            min(prices),  # type: ignore[type-var]
            last.price,
            sum(t.quantity for _, t in members),
            sum(t.quantity for _, t in members if t.direction is BUY),
            sum(t.quantity for _, t in members if t.direction is SELL),
            len(members),
        )
    return out


def final_bars(events: list[Bar | LateTrade]) -> dict[tuple[str, datetime], Bar]:
    """The last word on each bar: its closed or corrected version."""
    out = {}
    for event in events:
        if isinstance(event, Bar) and event.state is not BarState.FORMING:
            out[(event.instrument_uid, event.start)] = event
    return out


def run(fold: BarFold, trades: list[Trade], arrivals: list[datetime] | None = None) -> list[Bar | LateTrade]:
    events: list[Bar | LateTrade] = []
    for i, t in enumerate(trades):
        assert t.time is not None
        events += fold.trade(t, arrivals[i] if arrivals else t.time)
    return events + fold.complete()


def summary(bar: Bar) -> tuple[object, ...]:
    return (
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.volume_buy,
        bar.volume_sell,
        bar.trade_count,
    )


@settings(max_examples=300)
@given(tape=tapes(), length=st.sampled_from([MINUTE, timedelta(seconds=30), timedelta(minutes=5)]))
def test_bars_of_an_in_order_tape_equal_the_oracle(tape: list[Trade], length: timedelta) -> None:
    events = run(BarFold(length, grace=timedelta(0)), tape)
    bars = final_bars(events)
    assert not [e for e in events if isinstance(e, LateTrade)]  # nothing is late in time order
    assert {key: summary(bar) for key, bar in bars.items()} == oracle(tape, length)
    for bar in bars.values():
        assert bar.end - bar.start == length
        assert bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high


@settings(max_examples=300)
@given(tape=tapes(), data=st.data())
def test_late_arrivals_lose_nothing_and_never_break_ohlc(tape: list[Trade], data: st.DataObject) -> None:
    """Trades arrive out of order (each up to 3 minutes late). Whatever the grace, every emitted bar
    has low <= open, close <= high, and the volume of the final bars plus that of the LateTrades is
    the tape's, per side too."""
    grace = data.draw(st.sampled_from([timedelta(0), timedelta(seconds=5), timedelta(minutes=2)]))
    delays = data.draw(st.lists(st.integers(0, 180), min_size=len(tape), max_size=len(tape)))
    arrivals = [t.time + timedelta(seconds=d) for t, d in zip(tape, delays, strict=True)]  # type: ignore[operator]
    order = sorted(range(len(tape)), key=lambda i: (arrivals[i], i))
    events = run(BarFold(MINUTE, grace=grace), [tape[i] for i in order], [arrivals[i] for i in order])
    for event in events:
        if isinstance(event, Bar):
            assert event.low <= min(event.open, event.close) and max(event.open, event.close) <= event.high
    bars, late = final_bars(events).values(), [e.trade for e in events if isinstance(e, LateTrade)]
    for side in (None, BUY, SELL):

        def volume(trades: list[Trade], side: TradeDirection | None = side) -> int:
            return sum(t.quantity for t in trades if side is None or t.direction is side)

        made = sum(b.volume if side is None else b.volume_buy if side is BUY else b.volume_sell for b in bars)
        assert made + volume(late) == volume(tape)


@settings(max_examples=200)
@given(tape=tapes(max_size=30), data=st.data())
def test_high_low_volume_and_count_do_not_depend_on_arrival_order(
    tape: list[Trade], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(tape))
    # Everything arrives at once after the tape, with a grace long enough for nothing to be late.
    arrival = T0 + timedelta(hours=1)
    fold = BarFold(MINUTE, grace=timedelta(days=1))
    bars = final_bars(run(fold, shuffled, [arrival] * len(shuffled)))
    expected = oracle(tape, MINUTE)
    assert set(bars) == set(expected)
    for key, bar in bars.items():
        _, high, low, _, volume, buy, sell, count = expected[key]
        assert (bar.high, bar.low, bar.volume, bar.volume_buy, bar.volume_sell, bar.trade_count) == (
            high, low, volume, buy, sell, count
        )  # fmt: skip


@given(tape=tapes())
def test_five_one_minute_bars_merge_into_the_five_minute_bar(tape: list[Trade]) -> None:
    minutes = final_bars(run(BarFold(MINUTE, grace=timedelta(0)), tape))
    fives = final_bars(run(BarFold(timedelta(minutes=5), grace=timedelta(0)), tape))
    for (uid, start), five in fives.items():
        parts = sorted(
            (b for (u, s), b in minutes.items() if u == uid and start <= s < five.end), key=lambda b: b.start
        )
        # bars are skipped where nothing traded: merge the ones that exist, adjacency by filling gaps
        merged = parts[0]
        for part in parts[1:]:
            merged = merge(attrs_evolve_end(merged, part.start), part)
        assert summary(merged) == summary(five)


def attrs_evolve_end(bar: Bar, end: datetime) -> Bar:
    """``bar`` stretched over an empty stretch up to ``end`` (no trades there: nothing changes)."""
    import attrs

    return attrs.evolve(bar, end=end)


@given(
    time=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)),
    length=st.integers(1, 10_000).map(lambda s: timedelta(seconds=s)),
    origin=st.integers(0, 3600).map(lambda s: timedelta(seconds=s)),
)
def test_a_bucket_holds_its_time_and_is_aligned(time: datetime, length: timedelta, origin: timedelta) -> None:
    start, end = bucket(time, length, origin)
    assert start <= time < end
    assert end - start == length
    assert (start - datetime(1970, 1, 1, tzinfo=UTC) - origin) % length == timedelta(0)


def test_calendar_intervals_follow_the_calendar() -> None:
    wednesday = datetime(2025, 11, 19, 15, 30, tzinfo=UTC)
    assert bucket(wednesday, SubscriptionInterval.SUBSCRIPTION_INTERVAL_WEEK) == (
        datetime(2025, 11, 17, tzinfo=UTC), datetime(2025, 11, 24, tzinfo=UTC)
    )  # fmt: skip
    assert bucket(wednesday, SubscriptionInterval.SUBSCRIPTION_INTERVAL_MONTH) == (
        datetime(2025, 11, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)
    )  # fmt: skip


def test_a_trade_at_the_end_opens_the_next_bar() -> None:
    fold = BarFold(MINUTE, grace=timedelta(0))
    fold.trade(trade("A", 10, "100", 1), T0 + timedelta(seconds=10))
    (closed,) = fold.trade(trade("A", 60, "101", 2), T0 + MINUTE)
    assert (closed.start, closed.end, closed.volume, closed.closed_by) == (
        T0,
        T0 + MINUTE,
        1,
        ClosedBy.NEXT_TRADE,
    )


def test_an_idle_instrument_closes_by_the_exchange_clock() -> None:
    """A trades at 10:00:10; B keeps trading. A's bar closes when the exchange clock, as B's trades
    and the local time show it, passes 10:01 + grace; with a simulator twice as fast as real time
    the local clock alone would close it far too late."""
    fold = BarFold(MINUTE, grace=timedelta(seconds=2))
    local = T0 + timedelta(hours=5)  # the local clock differs from the exchange's
    fold.trade(trade("A", 10, "100", 1), local)
    assert fold.advance(local + timedelta(seconds=30)) == []  # the exchange clock says 10:00:40
    # B trades at 10:01:40 by the exchange, 45 s later by the local clock: the exchange runs faster.
    (closed,) = fold.trade(trade("B", 100, "50", 1), local + timedelta(seconds=45))
    assert (closed.instrument_uid, closed.closed_by, closed.state) == ("A", ClosedBy.TIMER, BarState.CLOSED)
    # B's own bar [10:01, 10:02) closes at 10:02:02 by the exchange clock: 22 s after its trade.
    assert fold.deadline(local + timedelta(seconds=45)) == local + timedelta(seconds=45 + 20 + 2)
    assert fold.advance(local + timedelta(seconds=66)) == []
    (b,) = fold.advance(local + timedelta(seconds=67))
    assert (b.instrument_uid, b.closed_by) == ("B", ClosedBy.TIMER)


def test_a_late_trade_within_grace_corrects_and_after_it_is_reported() -> None:
    fold = BarFold(MINUTE, grace=timedelta(seconds=5))
    fold.trade(trade("A", 10, "100", 1), T0 + timedelta(seconds=10))
    fold.trade(trade("A", 61, "101", 1), T0 + timedelta(seconds=61))  # closes the first bar
    (corrected,) = fold.trade(trade("A", 59, "99", 3), T0 + timedelta(seconds=63))
    assert (corrected.state, corrected.volume, corrected.low, corrected.close) == (
        BarState.CORRECTED, 4, Decimal("99"), Decimal("99")
    )  # fmt: skip
    (late,) = fold.trade(trade("A", 58, "98", 7), T0 + timedelta(seconds=70))  # past 10:01 + 5 s
    assert isinstance(late, LateTrade)
    assert (late.bar_start, late.lateness) == (T0, timedelta(seconds=5))
    assert fold.late == 1


def test_a_gap_closes_the_bar_incomplete_and_marks_the_next_one() -> None:
    fold = BarFold(MINUTE, grace=timedelta(0))
    fold.trade(trade("A", 10, "100", 1), T0 + timedelta(seconds=10))
    (closed,) = fold.gap(["A"], until=T0 + timedelta(seconds=90))
    assert (closed.closed_by, closed.incomplete) == (ClosedBy.GAP, True)
    fold.trade(trade("A", 100, "101", 1), T0 + timedelta(seconds=100))
    (after,) = fold.complete()
    assert after.incomplete  # it starts at 10:01, before the gap ended at 10:01:30
    fold.trade(trade("A", 200, "102", 1), T0 + timedelta(seconds=200))
    (clean,) = fold.complete()
    assert not clean.incomplete


def test_updates_are_forming_revisions() -> None:
    fold = BarFold(MINUTE, grace=timedelta(0), updates=True)
    first = fold.trade(trade("A", 1, "100", 1), T0 + timedelta(seconds=1))
    second = fold.trade(trade("A", 2, "102", 1), T0 + timedelta(seconds=2))
    assert [b.state for b in (*first, *second)] == [BarState.FORMING, BarState.FORMING]
    assert second[0].close == Decimal("102")


def test_bad_arguments_and_bad_trades_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        BarFold(timedelta(0))
    with pytest.raises(ConfigurationError):
        BarFold(SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED)
    with pytest.raises(ConfigurationError):
        BarFold(MINUTE, grace=timedelta(seconds=-1))
    with pytest.raises(DataIntegrityError):
        BarFold(MINUTE).trade(Trade(instrument_uid="A", quantity=1), T0)


@settings(max_examples=300)
@given(tape=tapes())
def test_resampling_one_minute_bars_gives_the_five_minute_bars(tape: list[Trade]) -> None:
    """resample(5m) of to_bars(1m) equals to_bars(5m) of the same tape (the issue's property)."""
    resample = ResampleFold(timedelta(minutes=5))
    resampled: list[Bar] = []
    for event in run(BarFold(MINUTE, grace=timedelta(0)), tape):
        if isinstance(event, Bar):
            resampled += resample.bar(event)
    resampled += resample.complete()
    direct = final_bars(run(BarFold(timedelta(minutes=5), grace=timedelta(0)), tape))
    assert {(b.instrument_uid, b.start): summary(b) for b in resampled} == {
        k: summary(b) for k, b in direct.items()
    }
    assert all(b.state is BarState.CLOSED for b in resampled)  # one emission each, in time order


@given(tape=tapes(max_size=30), data=st.data())
def test_repeated_updates_replace_and_corrections_reemit(tape: list[Trade], data: st.DataObject) -> None:
    """Every forming revision of the 1-minute bars fed in (as candles would repeat): the 5-minute bars
    still equal the direct ones; feeding any update twice changes nothing."""
    updates = [e for e in run(BarFold(MINUTE, grace=timedelta(0), updates=True), tape) if isinstance(e, Bar)]
    doubled = [u for update in updates for u in (update, update)] if data.draw(st.booleans()) else updates
    resample = ResampleFold(timedelta(minutes=5))
    out = [b for update in doubled for b in resample.bar(update)] + resample.complete()
    last = {(b.instrument_uid, b.start): summary(b) for b in out}
    direct = final_bars(run(BarFold(timedelta(minutes=5), grace=timedelta(0)), tape))
    assert last == {k: summary(b) for k, b in direct.items()}


def test_resampling_to_a_non_multiple_is_refused() -> None:
    bar = final_bars(
        run(BarFold(timedelta(minutes=2), grace=timedelta(0)), [trade("A", 130, "1", 1)])
    )  # 10:02-10:04
    with pytest.raises(DataIntegrityError, match="multiple"):
        ResampleFold(timedelta(minutes=3)).bar(next(iter(bar.values())))


def test_a_status_that_stops_trading_closes_the_bar_at_once() -> None:
    from rxinvest.model import SecurityTradingStatus, TradingStatus

    fold = BarFold(MINUTE, grace=timedelta(minutes=5))
    fold.trade(trade("A", 10, "100", 1), T0 + timedelta(seconds=10))
    fold.trade(trade("B", 11, "50", 1), T0 + timedelta(seconds=11))
    trading = TradingStatus(
        instrument_uid="A", trading_status=SecurityTradingStatus.SECURITY_TRADING_STATUS_NORMAL_TRADING
    )
    assert fold.status(trading) == []
    pause = TradingStatus(
        instrument_uid="A", trading_status=SecurityTradingStatus.SECURITY_TRADING_STATUS_BREAK_IN_TRADING
    )
    (closed,) = fold.status(pause)
    assert (closed.instrument_uid, closed.closed_by, closed.volume) == ("A", ClosedBy.SESSION, 1)
    assert fold.open_instruments() == ["B"]  # B trades on
