"""fold.server_candles over generated candle streams, with hypothesis: the expected closed values
come from an oracle that keeps the last update of each minute, written here."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxinvest.derived import Bar, BarState, ClosedBy
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.server_candles import ClosedCandles
from rxinvest.model import CANDLE_INTERVALS, Candle, CandleSource, SubscriptionInterval

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ONE_MINUTE = SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE
EXCHANGE, WEEKEND = CandleSource.CANDLE_SOURCE_EXCHANGE, CandleSource.CANDLE_SOURCE_DEALER_WEEKEND
#: The series a stream may hold: two instruments, and one of them from two sources.
SERIES = [("A", EXCHANGE), ("B", EXCHANGE), ("A", WEEKEND)]
Values = tuple[Decimal, Decimal, Decimal, Decimal, int, int, int]
Key = tuple[str, CandleSource, datetime]


def candle(uid: str, source: CandleSource, start: datetime, values: Values) -> Candle:
    o, h, low, c, volume, buy, sell = values
    return Candle(
        instrument_uid=uid, interval=ONE_MINUTE, time=start, open=o, high=h, low=low, close=c,
        volume=volume, volume_buy=buy, volume_sell=sell, candle_source_type=source,
    )  # fmt: skip


def values_of(bar: Bar | Candle) -> Values:
    return bar.open, bar.high, bar.low, bar.close, bar.volume, bar.volume_buy, bar.volume_sell  # type: ignore[return-value]


def key_of(bar: Bar) -> Key:
    assert bar.candle_source_type is not None
    return bar.instrument_uid, bar.candle_source_type, bar.start


@st.composite
def revisions(draw: st.DrawFn) -> list[Values]:
    """The forming updates of one minute: OHLCV of growing prefixes of its trades, some repeated."""
    trade = st.tuples(st.integers(90, 110), st.integers(1, 9), st.booleans())  # price, lots, bought
    trades = draw(st.lists(trade, min_size=1, max_size=6))
    cuts = sorted(draw(st.lists(st.integers(1, len(trades)), min_size=1, max_size=5)))  # repeats: same update
    out = []
    for cut in cuts:
        prefix = trades[:cut]
        prices = [Decimal(p) for p, _, _ in prefix]
        buy = sum(q for _, q, is_buy in prefix if is_buy)
        sell = sum(q for _, q, is_buy in prefix if not is_buy)
        out.append((prices[0], max(prices), min(prices), prices[-1], buy + sell, buy, sell))
    return out


#: One arrival: (series index, minute, values, exchange time of arrival).
Arrival = tuple[int, int, Values, datetime]


@st.composite
def streams(draw: st.DrawFn, minutes: int = 6) -> list[Arrival]:
    """Minute after minute, the updates of every series that traded in it, interleaved across series
    (each series' own updates in order), arriving within their minute by the exchange clock."""
    out: list[Arrival] = []
    for minute in range(minutes):
        queues = [
            [(index, minute, values) for values in draw(revisions())] if draw(st.booleans()) else []
            for index in range(len(SERIES))
        ]
        order = draw(st.permutations([index for index, queue in enumerate(queues) for _ in queue]))
        offsets = sorted(draw(st.lists(st.integers(0, 59_999), min_size=len(order), max_size=len(order))))
        for index, offset in zip(order, offsets, strict=True):
            s, m, values = queues[index].pop(0)
            out.append((s, m, values, T0 + minute * MINUTE + timedelta(milliseconds=offset)))
    return out


def as_candle(arrival: Arrival) -> Candle:
    index, minute, values, _ = arrival
    uid, source = SERIES[index]
    return candle(uid, source, T0 + minute * MINUTE, values)


def feed(fold: ClosedCandles, stream: list[Arrival]) -> list[tuple[datetime, Bar]]:
    """Every event with the exchange time at which it came out; completion last."""
    out = []
    for arrival in stream:
        out += [(arrival[3], bar) for bar in fold.candle(as_candle(arrival), arrival[3])]
    end = stream[-1][3] if stream else T0
    return out + [(end, bar) for bar in fold.complete()]


def last_values(stream: list[Arrival]) -> dict[Key, Values]:
    """The oracle: each key's last update."""
    out = {}
    for index, minute, values, _ in stream:
        uid, source = SERIES[index]
        out[(uid, source, T0 + minute * MINUTE)] = values
    return out


GRACES = st.sampled_from([timedelta(0), timedelta(seconds=5), timedelta(seconds=30)])


@settings(max_examples=150)
@given(stream=streams(), grace=GRACES)
def test_each_minute_closes_once_with_its_last_update(stream: list[Arrival], grace: timedelta) -> None:
    """Forming updates replace each other: each key comes out once, CLOSED, with its last values;
    by the timer no sooner than end + grace, and no later than the first arrival at or after it."""
    fold = ClosedCandles(grace=grace)
    events = feed(fold, stream)
    assert all(bar.state is BarState.CLOSED for _, bar in events)  # in-minute updates correct nothing
    assert Counter(key_of(bar) for _, bar in events) == Counter(last_values(stream).keys())
    assert {key_of(bar): values_of(bar) for _, bar in events} == last_values(stream)
    nows = [arrival[3] for arrival in stream]
    for at, bar in events:
        assert bar.end == bar.start + MINUTE
        due = bar.end + grace
        if bar.closed_by is ClosedBy.TIMER:
            assert at >= due
        # Pending when an arrival came at or after its due time: it must have closed by then.
        assert not [now for now in nows if due <= now < at]


@settings(max_examples=150)
@given(stream=streams(), grace=GRACES)
def test_a_candle_fed_twice_changes_nothing(stream: list[Arrival], grace: timedelta) -> None:
    once, twice = ClosedCandles(grace=grace), ClosedCandles(grace=grace)
    for arrival in stream:
        first = twice.candle(as_candle(arrival), arrival[3])
        assert twice.candle(as_candle(arrival), arrival[3]) == []
        assert once.candle(as_candle(arrival), arrival[3]) == first
    assert once.complete() == twice.complete()


@settings(max_examples=150)
@given(stream=streams(), data=st.data())
def test_later_candles_of_closed_keys_correct_only_when_they_differ(
    stream: list[Arrival], data: st.DataObject
) -> None:
    """After the stream, candles for its keys come again: one with other values yields exactly one
    CORRECTED with them (keeping the key's closing cause), one equal to the last word nothing."""
    fold = ClosedCandles(grace=timedelta(seconds=5))
    closed = {key_of(bar): bar for _, bar in feed(fold, stream)}
    latest = dict(last_values(stream))
    now = T0 + timedelta(hours=1)
    keys = sorted(latest, key=lambda k: (k[0], k[1].value, k[2]))
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=8)) if keys else []:
        uid, source, start = key
        bump = data.draw(st.integers(0, 3))  # 0: the same values again
        o, h, low, c, volume, buy, sell = latest[key]
        values = (o, h + bump, low, c, volume + bump, buy + bump, sell)
        events = fold.candle(candle(uid, source, start, values), now)
        if bump:
            (corrected,) = events
            assert (corrected.state, corrected.closed_by) == (BarState.CORRECTED, closed[key].closed_by)
            assert (key_of(corrected), values_of(corrected)) == (key, values)
            latest[key] = values
        else:
            assert events == []
        assert fold.candle(candle(uid, source, start, values), now) == []


