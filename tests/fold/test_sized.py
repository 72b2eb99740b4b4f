"""fold.sized against independent oracles written here, with hypothesis: the volume oracle cuts the
tape into single lots and groups them, the tick oracle groups trades, the overshoot oracle sums."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxinvest.derived import Bar, BarState, ClosedBy
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.sized import TickBarFold, VolumeBarFold
from rxinvest.model import Trade, TradeDirection

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TICK = Decimal("0.01")
BUY, SELL = TradeDirection.TRADE_DIRECTION_BUY, TradeDirection.TRADE_DIRECTION_SELL
SIDES = [BUY, SELL, TradeDirection.TRADE_DIRECTION_UNSPECIFIED]


@st.composite
def tapes(draw: st.DrawFn, max_size: int = 50, min_quantity: int = 1) -> list[Trade]:
    """Trades of up to three instruments in time order, with bursts of equal timestamps."""
    count = draw(st.integers(0, max_size))
    times = sorted(draw(st.lists(st.integers(0, 600), min_size=count, max_size=count)))
    return [
        Trade(
            instrument_uid=draw(st.sampled_from(["A", "B", "C"])),
            price=draw(st.integers(9_000, 11_000)) * TICK,
            quantity=draw(st.integers(min_quantity, 40)),
            direction=draw(st.sampled_from(SIDES)),
            time=T0 + timedelta(seconds=second),
        )
        for second in times
    ]


def run(fold: TickBarFold | VolumeBarFold, trades: list[Trade]) -> list[Bar]:
    out: list[Bar] = []
    for t in trades:
        out += fold.trade(t)
    return out + fold.complete()


def summary(bar: Bar) -> tuple[object, ...]:
    return (
        bar.instrument_uid, bar.start, bar.end, bar.open, bar.high, bar.low, bar.close, bar.volume,
        bar.volume_buy, bar.volume_sell, bar.trade_count, bar.closed_by,
    )  # fmt: skip


Item = tuple[int, Trade, int]  # (the trade's number in the tape, the trade, lots of it in the item)


def group_oracle(items: list[Item], size: int) -> list[tuple[object, ...]]:
    """Bars of consecutive groups of ``size`` items of one instrument in tape order; the last group,
    if shorter, is the flushed bar. A trade counts once in each group that holds a part of it."""
    out: list[tuple[object, ...]] = []
    for first in range(0, len(items), size):
        group = items[first : first + size]
        prices = [t.price for _, t, _ in group]
        one, last = group[0][1], group[-1][1]
        out.append((
            one.instrument_uid, one.time, last.time, one.price, max(prices), min(prices), last.price,  # type: ignore[type-var]
            sum(lots for _, _, lots in group),
            sum(lots for _, t, lots in group if t.direction is BUY),
            sum(lots for _, t, lots in group if t.direction is SELL),
            len({number for number, _, _ in group}),
            ClosedBy.THRESHOLD if len(group) == size else ClosedBy.COMPLETION,
        ))  # fmt: skip
    return out


def volume_oracle(tape: list[Trade], lots: int) -> dict[str, list[tuple[object, ...]]]:
    """Each trade cut into single lots, each instrument's lots grouped by ``lots``."""
    units: dict[str, list[Item]] = defaultdict(list)
    for number, t in enumerate(tape):
        units[t.instrument_uid] += [(number, t, 1)] * t.quantity
    return {uid: group_oracle(items, lots) for uid, items in units.items()}


def tick_oracle(tape: list[Trade], n: int) -> dict[str, list[tuple[object, ...]]]:
    trades: dict[str, list[Item]] = defaultdict(list)
    for number, t in enumerate(tape):
        trades[t.instrument_uid].append((number, t, t.quantity))
    return {uid: group_oracle(items, n) for uid, items in trades.items()}


def per_instrument(bars: list[Bar]) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = defaultdict(list)
    for bar in bars:
        out[bar.instrument_uid].append(summary(bar))
    return dict(out)


def tape_volumes(trades: list[Trade]) -> tuple[int, int, int]:
    """Total, buy and sell lots of trades."""
    return (
        sum(t.quantity for t in trades),
        sum(t.quantity for t in trades if t.direction is BUY),
        sum(t.quantity for t in trades if t.direction is SELL),
    )


def volumes(bars: list[Bar]) -> tuple[int, int, int]:
    return sum(b.volume for b in bars), sum(b.volume_buy for b in bars), sum(b.volume_sell for b in bars)


@settings(max_examples=200)
@given(tape=tapes(), lots=st.integers(1, 60))
def test_volume_bars_equal_the_lot_by_lot_oracle(tape: list[Trade], lots: int) -> None:
    """Every closed bar holds exactly ``lots`` (the flushed one the rest), split trades carry their
    price and side into each bar, and prices follow the tape: all as the oracle says."""
    bars = run(VolumeBarFold(lots), tape)
    assert per_instrument(bars) == volume_oracle(tape, lots)
    assert volumes(bars) == tape_volumes(tape)
    for bar in bars:
        assert (bar.state, bar.interval) == (BarState.CLOSED, None)
        assert bar.volume == lots if bar.closed_by is ClosedBy.THRESHOLD else 0 < bar.volume < lots
        assert bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high


