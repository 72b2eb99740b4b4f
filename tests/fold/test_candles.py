"""The pure candle fold: interval alignment, and ``apply_trade`` against a plain OHLCV oracle.

The oracle and the interval arithmetic the trades are drawn from are written out here from the
definitions (00:00 UTC alignment, weeks from Monday, months from the 1st), not taken from the code
under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.candles import apply_trade, interval_end, interval_start
from rxinvest.model import Candle, CandleSource, SubscriptionInterval, Trade, TradeDirection
from rxinvest.testing.strategies import TICKS

I = SubscriptionInterval  # noqa: E741
BUY = TradeDirection.TRADE_DIRECTION_BUY
SELL = TradeDirection.TRADE_DIRECTION_SELL

#: Every interval a candle can have.
INTERVALS = [i for i in I if i is not I.SUBSCRIPTION_INTERVAL_UNSPECIFIED]

#: Intervals that divide the day: their starts are whole multiples of the length since 00:00 UTC.
WITHIN_DAY = {
    I.SUBSCRIPTION_INTERVAL_ONE_MINUTE: timedelta(minutes=1),
    I.SUBSCRIPTION_INTERVAL_2_MIN: timedelta(minutes=2),
    I.SUBSCRIPTION_INTERVAL_3_MIN: timedelta(minutes=3),
    I.SUBSCRIPTION_INTERVAL_FIVE_MINUTES: timedelta(minutes=5),
    I.SUBSCRIPTION_INTERVAL_10_MIN: timedelta(minutes=10),
    I.SUBSCRIPTION_INTERVAL_FIFTEEN_MINUTES: timedelta(minutes=15),
    I.SUBSCRIPTION_INTERVAL_30_MIN: timedelta(minutes=30),
    I.SUBSCRIPTION_INTERVAL_ONE_HOUR: timedelta(hours=1),
    I.SUBSCRIPTION_INTERVAL_2_HOUR: timedelta(hours=2),
    I.SUBSCRIPTION_INTERVAL_4_HOUR: timedelta(hours=4),
}
assert set(INTERVALS) == {*WITHIN_DAY, I.SUBSCRIPTION_INTERVAL_ONE_DAY, I.SUBSCRIPTION_INTERVAL_WEEK,
                          I.SUBSCRIPTION_INTERVAL_MONTH}  # fmt: skip

ZERO = timedelta(0)
DAY = timedelta(days=1)
FIGI, UID, TICKER, CLASS_CODE = "BBG004730N88", "e6123145-9665-43e0-8413-cd61b8aa9b13", "SBER", "TQBR"

# --- strategies ------------------------------------------------------------------------------------

#: Any fixed offset a tzinfo may have (strictly inside +-24 h), microseconds included, and UTC itself.
offsets = st.one_of(
    st.just(UTC),
    st.timedeltas(min_value=-DAY + timedelta(microseconds=1), max_value=DAY - timedelta(microseconds=1)).map(
        timezone
    ),
)
aware = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31), timezones=offsets)
intervals = st.sampled_from(INTERVALS)


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def month_after(first: datetime) -> datetime:
    """The 1st of the month after the month that begins at ``first``."""
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


@st.composite
def spans(draw: st.DrawFn, interval: SubscriptionInterval) -> tuple[datetime, datetime]:
    """An interval ``[start, end)`` of kind ``interval``, built from the calendar definitions."""
    day = draw(st.dates(min_value=date(2000, 1, 3), max_value=date(2100, 12, 1)))
    if interval is I.SUBSCRIPTION_INTERVAL_MONTH:
        start = utc_midnight(day.replace(day=1))
        return start, month_after(start)
    if interval is I.SUBSCRIPTION_INTERVAL_WEEK:
        start = utc_midnight(day - timedelta(days=day.weekday()))
        return start, start + timedelta(days=7)
    if interval is I.SUBSCRIPTION_INTERVAL_ONE_DAY:
        return utc_midnight(day), utc_midnight(day) + timedelta(days=1)
    length = WITHIN_DAY[interval]
    k = draw(st.integers(0, timedelta(days=1) // length - 1))
    start = utc_midnight(day) + k * length
    return start, start + length


@st.composite
def times_in(draw: st.DrawFn, span: tuple[datetime, datetime]) -> datetime:
    """An instant in ``[start, end)``: often the very first or last microsecond, so ties and edges occur."""
    start, end = span
    last = (end - start) // timedelta(microseconds=1) - 1
    offset = draw(st.one_of(st.sampled_from([0, last, last // 2]), st.integers(0, last)))
    return start + timedelta(microseconds=offset)


@st.composite
def trades_in(
    draw: st.DrawFn, span: tuple[datetime, datetime], tick: Decimal, *, max_size: int = 40
) -> list[Trade]:
    """Trades of one instrument, all inside ``span``, in no particular time order."""
    n = draw(st.integers(1, max_size))
    return [
        Trade(
            figi=FIGI,
            direction=draw(st.sampled_from([BUY, SELL])),
            price=tick * draw(st.one_of(st.integers(1, 50), st.integers(1, 10**9))),
            quantity=draw(st.integers(1, 1000)),
            time=draw(times_in(span)),
            instrument_uid=UID,
            ticker=TICKER,
            class_code=CLASS_CODE,
        )
        for _ in range(n)
    ]


# --- the oracle ------------------------------------------------------------------------------------


def oracle(trades: list[Trade], interval: SubscriptionInterval, start: datetime) -> Candle:
    """The candle of ``trades`` (in the order folded), straight from the definitions."""
    prices = [t.price for t in trades]
    assert all(p is not None for p in prices)
    times = [t.time for t in trades]
    latest = max(range(len(trades)), key=lambda k: (times[k], k))  # ties: the later folded
    first = trades[0]
    return Candle(
        figi=first.figi,
        interval=interval,
        open=prices[0],
        high=max(prices),  # type: ignore[type-var]
        low=min(prices),  # type: ignore[type-var]
        close=prices[latest],
        volume=sum(t.quantity for t in trades),
        time=start,
        last_trade_ts=times[latest],
        instrument_uid=first.instrument_uid,
        ticker=first.ticker,
        class_code=first.class_code,
        volume_buy=sum(t.quantity for t in trades if t.direction is BUY),
        volume_sell=sum(t.quantity for t in trades if t.direction is SELL),
        candle_source_type=CandleSource.CANDLE_SOURCE_EXCHANGE,
    )


def fold(trades: list[Trade], interval: SubscriptionInterval, candle: Candle | None = None) -> list[Candle]:
    """Every candle ``apply_trade`` yields while folding ``trades`` in order."""
    out = []
    for trade in trades:
        candle = apply_trade(candle, trade, interval)
        out.append(candle)
    return out


def assert_bounded(candle: Candle) -> None:
    assert candle.low is not None and candle.high is not None
    assert candle.open is not None and candle.close is not None
    assert candle.low <= candle.open <= candle.high, candle
    assert candle.low <= candle.close <= candle.high, candle
    assert candle.volume == candle.volume_buy + candle.volume_sell, candle


# --- interval alignment ----------------------------------------------------------------------------


@given(t=aware, interval=intervals)
def test_interval_contains_time_and_is_aligned(t: datetime, interval: SubscriptionInterval) -> None:
    start = interval_start(t, interval)
    end = interval_end(start, interval)

    assert start.utcoffset() == ZERO, start
    assert end.utcoffset() == ZERO, end
    assert start <= t < end, (t, start, end)

    # Aligned, and of the right length.
    assert start.second == start.microsecond == 0, start
    midnight = start.replace(hour=0, minute=0)
    if interval in WITHIN_DAY:
        length = WITHIN_DAY[interval]
        assert (start - midnight) % length == ZERO, start
        assert end - start == length
    elif interval is I.SUBSCRIPTION_INTERVAL_ONE_DAY:
        assert start == midnight
        assert end - start == timedelta(days=1)
    elif interval is I.SUBSCRIPTION_INTERVAL_WEEK:
        assert start == midnight and start.weekday() == 0, start  # Monday
        assert end - start == timedelta(days=7)
    else:
        assert interval is I.SUBSCRIPTION_INTERVAL_MONTH
        assert start == midnight and start.day == 1, start
        assert end == month_after(start)

    # Idempotent, and the intervals tile time: the next one begins where this one ends.
    assert interval_start(start, interval) == start
    assert interval_start(end, interval) == end
    assert interval_start(end - timedelta(microseconds=1), interval) == start


@given(t=aware, interval=intervals)
def test_interval_start_is_the_same_instant_in_any_zone(t: datetime, interval: SubscriptionInterval) -> None:
    assert interval_start(t, interval) == interval_start(t.astimezone(UTC), interval)


@given(interval=intervals, data=st.data())
def test_every_time_of_a_span_maps_to_its_start(interval: SubscriptionInterval, data: st.DataObject) -> None:
    span = data.draw(spans(interval))
    t = data.draw(times_in(span))
    assert interval_start(t, interval) == span[0]
    assert interval_end(span[0], interval) == span[1]


@given(t=aware)
def test_unspecified_interval_raises(t: datetime) -> None:
    with pytest.raises(ConfigurationError, match="UNSPECIFIED"):
        interval_start(t, I.SUBSCRIPTION_INTERVAL_UNSPECIFIED)


def test_unspecified_interval_cannot_make_a_candle() -> None:
    trade = Trade(
        figi=FIGI, direction=BUY, price=Decimal("1.5"), quantity=1, time=datetime(2025, 1, 6, tzinfo=UTC)
    )
    with pytest.raises(ConfigurationError, match="UNSPECIFIED"):
        apply_trade(None, trade, I.SUBSCRIPTION_INTERVAL_UNSPECIFIED)


@pytest.mark.parametrize(
    ("t", "interval", "start"),
    [
        # 2 h and 4 h are aligned to 00:00 UTC, not to the local midnight of the input.
        (datetime(2025, 3, 5, 1, 30, tzinfo=timezone(timedelta(hours=3))), I.SUBSCRIPTION_INTERVAL_4_HOUR,
         datetime(2025, 3, 4, 20, tzinfo=UTC)),
        (datetime(2025, 3, 5, 3, 59, 59, 999999, tzinfo=UTC), I.SUBSCRIPTION_INTERVAL_2_HOUR,
         datetime(2025, 3, 5, 2, tzinfo=UTC)),
        (datetime(2025, 1, 1, 0, 0, tzinfo=UTC), I.SUBSCRIPTION_INTERVAL_WEEK,
         datetime(2024, 12, 30, tzinfo=UTC)),
        (datetime(2024, 12, 31, 23, 59, tzinfo=UTC), I.SUBSCRIPTION_INTERVAL_MONTH,
         datetime(2024, 12, 1, tzinfo=UTC)),
        (datetime(2024, 3, 1, 2, tzinfo=timezone(timedelta(hours=5))), I.SUBSCRIPTION_INTERVAL_MONTH,
         datetime(2024, 2, 1, tzinfo=UTC)),
        (datetime(2025, 6, 1, 12, 7, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
         I.SUBSCRIPTION_INTERVAL_3_MIN, datetime(2025, 6, 1, 17, 36, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_interval_start_examples(t: datetime, interval: SubscriptionInterval, start: datetime) -> None:
    assert interval_start(t, interval) == start


def test_month_end_rolls_the_year() -> None:
    december = datetime(2099, 12, 1, tzinfo=UTC)
    assert interval_end(december, I.SUBSCRIPTION_INTERVAL_MONTH) == datetime(2100, 1, 1, tzinfo=UTC)
    november = datetime(2099, 11, 1, tzinfo=UTC)
    assert interval_end(november, I.SUBSCRIPTION_INTERVAL_MONTH) == december


# --- the fold --------------------------------------------------------------------------------------


@given(interval=intervals, tick=st.sampled_from(TICKS), data=st.data())
def test_fold_matches_the_oracle(interval: SubscriptionInterval, tick: Decimal, data: st.DataObject) -> None:
    span = data.draw(spans(interval), label="span")
    trades = data.draw(trades_in(span, tick), label="trades")
    candles = fold(trades, interval)
    for n, candle in enumerate(candles, 1):  # every prefix, not only the whole list
        assert candle == oracle(trades[:n], interval, span[0]), n
        assert_bounded(candle)


@given(interval=intervals, tick=st.sampled_from(TICKS), data=st.data())
def test_fold_of_trades_in_time_order(
    interval: SubscriptionInterval, tick: Decimal, data: st.DataObject
) -> None:
    """Sorted by time (as a live stream delivers them): the open is the earliest trade, the close
    the latest."""
    span = data.draw(spans(interval), label="span")
    trades = sorted(data.draw(trades_in(span, tick), label="trades"), key=lambda t: t.time)  # type: ignore[arg-type,return-value]
    candle = fold(trades, interval)[-1]
    assert candle.open == trades[0].price
    assert candle.close == trades[-1].price
    assert candle.last_trade_ts == trades[-1].time
    assert candle == oracle(trades, interval, span[0])


@given(interval=intervals, tick=st.sampled_from(TICKS), data=st.data())
def test_a_later_interval_starts_a_new_candle(
    interval: SubscriptionInterval, tick: Decimal, data: st.DataObject
) -> None:
    first = data.draw(spans(interval), label="first")
    later = data.draw(spans(interval), label="later")
    assume(later[0] != first[0])
    if later[0] < first[0]:
        first, later = later, first
    old = data.draw(trades_in(first, tick, max_size=10), label="old")
    new = data.draw(trades_in(later, tick, max_size=10), label="new")

    candles = fold(old + new, interval)
    assert candles[len(old) - 1] == oracle(old, interval, first[0])
    for n in range(1, len(new) + 1):
        assert candles[len(old) + n - 1] == oracle(new[:n], interval, later[0]), n
    for candle in candles:
        assert_bounded(candle)


@given(interval=intervals, tick=st.sampled_from(TICKS), data=st.data())
def test_a_trade_from_an_earlier_interval_raises(
    interval: SubscriptionInterval, tick: Decimal, data: st.DataObject
) -> None:
    early = data.draw(spans(interval), label="early")
    late = data.draw(spans(interval), label="late")
    assume(late[0] != early[0])
    if late[0] < early[0]:
        early, late = late, early
    candle = fold(data.draw(trades_in(late, tick, max_size=5), label="current"), interval)[-1]
    stale = data.draw(trades_in(early, tick, max_size=1), label="stale")[0]
    with pytest.raises(DataIntegrityError, match="before"):
        apply_trade(candle, stale, interval)


@given(interval=intervals, tick=st.sampled_from(TICKS), data=st.data())
def test_every_folded_candle_is_bounded(
    interval: SubscriptionInterval, tick: Decimal, data: st.DataObject
) -> None:
    """low <= open, close <= high, whatever the order, across interval changes too."""
    spans_ = sorted(data.draw(st.lists(spans(interval), min_size=1, max_size=3), label="spans"))
    trades = [trade for span in spans_ for trade in data.draw(trades_in(span, tick, max_size=15))]
    for candle in fold(trades, interval):
        assert_bounded(candle)
        assert candle.time is not None and candle.last_trade_ts is not None
        assert candle.time <= candle.last_trade_ts < interval_end(candle.time, interval)


def test_late_print_counts_but_keeps_the_close() -> None:
    minute = I.SUBSCRIPTION_INTERVAL_ONE_MINUTE
    t0 = datetime(2025, 1, 6, 7, 0, tzinfo=UTC)

    def trade(second: int, price: str, direction: TradeDirection, quantity: int) -> Trade:
        return Trade(
            figi=FIGI,
            direction=direction,
            price=Decimal(price),
            quantity=quantity,
            time=t0 + timedelta(seconds=second),
            instrument_uid=UID,
            ticker=TICKER,
            class_code=CLASS_CODE,
        )

    trades = [trade(10, "100.00", BUY, 3), trade(40, "101.50", SELL, 2), trade(20, "99.00", BUY, 5)]
    candle = fold(trades, minute)[-1]
    assert (candle.open, candle.high, candle.low, candle.close) == tuple(
        map(Decimal, ("100.00", "101.50", "99.00", "101.50"))
    )
    assert (candle.volume, candle.volume_buy, candle.volume_sell) == (10, 8, 2)
    assert candle.time == t0
    assert candle.last_trade_ts == t0 + timedelta(seconds=40)