@settings(max_examples=100)
@given(
    interval=st.sampled_from(CANDLE_INTERVALS),
    when=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2039, 1, 1), timezones=st.just(UTC)),
    grace=st.integers(0, 3600).map(lambda s: timedelta(seconds=s)),
)
def test_the_timer_closes_an_idle_key_at_end_plus_grace_exactly(
    interval: SubscriptionInterval, when: datetime, grace: timedelta
) -> None:
    start, end = oracle_interval(when, interval)
    fold = ClosedCandles(grace=grace)
    update = Candle(
        instrument_uid="A", interval=interval, time=start, open=Decimal(1), high=Decimal(2), low=Decimal(1),
        close=Decimal(2), volume=3,
    )  # fmt: skip
    assert fold.candle(update, start) == []
    assert fold.deadline() == end + grace
    assert fold.advance(end + grace - timedelta(microseconds=1)) == []
    (bar,) = fold.advance(end + grace)
    assert (bar.state, bar.closed_by, bar.start, bar.end) == (BarState.CLOSED, ClosedBy.TIMER, start, end)
    assert fold.advance(end + grace + timedelta(days=40)) == []
    assert fold.deadline() is None


def oracle_interval(when: datetime, interval: SubscriptionInterval) -> tuple[datetime, datetime]:
    """[start, end) of the API interval holding ``when``, by calendar arithmetic written here."""
    day = datetime(when.year, when.month, when.day, tzinfo=UTC)
    if interval is SubscriptionInterval.SUBSCRIPTION_INTERVAL_MONTH:
        start = day.replace(day=1)
        return start, datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
    if interval is SubscriptionInterval.SUBSCRIPTION_INTERVAL_WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    minutes = {1: 1, 2: 5, 3: 15, 4: 60, 5: 1440, 6: 2, 7: 3, 8: 10, 9: 30, 10: 120, 11: 240}[interval.value]
    elapsed = (when - day) // timedelta(minutes=1)
    start = day + timedelta(minutes=elapsed - elapsed % minutes)
    return start, start + timedelta(minutes=minutes)


