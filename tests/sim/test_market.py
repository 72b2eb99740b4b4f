"""The simulated market (sans-I/O, deterministic): books, trades at the touch, statuses and candles.

Each property drives a whole catalogue market for a few hundred steps from a hypothesis-drawn seed and
start, and checks the events of every step against the books and against a plain OHLCV oracle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import Phase, assume, example, given, settings
from hypothesis import strategies as st

from rxinvest.fold.candles import interval_end, interval_start
from rxinvest.model import (
    Candle,
    CandleSource,
    OrderBook,
    SecurityTradingStatus,
    SubscriptionInterval,
    Trade,
    TradeDirection,
)
from rxinvest.sim.instruments import CATALOGUE
from rxinvest.sim.market import SCENARIOS, CandleUpdate, Market, StepEvents
from rxinvest.sim.quote import Quote

I = SubscriptionInterval  # noqa: E741
S = SecurityTradingStatus
BUY = TradeDirection.TRADE_DIRECTION_BUY
SELL = TradeDirection.TRADE_DIRECTION_SELL
NORMAL = S.SECURITY_TRADING_STATUS_NORMAL_TRADING

UIDS = [instrument.uid for instrument in CATALOGUE]
TICK = {instrument.uid: instrument.min_price_increment for instrument in CATALOGUE}
TICKER = {instrument.uid: instrument.ticker for instrument in CATALOGUE}
INTERVALS = [i for i in I if i is not I.SUBSCRIPTION_INTERVAL_UNSPECIFIED]
SECOND = timedelta(seconds=1)

seeds = st.integers(0, 2**32 - 1)
starts = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
scenarios = st.sampled_from(sorted(SCENARIOS))


T0 = datetime(2000, 1, 1, tzinfo=UTC)


def examples(dev: int) -> settings:
    """``dev`` examples under the dev profile (60 by default), proportionally more under CI's (200).

    No shrinking: a seed has no smaller neighbour that fails "more simply", and each example is a
    whole market run, so shrinking costs minutes for nothing. Each test has an explicit simple example.
    """
    return settings(
        max_examples=max(1, dev * settings().max_examples // 60),
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
    )


def run(market: Market, steps: int) -> list[StepEvents]:
    return [market.step() for _ in range(steps)]


def regular_trades(events: StepEvents, uid: str) -> list[Trade]:
    """The trades of ``uid`` executed in this step (late prints are timed before the step)."""
    return [t for t in events.trades if t.instrument_uid == uid and t.time == events.time]


# --- determinism -----------------------------------------------------------------------------------


def recording(market: Market, steps: int) -> list[tuple[StepEvents, list[OrderBook], dict[str, Quote]]]:
    out = []
    for _ in range(steps):
        events = market.step()
        out.append((events, [market.book(uid, 50) for uid in UIDS], market.quotes()))
    return out


@examples(4)
@given(seed=seeds, start=starts, scenario=scenarios, step_ms=st.sampled_from([100, 1000, 7000]))
@example(seed=0, start=T0, scenario="normal", step_ms=1000)
def test_same_seed_same_events(seed: int, start: datetime, scenario: str, step_ms: int) -> None:
    step = timedelta(milliseconds=step_ms)
    a = recording(Market(CATALOGUE, seed=seed, start=start, step=step, scenario=scenario), 100)
    b = recording(Market(CATALOGUE, seed=seed, start=start, step=step, scenario=scenario), 100)
    for n, ((events_a, books_a, quotes_a), (events_b, books_b, quotes_b)) in enumerate(
        zip(a, b, strict=True)
    ):
        assert events_a.trades == events_b.trades, n
        assert events_a.last_prices == events_b.last_prices, n
        assert events_a.statuses == events_b.statuses, n
        assert events_a.candles == events_b.candles, n
        assert events_a.books == events_b.books, n
        assert events_a == events_b, n
        assert books_a == books_b, n
        assert quotes_a == quotes_b, n
    assert any(events.trades for events, _, _ in a) or scenario == "session"  # (may stay in the auction)


@examples(3)
@given(seed_a=seeds, seed_b=seeds, start=starts, scenario=scenarios)
@example(seed_a=0, seed_b=1, start=T0, scenario="quiet")
def test_different_seeds_differ(seed_a: int, seed_b: int, start: datetime, scenario: str) -> None:
    assume(seed_a != seed_b)
    a = run(Market(CATALOGUE, seed=seed_a, start=start, step=SECOND, scenario=scenario), 100)
    b = run(Market(CATALOGUE, seed=seed_b, start=start, step=SECOND, scenario=scenario), 100)
    assert [e.trades for e in a] != [e.trades for e in b]


# --- books and quotes ------------------------------------------------------------------------------


AUCTIONS = {
    SecurityTradingStatus.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD,
    SecurityTradingStatus.SECURITY_TRADING_STATUS_CLOSING_AUCTION,
}


def assert_sound(book: OrderBook, uid: str, depth: int, *, auction: bool = False) -> None:
    """A book on the tick grid, each side strictly ordered; crossed or locked only in an auction."""
    where = f"{TICKER[uid]} {book.time}"
    tick = TICK[uid]
    assert book.instrument_uid == uid
    assert 0 < len(book.bids) <= depth, where
    assert 0 < len(book.asks) <= depth, where
    for order in (*book.bids, *book.asks):
        assert order.price is not None and order.price > 0, (where, order)
        assert order.price % tick == 0, (where, "off the tick grid", order.price, tick)
        assert order.quantity > 0, (where, order)
    bids = [o.price for o in book.bids if o.price is not None]
    asks = [o.price for o in book.asks if o.price is not None]
    assert all(a > b for a, b in pairwise(bids)), (where, bids)  # strictly descending
    assert all(a < b for a, b in pairwise(asks)), (where, asks)  # strictly ascending
    if not auction:
        assert bids[0] < asks[0], (where, "crossed", bids[0], asks[0])


@examples(5)
@given(
    seed=seeds,
    start=starts,
    scenario=scenarios,
    step_ms=st.sampled_from([100, 1000, 5000]),
    depth=st.integers(1, 50),
)
@example(seed=0, start=T0, scenario="volatile", step_ms=1000, depth=10)
def test_books_are_sound_and_quotes_agree(
    seed: int, start: datetime, scenario: str, step_ms: int, depth: int
) -> None:
    market = Market(
        CATALOGUE, seed=seed, start=start, step=timedelta(milliseconds=step_ms), scenario=scenario
    )
    for _ in range(200):
        market.step()
        quotes = market.quotes()
        assert set(quotes) == set(UIDS)
        for uid in UIDS:
            full = market.book(uid, 50)
            assert_sound(full, uid, 50, auction=market.trading_status(uid).trading_status in AUCTIONS)
            assert full.time == market.now
            cut = market.book(uid, depth)
            assert cut.bids == full.bids[:depth]
            assert cut.asks == full.asks[:depth]

            quote = market.quote(uid)
            assert quote == quotes[uid]
            status = market.trading_status(uid)
            assert quote.tradable == (status.trading_status is NORMAL), (quote, status)
            assert quote.bid_size == full.bids[0].quantity
            assert quote.ask_size == full.asks[0].quantity
            if quote.tradable:
                assert quote.best_bid == full.bids[0].price
                assert quote.best_ask == full.asks[0].price
            else:
                assert quote.best_bid is None and quote.best_ask is None, quote
            assert quote.last_price == market.last_price(uid).price


# --- trades at the touch ---------------------------------------------------------------------------


@examples(5)
@given(seed=seeds, start=starts, scenario=scenarios, step_ms=st.sampled_from([100, 1000]))
@example(seed=0, start=T0, scenario="volatile", step_ms=1000)
def test_trades_print_at_the_touch(seed: int, start: datetime, scenario: str, step_ms: int) -> None:
    """Replays each step's trades against the book taken just before the step: every buy takes the
    best ask, every sell the best bid, never more than the level holds (a level taken out is gone,
    the next one becomes the touch). A last price follows every trade, with its price."""
    market = Market(
        CATALOGUE, seed=seed, start=start, step=timedelta(milliseconds=step_ms), scenario=scenario
    )
    last: dict[str, Decimal | None] = {uid: market.quote(uid).last_price for uid in UIDS}
    traded = 0
    for n in range(1, 201):
        before = {uid: market.book(uid, 50) for uid in UIDS}
        events = market.step()
        late = [t for t in events.trades if t.time != events.time]
        assert all(t.time is not None and t.time < events.time for t in late), late
        for uid in UIDS:
            # Each side as (prices, quantities), best first, as the book stood before the step.
            asks = ([o.price for o in before[uid].asks], [o.quantity for o in before[uid].asks])
            bids = ([o.price for o in before[uid].bids], [o.quantity for o in before[uid].bids])
            trades = regular_trades(events, uid)
            for k, trade in enumerate(trades):
                where = (f"step {n}", TICKER[uid], f"trade {k}", trade)
                assert trade.direction in (BUY, SELL), where
                prices, sizes = asks if trade.direction is BUY else bids
                assert prices, where
                assert trade.price == prices[0], (*where, "touch was", prices[0])
                assert 1 <= trade.quantity <= sizes[0], (*where, "level held", sizes[0])
                sizes[0] -= trade.quantity
                if sizes[0] == 0:
                    del prices[0], sizes[0]
            last_prices = [p for p in events.last_prices if p.instrument_uid == uid]
            assert [p.price for p in last_prices] == [t.price for t in trades], (f"step {n}", TICKER[uid])
            assert all(p.time == events.time for p in last_prices)
            if trades:
                last[uid] = trades[-1].price
            assert market.quote(uid).last_price == last[uid], (f"step {n}", TICKER[uid])
            traded += len(trades)
    assert traded > 0 or scenario == "session"  # a short session run may stay in the opening auction


# --- candles ---------------------------------------------------------------------------------------


class Ohlcv:
    """The oracle: open/high/low/close/volumes of a group of trades, kept as they are printed. The
    open is the first printed; the close is the trade with the latest time, and of trades with the
    same time the one printed last."""

    def __init__(self, interval: SubscriptionInterval, start: datetime) -> None:
        self.interval, self.start = interval, start
        self.first: Trade | None = None
        self.open = self.high = self.low = self.close = Decimal(0)
        self.last_time = start
        self.volume = self.volume_buy = self.volume_sell = 0

    def add(self, trade: Trade) -> None:
        assert trade.price is not None and trade.time is not None
        if self.first is None:
            self.first = trade
            self.open = self.high = self.low = self.close = trade.price
            self.last_time = trade.time
        else:
            self.high = max(self.high, trade.price)
            self.low = min(self.low, trade.price)
            if trade.time >= self.last_time:
                self.close, self.last_time = trade.price, trade.time
        self.volume += trade.quantity
        if trade.direction is BUY:
            self.volume_buy += trade.quantity
        elif trade.direction is SELL:
            self.volume_sell += trade.quantity

    def candle(self) -> Candle:
        first = self.first
        assert first is not None
        return Candle(
            figi=first.figi,
            interval=self.interval,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            time=self.start,
            last_trade_ts=self.last_time,
            instrument_uid=first.instrument_uid,
            ticker=first.ticker,
            class_code=first.class_code,
            volume_buy=self.volume_buy,
            volume_sell=self.volume_sell,
            candle_source_type=CandleSource.CANDLE_SOURCE_EXCHANGE,
        )


Key = tuple[str, SubscriptionInterval, datetime]


def key_of(candle: Candle) -> Key:
    assert candle.time is not None
    return (candle.instrument_uid, candle.interval, candle.time)


def describe(key: Key, n: int, update: CandleUpdate, expected: Candle, what: str) -> str:
    uid, interval, start = key
    return (
        f"step {n}: {what} {TICKER[uid]} {interval.name} {start.isoformat()}"
        f" (closed={update.closed}, corrective={update.corrective})\n  got      {update.candle}\n"
        f"  expected {expected}"
    )


def assert_bounded(candle: Candle) -> None:
    assert candle.low is not None and candle.high is not None
    assert candle.open is not None and candle.close is not None
    assert candle.low <= candle.open <= candle.high, candle
    assert candle.low <= candle.close <= candle.high, candle
    assert candle.volume == candle.volume_buy + candle.volume_sell > 0, candle


@examples(5)
@given(
    seed=seeds,
    start=starts,
    scenario=scenarios,
    corrective_probability=st.sampled_from([0.2, 1.0]),
)
@example(seed=0, start=T0, scenario="normal", corrective_probability=0.2)
def test_candles_agree_with_their_trades(
    seed: int, start: datetime, scenario: str, corrective_probability: float
) -> None:
    """Groups every trade of the run (late prints included) by (instrument, interval, interval start)
    and holds each candle update to the oracle over the trades printed by then:

    * the last closed update of a candle in a step (corrective or not): every trade of its group up
      to the end of the step, late prints of this step included (no trade of this step is regular
      in it: its interval has ended);
    * a closed update that a corrective one follows in the same step: the trades of earlier steps;
    * the last forming update of a candle in a step: every trade of its group so far;
    * at the end, the last closed update of each group (the candle a subscriber keeps): all its trades.
    """
    market = Market(
        CATALOGUE,
        seed=seed,
        start=start,
        step=SECOND,
        scenario=scenario,
        corrective_probability=corrective_probability,
    )
    groups: dict[Key, Ohlcv] = {}
    final: dict[Key, tuple[int, CandleUpdate]] = {}
    corrections = 0
    for n in range(1, 421):
        events = market.step()
        closed: dict[Key, list[CandleUpdate]] = {}
        forming: dict[Key, CandleUpdate] = {}
        for update in events.candles:
            assert update.candle.interval in INTERVALS
            assert_bounded(update.candle)
            key = key_of(update.candle)
            if update.closed:
                closed.setdefault(key, []).append(update)
                assert interval_end(key[2], key[1]) <= events.time, update
            else:
                assert not update.corrective, update
                forming[key] = update
        # Before this step's trades (its late prints) join the groups.
        before = {}
        for key, updates in closed.items():
            assert key in groups, f"step {n}: a closed candle without trades: {updates[0]}"
            assert [u.corrective for u in updates] == [False] + [True] * (len(updates) - 1), updates
            before[key] = groups[key].candle()

        for trade in events.trades:
            assert trade.time is not None
            for interval in INTERVALS:
                key = (trade.instrument_uid, interval, interval_start(trade.time, interval))
                if key not in groups:
                    groups[key] = Ohlcv(interval, key[2])
                groups[key].add(trade)

        for key, updates in closed.items():
            *corrected, last = updates
            for update in corrected:
                assert update.candle == before[key], describe(
                    key, n, update, before[key], "closed, then corrected"
                )
            expected = groups[key].candle()
            assert last.candle == expected, describe(key, n, last, expected, "closed")
            corrections += len(corrected)
            final[key] = (n, last)
        for key, update in forming.items():
            expected = groups[key].candle()
            assert update.candle == expected, describe(key, n, update, expected, "forming")

    # Every interval that ended during the run was closed, and its final candle has all its trades.
    for key in groups:
        if interval_end(key[2], key[1]) <= market.now:
            assert key in final, f"never closed: {TICKER[key[0]]} {key[1].name} {key[2]}"
    for key, (n, update) in final.items():
        expected = groups[key].candle()
        assert update.candle == expected, describe(key, n, update, expected, "final (last closed)")

    closed_intervals = {interval for _, interval, _ in final}
    assert {
        I.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
        I.SUBSCRIPTION_INTERVAL_2_MIN,
        I.SUBSCRIPTION_INTERVAL_FIVE_MINUTES,
    } <= (closed_intervals)
    if corrective_probability == 1.0:
        assert corrections > 0


# --- the session scenario --------------------------------------------------------------------------

SCHEDULE = SCENARIOS["session"][2]


def scheduled(elapsed: timedelta) -> SecurityTradingStatus:
    """The status the session schedule gives ``elapsed`` after the start (a cycle of (status, seconds))."""
    position = elapsed % sum((timedelta(seconds=s) for _, s in SCHEDULE), timedelta())
    for status, seconds in SCHEDULE:
        if position < timedelta(seconds=seconds):
            return status
        position -= timedelta(seconds=seconds)
    raise AssertionError("unreachable")


@examples(3)
@given(seed=seeds, start=starts, step_ms=st.sampled_from([500, 1000, 7000]))
@example(seed=0, start=T0, step_ms=1000)
def test_session_follows_the_schedule(seed: int, start: datetime, step_ms: int) -> None:
    step = timedelta(milliseconds=step_ms)
    market = Market(CATALOGUE, seed=seed, start=start, step=step, scenario="session")
    steps = -(-timedelta(seconds=600) // step)  # more than one whole cycle
    previous = {uid: market.trading_status(uid).trading_status for uid in UIDS}
    seen: set[SecurityTradingStatus] = set()
    traded = 0
    for n in range(1, steps + 1):
        events = market.step()
        expected = scheduled(n * step)
        seen.add(expected)
        tradable = expected is NORMAL
        changed = {s.instrument_uid: s for s in events.statuses}
        assert len(changed) == len(events.statuses), events.statuses
        for uid in UIDS:
            where = (f"step {n}", events.time, TICKER[uid])
            status = market.trading_status(uid)
            assert status.trading_status is expected, (*where, status.trading_status, expected)
            assert status.time == events.time
            assert status.market_order_available_flag == tradable
            if expected is not previous[uid]:
                assert uid in changed, (*where, "no status event for", expected)
                assert changed[uid] == status, where
            else:
                assert uid not in changed, (*where, "status event without a change", changed.get(uid))
            previous[uid] = expected
            assert market.quote(uid).tradable == tradable, where
        if not tradable:
            assert events.trades == [], (f"step {n}", expected, events.trades)
            assert events.last_prices == [], (f"step {n}", expected)
        traded += len(events.trades)
    assert seen == {status for status, _ in SCHEDULE}
    assert traded > 0


def test_session_status_before_the_first_step() -> None:
    """At ``start`` (step 0) the schedule is in its first phase, the opening auction: the market must
    not report normal trading (and tradable quotes) before its first step."""
    market = Market(CATALOGUE, seed=1, start=T0, step=SECOND, scenario="session")
    assert scheduled(timedelta(0)) is S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD
    for uid in UIDS:
        assert market.trading_status(uid).trading_status is scheduled(timedelta(0)), TICKER[uid]
        assert not market.quote(uid).tradable, TICKER[uid]


def test_no_trades_in_unscheduled_breaks() -> None:
    """Outside the session scenario a rare unscheduled break halts one instrument: no trades then."""
    hits = 0
    market = Market(CATALOGUE, seed=4, start=T0, step=SECOND)
    for _ in range(300):
        events = market.step()
        halted = {uid for uid in UIDS if market.trading_status(uid).trading_status is not NORMAL}
        hits += len(halted)
        assert not [t for t in events.trades if t.instrument_uid in halted]
        for uid in halted:
            assert not market.quote(uid).tradable
    assert hits > 0  # breaks are rare (p = 0.0002 per instrument and step), but this seed has some


def test_auctions_cross_books_and_trading_uncrosses_them() -> None:
    market = Market(CATALOGUE, seed=3, start=T0, step=SECOND, scenario="session")
    crossed: dict[bool, int] = {True: 0, False: 0}  # in an auction -> books crossed or locked
    for _ in range(600):  # the session's opening auction (20 s), trading, a break, the closing auction
        market.step()
        for uid in UIDS:
            book = market.book(uid, 50)
            auction = market.trading_status(uid).trading_status in AUCTIONS
            assert_sound(book, uid, 50, auction=auction)
            assert book.bids[0].price is not None and book.asks[0].price is not None
            crossed[auction] += book.bids[0].price >= book.asks[0].price
    assert crossed[True] > 0  # auctions collect orders through the other side
    assert crossed[False] == 0  # and trading never shows a crossed book