@settings(max_examples=200)
@given(tape=tapes(min_quantity=0), n=st.integers(1, 12))
def test_tick_bars_equal_the_oracle(tape: list[Trade], n: int) -> None:
    bars = run(TickBarFold(n), tape)
    assert per_instrument(bars) == tick_oracle(tape, n)
    assert all(b.trade_count == n for b in bars if b.closed_by is ClosedBy.THRESHOLD)
    assert volumes(bars) == tape_volumes(tape)


def overshoot_oracle(tape: list[Trade], lots: int) -> dict[str, list[int]]:
    """Volumes of unsplit bars: sum whole trades until the sum reaches ``lots``."""
    out: dict[str, list[int]] = defaultdict(list)
    sums: dict[str, int] = defaultdict(int)
    for t in tape:
        sums[t.instrument_uid] += t.quantity
        if sums[t.instrument_uid] >= lots:
            out[t.instrument_uid].append(sums.pop(t.instrument_uid))
    for uid, rest in sums.items():
        out[uid].append(rest)
    return dict(out)


@settings(max_examples=150)
@given(tape=tapes(), lots=st.integers(1, 60))
def test_unsplit_volume_bars_overshoot_but_lose_nothing(tape: list[Trade], lots: int) -> None:
    bars = run(VolumeBarFold(lots, split=False), tape)
    made: dict[str, list[int]] = defaultdict(list)
    for bar in bars:
        made[bar.instrument_uid].append(bar.volume)
        if bar.closed_by is ClosedBy.THRESHOLD:
            assert lots <= bar.volume < lots + 40  # less than one more trade (40 lots at most) over
    assert dict(made) == overshoot_oracle(tape, lots)
    assert volumes(bars) == tape_volumes(tape)


@settings(max_examples=100)
@given(tape=tapes(), lots=st.integers(1, 30), n=st.integers(1, 6))
def test_instruments_are_independent(tape: list[Trade], lots: int, n: int) -> None:
    """Interleaved instruments give each instrument the bars of a run over its trades alone."""
    folds = (lambda: VolumeBarFold(lots), lambda: VolumeBarFold(lots, split=False), lambda: TickBarFold(n))
    for make in folds:
        together = per_instrument(run(make(), tape))
        for uid in "ABC":
            alone = per_instrument(run(make(), [t for t in tape if t.instrument_uid == uid]))
            assert together.get(uid) == alone.get(uid)


@settings(max_examples=100)
@given(tape=tapes(min_quantity=0), data=st.data())
def test_out_of_order_arrivals_keep_ohlc_and_time_order(tape: list[Trade], data: st.DataObject) -> None:
    """Trades arriving in any order (zero-lot ones too): low <= open, close <= high, start <= end,
    and the volume is conserved."""
    shuffled = data.draw(st.permutations(tape))
    bars = run(VolumeBarFold(data.draw(st.integers(1, 30))), shuffled)
    for bar in bars:
        assert bar.start <= bar.end
        assert bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high
    assert volumes(bars) == tape_volumes(tape)


def trade(uid: str, seconds: int, price: str, quantity: int, direction: TradeDirection = BUY) -> Trade:
    return Trade(
        instrument_uid=uid, price=Decimal(price), quantity=quantity, direction=direction,
        time=T0 + timedelta(seconds=seconds),
    )  # fmt: skip


def test_a_large_trade_fills_several_bars_and_counts_in_each() -> None:
    fold = VolumeBarFold(10)
    assert fold.trade(trade("A", 0, "100", 4)) == []
    first, second = fold.trade(trade("A", 1, "101", 23, SELL))  # 6 + 10 fill two bars, 7 stay open
    assert (first.volume, first.volume_buy, first.volume_sell, first.trade_count) == (10, 4, 6, 2)
    assert (first.open, first.close, first.start, first.end) == (
        Decimal("100"), Decimal("101"), T0, T0 + timedelta(seconds=1)
    )  # fmt: skip
    assert (second.volume, second.volume_sell, second.trade_count, second.open) == (10, 10, 1, Decimal("101"))
    (rest,) = fold.complete()
    assert (rest.volume, rest.trade_count, rest.closed_by) == (7, 1, ClosedBy.COMPLETION)
    assert fold.complete() == []


def test_a_trade_that_fills_a_bar_exactly_opens_no_next_bar() -> None:
    fold = VolumeBarFold(5)
    (bar,) = fold.trade(trade("A", 0, "100", 5))
    assert (bar.volume, bar.closed_by, bar.start, bar.end) == (5, ClosedBy.THRESHOLD, T0, T0)
    assert fold.complete() == []


def test_a_zero_lot_trade_joins_the_bar_and_counts() -> None:
    fold = VolumeBarFold(5)
    assert fold.trade(trade("A", 0, "100", 0)) == []  # opens a bar, fills none of it
    (bar,) = fold.trade(trade("A", 1, "101", 5))
    assert (bar.volume, bar.trade_count, bar.open, bar.close) == (5, 2, Decimal("100"), Decimal("101"))


def test_bad_sizes_and_bad_trades_are_refused() -> None:
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ConfigurationError):
            TickBarFold(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            VolumeBarFold(bad)  # type: ignore[arg-type]
    with pytest.raises(DataIntegrityError):
        VolumeBarFold(5).trade(Trade(instrument_uid="A", quantity=1, price=Decimal(1)))
    with pytest.raises(DataIntegrityError):
        TickBarFold(5).trade(Trade(instrument_uid="A", quantity=1, time=T0))
    with pytest.raises(DataIntegrityError):
        VolumeBarFold(5).trade(trade("A", 0, "100", -1))