VALUES: Values = (Decimal(100), Decimal(101), Decimal(99), Decimal(100), 5, 3, 2)


def minute_candle(minute: int, values: Values = VALUES) -> Candle:
    return candle("A", EXCHANGE, T0 + minute * MINUTE, values)


def test_a_next_candle_closes_the_pending_one_and_series_are_apart() -> None:
    fold = ClosedCandles(grace=timedelta(seconds=5))
    assert fold.candle(minute_candle(0), T0) == []
    assert fold.candle(candle("A", WEEKEND, T0, VALUES), T0) == []  # another series: closes nothing
    (closed,) = fold.candle(minute_candle(1), T0 + MINUTE)
    assert (key_of(closed), closed.closed_by) == (("A", EXCHANGE, T0), ClosedBy.SERVER)
    assert closed.to_candle().candle_source_type is EXCHANGE
    exchange, weekend = fold.complete()  # neither is due yet (10:01:05): completion closes both
    assert [(key_of(bar), bar.closed_by) for bar in (exchange, weekend)] == [
        (("A", EXCHANGE, T0 + MINUTE), ClosedBy.COMPLETION), (("A", WEEKEND, T0), ClosedBy.COMPLETION)
    ]  # fmt: skip


def test_an_update_arriving_when_its_key_is_due_closes_it_with_its_values() -> None:
    """The candle first, then the clock: the update is the key's last word, not a correction."""
    fold = ClosedCandles(grace=timedelta(seconds=5))
    fold.candle(minute_candle(0), T0)
    newer = (*VALUES[:4], 9, 5, 4)
    (closed,) = fold.candle(minute_candle(0, newer), T0 + MINUTE + timedelta(seconds=5))
    assert (closed.state, closed.closed_by, values_of(closed)) == (BarState.CLOSED, ClosedBy.TIMER, newer)


def test_an_unseen_older_key_closes_at_once_and_the_horizon_bounds_memory() -> None:
    fold = ClosedCandles(grace=timedelta(seconds=5), horizon=3)
    # Minute 2 skipped; 0, 1, 3 and 4 closed, 5 pending: 1, 3 and 4 remembered.
    for minute in (0, 1, 3, 4, 5):
        fold.candle(minute_candle(minute), T0 + minute * MINUTE)
    (late,) = fold.candle(minute_candle(2), T0 + 5 * MINUTE)  # never seen, newer than the horizon's oldest
    assert (late.state, late.closed_by, late.start) == (BarState.CLOSED, ClosedBy.SERVER, T0 + 2 * MINUTE)
    assert fold.candle(minute_candle(2), T0 + 5 * MINUTE) == []
    # Minute 1 is now beyond the horizon (2, 3, 4 remembered): it cannot be compared, so even equal
    # values come out, as an unchecked correction, and are counted.
    (unchecked,) = fold.candle(minute_candle(1), T0 + 5 * MINUTE)
    assert (unchecked.state, fold.unchecked) == (BarState.CORRECTED, 1)
    assert fold.candle(minute_candle(4), T0 + 5 * MINUTE) == []  # remembered, equal: nothing


def test_bad_arguments_and_bad_candles_are_refused() -> None:
    for grace in (timedelta(seconds=-1), 5):
        with pytest.raises(ConfigurationError):
            ClosedCandles(grace=grace)  # type: ignore[arg-type]
    for horizon in (0, True, 2.0):
        with pytest.raises(ConfigurationError):
            ClosedCandles(grace=timedelta(0), horizon=horizon)  # type: ignore[arg-type]
    fold = ClosedCandles(grace=timedelta(0))
    for bad in (
        attrs.evolve(minute_candle(0), time=None),
        attrs.evolve(minute_candle(0), low=None),
        attrs.evolve(minute_candle(0), interval=SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED),
    ):
        with pytest.raises(DataIntegrityError):
            fold.candle(bad, T0)
