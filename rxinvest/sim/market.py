"""The simulated market: seeded order books, trades at the touch, last prices, statuses and candles.

Sans-I/O and deterministic: :meth:`Market.step` advances simulated time by one fixed step and
returns what happened; the same seed, start and step give the same events, whatever the wall clock
or the subscribers do. Each instrument draws from its own random generator, so instruments do not
perturb one another.

Model, per instrument: a book of up to 50 levels a side on the tick grid, never crossed while the
instrument trades (best bid below best ask). During an auction (the ``session`` scenario) orders
collect unmatched, some at or through the other side's best price, so the book crosses or locks, as
the exchange's does; when trading resumes the crossing quantity matches away (without prints, a
simplification) and the book is uncrossed. Market orders hit the touch, so every trade prints at
the best ask (a buy) or the best bid (a sell) and takes that quantity out of the book; limit orders
add size at or inside the touch and move the price. Candles of every subscription interval are
folded from these trades; after an interval closes, a late exchange print now and then lands in it
and yields a corrective candle.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from rxinvest.errors import ConfigurationError
from rxinvest.fold.candles import apply_trade, interval_end, interval_start
from rxinvest.model import (
    Candle,
    LastPrice,
    LastPriceType,
    OpenInterest,
    Order,
    OrderBook,
    OrderBookType,
    SecurityTradingStatus,
    SubscriptionInterval,
    Trade,
    TradeDirection,
    TradeSourceType,
    TradingStatus,
)
from rxinvest.model.kinds import BOOK_DEPTHS, CANDLE_INTERVALS
from rxinvest.sim.instruments import Instrument
from rxinvest.sim.quote import Quote

__all__ = ["MAX_DEPTH", "SCENARIOS", "CandleUpdate", "Market", "StepEvents"]

MAX_DEPTH = max(BOOK_DEPTHS)  # the deepest book the API serves
_S = SecurityTradingStatus
_TRADABLE = frozenset(
    {_S.SECURITY_TRADING_STATUS_NORMAL_TRADING, _S.SECURITY_TRADING_STATUS_DEALER_NORMAL_TRADING}
)
#: Statuses in which orders collect without matching: the book may cross.
_AUCTIONS = frozenset(
    {_S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD, _S.SECURITY_TRADING_STATUS_CLOSING_AUCTION}
)

#: Scenario name -> (trade probability per step, mean move in ticks, status schedule). A schedule is a
#: cycle of (status, seconds); an empty one keeps normal trading with a rare break.
SCENARIOS: dict[str, tuple[float, float, tuple[tuple[SecurityTradingStatus, float], ...]]] = {
    "normal": (0.35, 1.0, ()),
    "quiet": (0.08, 0.5, ()),
    "volatile": (0.7, 3.0, ()),
    "session": (
        0.35,
        1.0,
        (
            (_S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD, 20),
            (_S.SECURITY_TRADING_STATUS_NORMAL_TRADING, 240),
            (_S.SECURITY_TRADING_STATUS_BREAK_IN_TRADING, 20),
            (_S.SECURITY_TRADING_STATUS_NORMAL_TRADING, 240),
            (_S.SECURITY_TRADING_STATUS_CLOSING_AUCTION, 20),
            (_S.SECURITY_TRADING_STATUS_SESSION_CLOSE, 30),
        ),
    ),
}


@attrs.frozen
class CandleUpdate:
    """A candle to deliver: ``closed`` when its interval has ended, ``corrective`` when a late print
    changed a candle already closed."""

    candle: Candle
    closed: bool = False
    corrective: bool = False


@attrs.define
class StepEvents:
    """Everything one step produced, in the order it happened."""

    time: datetime
    trades: list[Trade] = attrs.field(factory=list)
    last_prices: list[LastPrice] = attrs.field(factory=list)
    statuses: list[TradingStatus] = attrs.field(factory=list)
    open_interest: list[OpenInterest] = attrs.field(factory=list)
    candles: list[CandleUpdate] = attrs.field(factory=list)
    #: Instruments whose book changed (fetch snapshots with :meth:`Market.book`).
    books: set[str] = attrs.field(factory=set)


class _Side:
    """One side of a book: [price in ticks, lots] levels, best first."""

    def __init__(self, levels: list[list[int]], sign: int) -> None:
        self.levels = levels
        self.sign = sign  # -1 for bids (prices fall away from the touch), +1 for asks

    @property
    def best(self) -> int | None:
        return self.levels[0][0] if self.levels else None

    def add(self, price: int, lots: int) -> None:
        """Lots at ``price``, in order (best first), a new level or more at an existing one."""
        levels, sign = self.levels, self.sign
        for i, level in enumerate(levels):
            if level[0] == price:
                level[1] += lots
                return
            if (price - level[0]) * sign < 0:  # better than this level
                levels.insert(i, [price, lots])
                break
        else:
            levels.append([price, lots])
        if len(levels) > MAX_DEPTH:
            levels.pop()

    def refill(self, rng: random.Random, mean_size: int) -> None:
        """Keep MAX_DEPTH levels: new size appears behind the last level."""
        while len(self.levels) < MAX_DEPTH:
            far = self.levels[-1][0] if self.levels else None
            if far is None:
                return
            self.levels.append([far + self.sign * rng.choice((1, 1, 1, 2)), rng.randint(1, 2 * mean_size)])


class _Instrument:
    """The mutable state of one instrument's market."""

    def __init__(self, instrument: Instrument, rng: random.Random) -> None:
        self.info = instrument
        self.rng = rng
        self.tick = instrument.min_price_increment
        self.mean_size = rng.choice((5, 10, 20, 50, 100))
        mid = int(instrument.price / self.tick)
        self.open_ticks = mid
        self.bids = _Side([[mid - 1, rng.randint(1, 2 * self.mean_size)]], -1)
        self.asks = _Side([[mid + 1, rng.randint(1, 2 * self.mean_size)]], +1)
        self.bids.refill(rng, self.mean_size)
        self.asks.refill(rng, self.mean_size)
        self.last_price = instrument.price
        self.status = _S.SECURITY_TRADING_STATUS_NORMAL_TRADING
        self.candles: dict[SubscriptionInterval, Candle] = {}
        self.open_interest = rng.randint(100_000, 2_000_000) if instrument.kind == "futures" else 0

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick

    def trade(self, direction: TradeDirection, time: datetime) -> Trade:
        """A market order of random size at the touch: takes quantity out of the opposite side."""
        side = self.asks if direction is TradeDirection.TRADE_DIRECTION_BUY else self.bids
        level = side.levels[0]
        quantity = min(level[1], self.rng.randint(1, max(1, self.mean_size)))
        level[1] -= quantity
        if level[1] == 0:
            side.levels.pop(0)
            side.refill(self.rng, self.mean_size)
        self.last_price = self.price(level[0])
        return self.print_trade(direction, self.last_price, quantity, time)

    def print_trade(self, direction: TradeDirection, price: Decimal, quantity: int, time: datetime) -> Trade:
        """The exchange's print (trade report) of this instrument; changes no state."""
        info = self.info
        return Trade(
            figi=info.figi,
            direction=direction,
            price=price,
            quantity=quantity,
            time=time,
            instrument_uid=info.uid,
            trade_source=TradeSourceType.TRADE_SOURCE_EXCHANGE,
            ticker=info.ticker,
            class_code=info.class_code,
        )

    def add_liquidity(self, drift: float) -> None:
        """Limit orders: mostly size at existing levels, sometimes a new best price inside the spread.

        ``drift`` > 0 favours bids stepping up (and asks backing off), < 0 the opposite: the walk
        of the mid price. The book is never crossed: a new bid stays below the best ask.
        """
        rng = self.rng
        side = self.bids if rng.random() < 0.5 + drift else self.asks
        other = self.asks if side is self.bids else self.bids
        best, opposite = side.best, other.best
        assert best is not None
        assert opposite is not None
        if abs(opposite - best) > 1 and rng.random() < 0.5:
            side.levels.insert(0, [best - side.sign, rng.randint(1, self.mean_size)])
        else:
            level = side.levels[min(len(side.levels) - 1, int(rng.expovariate(0.3)))]
            level[1] += rng.randint(1, self.mean_size)
        if len(side.levels) > MAX_DEPTH:
            side.levels.pop()

    def auction_order(self) -> None:
        """An auction order: a bid at or up to two ticks above the best ask, or the mirror ask."""
        rng, bids, asks = self.rng, self.bids, self.asks
        if bids.best is None or asks.best is None:
            return
        lots = rng.randint(1, self.mean_size)
        if rng.random() < 0.5:
            bids.add(asks.best + rng.randint(0, 2), lots)
        else:
            asks.add(bids.best - rng.randint(0, 2), lots)

    def uncross(self) -> None:
        """The auction's end: the crossing quantity matches away, leaving best bid below best ask."""
        bids, asks = self.bids.levels, self.asks.levels
        while bids and asks and bids[0][0] >= asks[0][0]:
            lots = min(bids[0][1], asks[0][1])
            bids[0][1] -= lots
            asks[0][1] -= lots
            if not bids[0][1]:
                bids.pop(0)
            if not asks[0][1]:
                asks.pop(0)
        if not bids:  # a side emptied by the match starts again next to the other
            bids.append([asks[0][0] - 1, self.rng.randint(1, 2 * self.mean_size)])
        if not asks:
            asks.append([bids[0][0] + 1, self.rng.randint(1, 2 * self.mean_size)])
        self.bids.refill(self.rng, self.mean_size)
        self.asks.refill(self.rng, self.mean_size)

    def book(self, depth: int, time: datetime) -> OrderBook:
        info = self.info
        price = self.price
        return OrderBook(
            figi=info.figi,
            depth=depth,
            is_consistent=True,
            bids=tuple(Order(price=price(p), quantity=q) for p, q in self.bids.levels[:depth]),
            asks=tuple(Order(price=price(p), quantity=q) for p, q in self.asks.levels[:depth]),
            time=time,
            limit_up=price(self.open_ticks * 6 // 5),
            limit_down=price(self.open_ticks * 4 // 5),
            instrument_uid=info.uid,
            order_book_type=OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
            ticker=info.ticker,
            class_code=info.class_code,
        )


class Market:
    """A deterministic simulated exchange for a set of instruments.

    ``start`` is the simulated time of step 0 (aware UTC); each :meth:`step` advances it by ``step``.
    A naive ``start`` or an unknown ``scenario`` is a :class:`~rxinvest.errors.ConfigurationError`.
    Not thread-safe: one owner (the simulator's event loop) calls it.
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        seed: int,
        start: datetime,
        step: timedelta = timedelta(milliseconds=100),
        scenario: str = "normal",
        corrective_probability: float = 0.2,
    ) -> None:
        if not isinstance(start, datetime) or start.tzinfo is None:
            raise ConfigurationError(f"start must be an aware datetime, not {start!r}")
        if not isinstance(scenario, str) or scenario not in SCENARIOS:
            raise ConfigurationError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        self.seed = seed
        self.now = start
        self.step_length = step
        self.scenario = scenario
        self.steps = 0
        self._activity, self._volatility, self._schedule = SCENARIOS[scenario]
        self._corrective_probability = corrective_probability
        self._state: dict[str, _Instrument] = {}
        for index, instrument in enumerate(instruments):
            self._state[instrument.uid] = _Instrument(
                instrument, random.Random(f"{seed}/{index}/{instrument.uid}")
            )
        self._statuses_rng = random.Random(f"{seed}/statuses")
        self._breaks: dict[str, datetime] = {}  # uid -> end of an unscheduled break
        self._books: dict[tuple[str, int], OrderBook] = {}  # this step's books, by (uid, depth)
        self._start = start
        if self._schedule:  # a scheduled session starts where its schedule says, before any step
            for uid, state in self._state.items():
                state.status = self._scheduled_status(uid)

    @property
    def instruments(self) -> Iterator[Instrument]:
        return (state.info for state in self._state.values())

    def quote(self, uid: str) -> Quote:
        state = self._state[uid]
        tradable = state.status in _TRADABLE
        best_bid, best_ask = state.bids.best, state.asks.best
        return Quote(
            instrument_uid=uid,
            best_bid=state.price(best_bid) if tradable and best_bid is not None else None,
            best_ask=state.price(best_ask) if tradable and best_ask is not None else None,
            bid_size=state.bids.levels[0][1] if state.bids.levels else 0,
            ask_size=state.asks.levels[0][1] if state.asks.levels else 0,
            last_price=state.last_price,
            tradable=tradable,
        )

    def quotes(self) -> dict[str, Quote]:
        return {uid: self.quote(uid) for uid in self._state}

    def book(self, uid: str, depth: int = MAX_DEPTH) -> OrderBook:
        """The current book of ``uid`` cut to ``depth`` levels a side (1..50).

        One object per step, instrument and depth (books change only in :meth:`step`): a server
        that encodes frames once per object then encodes a book once for all its subscribers.
        """
        key = (uid, depth)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = self._state[uid].book(depth, self.now)
        return book

    def last_price(self, uid: str) -> LastPrice:
        state = self._state[uid]
        info = state.info
        return LastPrice(
            figi=info.figi,
            price=state.last_price,
            time=self.now,
            ticker=info.ticker,
            class_code=info.class_code,
            instrument_uid=uid,
            last_price_type=LastPriceType.LAST_PRICE_EXCHANGE,
        )

    def trading_status(self, uid: str) -> TradingStatus:
        state = self._state[uid]
        tradable = state.status in _TRADABLE
        return TradingStatus(
            figi=state.info.figi,
            trading_status=state.status,
            time=self.now,
            limit_order_available_flag=tradable
            or state.status is not _S.SECURITY_TRADING_STATUS_SESSION_CLOSE,
            market_order_available_flag=tradable,
            instrument_uid=uid,
            ticker=state.info.ticker,
            class_code=state.info.class_code,
        )

    def candle(self, uid: str, interval: SubscriptionInterval) -> Candle | None:
        """The forming candle of ``interval`` for ``uid``, or None before its first trade."""
        return self._state[uid].candles.get(interval)

    def step(self) -> StepEvents:
        """Advance one step: statuses, trades at the touch, new liquidity, candles."""
        self.steps += 1
        self.now = self._start + self.steps * self.step_length
        self._books.clear()
        events = StepEvents(time=self.now)
        cleared = self._update_statuses(events)
        for uid, state in self._state.items():
            self._close_candles(state, events)
            if uid in cleared:  # the auction's end: this step uncrossed the book, trading starts next
                continue
            if state.status not in _TRADABLE:
                if state.status in _AUCTIONS and state.rng.random() < self._activity:
                    state.auction_order()
                    events.books.add(uid)
                continue
            rng = state.rng
            if rng.random() < self._activity:
                drift = rng.gauss(0, 0.15 * self._volatility)
                for _ in range(rng.choice((1, 1, 1, 2, 3))):
                    direction = (
                        TradeDirection.TRADE_DIRECTION_BUY
                        if rng.random() < 0.5 + drift
                        else TradeDirection.TRADE_DIRECTION_SELL
                    )
                    self._record(state, state.trade(direction, self.now), events)
                for _ in range(rng.randint(1, 3)):
                    state.add_liquidity(drift)
                events.books.add(uid)
            elif rng.random() < 0.3:
                state.add_liquidity(rng.gauss(0, 0.1))
                events.books.add(uid)
            if state.open_interest and self.steps % 50 == 0:
                state.open_interest += rng.randint(-500, 500)
                events.open_interest.append(
                    OpenInterest(
                        instrument_uid=uid,
                        time=self.now,
                        open_interest=state.open_interest,
                        ticker=state.info.ticker,
                        class_code=state.info.class_code,
                    )
                )
        return events

    def _record(self, state: _Instrument, trade: Trade, events: StepEvents) -> None:
        events.trades.append(trade)
        events.last_prices.append(self.last_price(state.info.uid))
        for interval in CANDLE_INTERVALS:
            candle = apply_trade(state.candles.get(interval), trade, interval)
            state.candles[interval] = candle
            events.candles.append(CandleUpdate(candle))

    def _close_candles(self, state: _Instrument, events: StepEvents) -> None:
        """Emit the final candle of every interval that ended; sometimes a late print corrects one.

        The late print (an exchange trade timed inside the minute that just ended, delivered now) is
        decided before anything closes: the closed minute is sent, then corrected; candles of longer
        intervals that end at the same instant close with the print in them; forming ones take it.
        """
        one_minute = SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE
        ended = [
            i for i, c in state.candles.items() if c.time is not None and interval_end(c.time, i) <= self.now
        ]
        if not ended:
            return
        late, when = None, self.now
        if (
            one_minute in ended
            and state.status in _TRADABLE
            and state.rng.random() < self._corrective_probability
        ):
            minute = state.candles[one_minute]
            assert minute.time is not None  # built from trades: time and prices are set
            assert minute.close is not None
            when = minute.time + timedelta(seconds=59, microseconds=state.rng.randrange(10**6))
            late = state.print_trade(TradeDirection.TRADE_DIRECTION_SELL, minute.close, 1, when)
            events.trades.append(late)
        for interval in ended:
            candle = state.candles.pop(interval)
            if late is not None and interval is one_minute:
                events.candles.append(CandleUpdate(candle, closed=True))
                events.candles.append(
                    CandleUpdate(apply_trade(candle, late, interval), closed=True, corrective=True)
                )
                continue
            if late is not None and interval_start(when, interval) == candle.time:
                candle = apply_trade(candle, late, interval)
            events.candles.append(CandleUpdate(candle, closed=True))
        if late is not None:
            for interval, forming in state.candles.items():
                if interval_start(when, interval) == forming.time:
                    state.candles[interval] = apply_trade(forming, late, interval)
                    events.candles.append(CandleUpdate(state.candles[interval]))

    def _update_statuses(self, events: StepEvents) -> set[str]:
        """Move each instrument to its scheduled status; returns those whose auction ended (their
        books uncrossed)."""
        cleared: set[str] = set()
        for uid, state in self._state.items():
            status = self._scheduled_status(uid)
            if status is not state.status:
                if state.status in _AUCTIONS and status not in _AUCTIONS:
                    state.uncross()
                    events.books.add(uid)
                    cleared.add(uid)
                state.status = status
                events.statuses.append(self.trading_status(uid))
        return cleared

    def _scheduled_status(self, uid: str) -> SecurityTradingStatus:
        elapsed = (self.now - self._start).total_seconds()
        if self._schedule:
            cycle = sum(seconds for _, seconds in self._schedule)
            position = elapsed % cycle
            for status, seconds in self._schedule:
                if position < seconds:
                    return status
                position -= seconds
        # Unscheduled: normal trading with, now and then, a short break for one instrument.
        end = self._breaks.get(uid)
        if end is not None:
            if self.now < end:
                return _S.SECURITY_TRADING_STATUS_BREAK_IN_TRADING
            del self._breaks[uid]
        elif self._statuses_rng.random() < 0.0002:
            self._breaks[uid] = self.now + timedelta(seconds=self._statuses_rng.randint(5, 30))
            return _S.SECURITY_TRADING_STATUS_BREAK_IN_TRADING
        return _S.SECURITY_TRADING_STATUS_NORMAL_TRADING
