"""Time bars from trades, sans-I/O: the logic of ``ops.to_bars``, with every time passed in.

Rules of this module:

1. **Buckets.** A trade belongs to the bucket ``[start, end)`` holding its exchange time
   (``Trade.time``), never its receipt time: a trade exactly at ``end`` opens the next bar. A
   ``timedelta`` interval is aligned to the Unix epoch at 00:00 UTC plus ``origin`` (so every length
   that divides a day starts at midnight UTC); a ``SubscriptionInterval`` follows the API's calendar
   (weeks from Monday, months from the 1st).
2. **Prices.** ``open`` is the price of the earliest trade by exchange time, ``close`` of the latest
   (ties: the one that arrived first opens, the one that arrived last closes); high, low, volumes and
   the trade count do not depend on the order of arrival.
3. **Closing.** A bar closes at the first trade of a later bucket of its instrument (``NEXT_TRADE``)
   or when the exchange clock passes ``end + grace`` (``TIMER``), whichever comes first; completion
   flushes it (``COMPLETION``); a gap closes it as ``incomplete`` (``GAP``). No bar is made for an
   interval without trades, so none is invented across a gap.
4. **The exchange clock.** The fold is told local times (the scheduler's ``now``); it estimates the
   exchange time as the time of the most recently received trade of any instrument plus the local
   time elapsed since it was received, never going back. A simulator that runs faster or slower than
   real time, or a replay under virtual time, keeps the estimate right as long as something trades;
   with nothing trading at all it advances at the local clock's rate.
5. **Late trades.** A trade for a bar that closed, arriving before the exchange clock passed that
   bar's ``end + grace``, corrects it: the bar is emitted again as ``CORRECTED``. A later one changes
   nothing and comes out as a :class:`~rxinvest.derived.LateTrade`. Nothing is dropped silently:
   the volume of the bars plus the volume of the late trades is the volume of the trades.
6. **Sessions.** Told the instrument's trading statuses (:meth:`BarFold.status`), the fold closes
   its open bar as soon as a status says it stopped trading (a break, the close; ``SESSION``),
   instead of at ``end + grace``. No bar is ever made for an interval without trades, so none is
   made for a time it did not trade; trades that do come while a status says otherwise (a late
   print) still count, as they happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeAlias

import attrs

from rxinvest.derived import Bar, BarState, ClosedBy, LateTrade
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.candles import interval_end, interval_start
from rxinvest.model import SecurityTradingStatus, SubscriptionInterval, Trade, TradeDirection, TradingStatus

__all__ = ["NOT_TRADING", "Accumulator", "BarFold", "Interval", "bucket", "merge"]

#: How long a bar is: a length, or one of the API's (calendar) intervals.
Interval: TypeAlias = timedelta | SubscriptionInterval
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUY, _SELL = TradeDirection.TRADE_DIRECTION_BUY, TradeDirection.TRADE_DIRECTION_SELL
_NEVER = datetime.max.replace(tzinfo=UTC)
_S = SecurityTradingStatus
#: The statuses in which an instrument does not trade (auctions and closing periods do trade).
NOT_TRADING = frozenset(
    {
        _S.SECURITY_TRADING_STATUS_NOT_AVAILABLE_FOR_TRADING,
        _S.SECURITY_TRADING_STATUS_BREAK_IN_TRADING,
        _S.SECURITY_TRADING_STATUS_SESSION_CLOSE,
        _S.SECURITY_TRADING_STATUS_DEALER_BREAK_IN_TRADING,
        _S.SECURITY_TRADING_STATUS_DEALER_NOT_AVAILABLE_FOR_TRADING,
    }
)


def bucket(time: datetime, interval: Interval, origin: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
    """``[start, end)`` of the bar holding ``time`` (rule 1). ConfigurationError for a length that is
    not positive, or an interval without bars (UNSPECIFIED)."""
    if isinstance(interval, SubscriptionInterval):
        start = interval_start(time, interval)
        return start, interval_end(start, interval)
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise ConfigurationError(
            f"a bar interval must be a positive timedelta or an API interval, not {interval!r}"
        )
    anchor = _EPOCH + origin
    start = anchor + ((time - anchor) // interval) * interval
    return start, start + interval


def merge(first: Bar, second: Bar) -> Bar:
    """The bar of two adjacent bars of one instrument, ``first`` before ``second`` (the monoid that
    resampling uses). ConfigurationError if they are not adjacent bars of one instrument."""
    if first.instrument_uid != second.instrument_uid or first.end != second.start:
        raise ConfigurationError(
            f"only adjacent bars of one instrument merge: {first.instrument_uid} [{first.start}, {first.end})"
            f" and {second.instrument_uid} [{second.start}, {second.end})"
        )
    counts = (
        None
        if first.trade_count is None or second.trade_count is None
        else first.trade_count + second.trade_count
    )
    return attrs.evolve(
        first,
        interval=None,
        end=second.end,
        high=max(first.high, second.high),
        low=min(first.low, second.low),
        close=second.close,
        volume=first.volume + second.volume,
        volume_buy=first.volume_buy + second.volume_buy,
        volume_sell=first.volume_sell + second.volume_sell,
        trade_count=counts,
        state=second.state,
        closed_by=second.closed_by,
        incomplete=first.incomplete or second.incomplete,
    )


class Accumulator:
    """The OHLCV of the trades of one bar so far (mutable), with rule 2: what time bars and the
    sized bars of :mod:`rxinvest.fold.sized` both sum, frozen into a :class:`Bar` when emitted."""

    __slots__ = ("close", "close_at", "count", "high", "low", "open", "open_at", "template", "volume",
                 "volume_buy", "volume_sell")  # fmt: skip

    def __init__(self, template: Trade, price: Decimal, time: datetime) -> None:
        self.template = template  # identity fields: uid, figi, ticker
        self.open = self.high = self.low = self.close = price
        self.open_at = self.close_at = time
        self.volume = self.volume_buy = self.volume_sell = self.count = 0

    def add(self, price: Decimal, time: datetime, quantity: int, direction: TradeDirection) -> None:
        """One trade (or the part of a split trade that falls in this bar)."""
        if time < self.open_at:  # rule 2: earliest opens; a tie keeps the first arrival
            self.open, self.open_at = price, time
        if time >= self.close_at:  # latest closes; a tie goes to the last arrival
            self.close, self.close_at = price, time
        if price > self.high:  # comparisons, not max()/min(): this runs for every trade
            self.high = price
        elif price < self.low:
            self.low = price
        self.volume += quantity
        if direction is _BUY:
            self.volume_buy += quantity
        elif direction is _SELL:
            self.volume_sell += quantity
        self.count += 1

    def to_bar(
        self,
        *,
        interval: Interval | None,
        start: datetime,
        end: datetime,
        state: BarState,
        closed_by: ClosedBy | None,
        incomplete: bool = False,
    ) -> Bar:
        t = self.template
        return Bar(
            instrument_uid=t.instrument_uid, figi=t.figi, ticker=t.ticker, interval=interval,
            start=start, end=end, open=self.open, high=self.high, low=self.low, close=self.close,
            volume=self.volume, volume_buy=self.volume_buy, volume_sell=self.volume_sell,
            trade_count=self.count, state=state, closed_by=closed_by, incomplete=incomplete,
        )  # fmt: skip


class _Open(Accumulator):
    """A time bar being built: its bucket, whether a gap fell in it, and why it closed."""

    __slots__ = ("closed_by", "end", "incomplete", "start")

    def __init__(self, trade: Trade, price: Decimal, time: datetime, start: datetime, end: datetime) -> None:
        super().__init__(trade, price, time)
        self.start, self.end = start, end
        self.incomplete = False
        self.closed_by: ClosedBy | None = None

    def bar(self, interval: Interval, state: BarState, closed_by: ClosedBy | None) -> Bar:
        return self.to_bar(
            interval=interval,
            start=self.start,
            end=self.end,
            state=state,
            closed_by=closed_by,
            incomplete=self.incomplete,
        )


#: What the fold emits.
BarEvent: TypeAlias = Bar | LateTrade


class BarFold:
    """Trades of any number of instruments in, bars out (the rules at the top of the module).

    ``grace`` (a ``timedelta`` of at least 0) is how long after its end a bar waits for trades by
    the exchange clock; ``updates`` emits a ``FORMING`` revision for every trade as well. Not
    thread-safe: one per subscription.
    """

    def __init__(
        self,
        interval: Interval,
        *,
        grace: timedelta = timedelta(seconds=1),
        origin: timedelta = timedelta(0),
        updates: bool = False,
    ) -> None:
        bucket(_EPOCH, interval, origin)  # refuses a bad interval now
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ConfigurationError(f"grace must be a timedelta of at least 0, not {grace!r}")
        self.interval, self.grace, self.origin, self.updates = interval, grace, origin, updates
        self._open: dict[str, _Open] = {}  # instrument uid -> its bar being built
        self._closed: dict[str, list[_Open]] = {}  # closed bars still within their grace
        self._gap_until: dict[str, datetime] = {}  # a bar starting before this is incomplete
        self._latest: dict[str, datetime] = {}  # the start of the latest bar of each instrument
        # Exchange time minus local time, as of the latest trade that moved the exchange clock on.
        self._skew: timedelta | None = None
        #: The earliest end + grace (exchange time) of the bars held: advance has work from then.
        self.next_due = _NEVER
        self.late = 0  # trades reported as LateTrade

    def exchange_now(self, now: datetime) -> datetime | None:
        """The exchange time estimated at local time ``now`` (rule 4), or None before any trade."""
        return None if self._skew is None else now + self._skew

    def trade(self, trade: Trade, now: datetime) -> list[BarEvent]:
        """A trade received at local time ``now``. DataIntegrityError for a trade without time or price."""
        time, price = trade.time, trade.price
        if time is None or price is None:
            raise DataIntegrityError(
                "a trade without time or price makes no bar", instrument=trade.instrument_uid
            )
        skew = self._skew
        if skew is None or time >= now + skew:
            self._skew, estimate = time - now, time
        else:
            estimate = now + skew
        # The fast path, most trades: one more trade of the bar being built, nothing due to close.
        current = self._open.get(trade.instrument_uid)
        if current is not None and current.start <= time < current.end:
            current.add(price, time, trade.quantity, trade.direction)
            out: list[BarEvent] = [current.bar(self.interval, BarState.FORMING, None)] if self.updates else []
            return out + self.advance(now) if estimate >= self.next_due else out
        # The trade first: at the very moment its bar's timer would fire, the trade is the evidence
        # (it joins its bar, or closes it as NEXT_TRADE); then whatever the clock has passed.
        return self._apply(trade, estimate) + self.advance(now)

    def _apply(self, trade: Trade, estimate: datetime) -> list[BarEvent]:
        assert trade.time is not None
        assert trade.price is not None
        out: list[BarEvent] = []
        uid = trade.instrument_uid
        start, end = bucket(trade.time, self.interval, self.origin)
        current, latest = self._open.get(uid), self._latest.get(uid)
        # (a trade of the open bar's own bucket took the fast path in trade())
        if current is not None and start > current.start:
            out.append(self._close(uid, ClosedBy.NEXT_TRADE))
        elif latest is not None and start <= latest:  # a bucket that has had its bar: late
            return out + self._late(trade, start, end, estimate)
        opened = self._new(trade, start, end)
        self._open[uid], self._latest[uid] = opened, start
        self.next_due = min(self.next_due, end + self.grace)
        if self.updates:
            out.append(opened.bar(self.interval, BarState.FORMING, None))
        return out

    def advance(self, now: datetime) -> list[BarEvent]:
        """The local clock says ``now``: close the bars whose ``end + grace`` the exchange clock has
        passed, and forget the closed bars past their grace."""
        estimate = self.exchange_now(now)
        if estimate is None or estimate < self.next_due:
            return []
        out: list[BarEvent] = []
        for uid, bar in list(self._open.items()):
            if estimate >= bar.end + self.grace:
                out.append(self._close(uid, ClosedBy.TIMER))
        for uid, closed in list(self._closed.items()):
            kept = [bar for bar in closed if estimate < bar.end + self.grace]
            if kept:
                self._closed[uid] = kept
            else:
                del self._closed[uid]
        self._due()
        return out

    def _due(self) -> None:
        """When the next bar (open, or closed but still taking corrections) is due: advance does
        nothing before then."""
        ends = [bar.end for bar in self._open.values()]
        ends += [bar.end for closed in self._closed.values() for bar in closed]
        self.next_due = min(ends) + self.grace if ends else _NEVER

    def deadline(self, now: datetime) -> datetime | None:
        """The local time at which :meth:`advance` has work (a bar to close, or one past its
        grace to forget), or None."""
        estimate = self.exchange_now(now)
        if estimate is None or self.next_due == _NEVER:
            return None
        return now + max(timedelta(0), self.next_due - estimate)

    def gap(self, instrument_uids: Iterable[str], until: datetime) -> list[BarEvent]:
        """Events of these instruments may be missing up to exchange time ``until``: their open bars
        close as incomplete, and a bar starting before ``until`` will be incomplete too."""
        out: list[BarEvent] = []
        for uid in instrument_uids:
            self._gap_until[uid] = max(until, self._gap_until.get(uid, until))
            if uid in self._open:
                self._open[uid].incomplete = True
                out.append(self._close(uid, ClosedBy.GAP))
        return out

    def status(self, status: TradingStatus) -> list[BarEvent]:
        """A trading status of an instrument: one that says it stopped trading closes its bar now
        (rule 6)."""
        uid = status.instrument_uid
        if status.trading_status in NOT_TRADING and uid in self._open:
            out: list[BarEvent] = [self._close(uid, ClosedBy.SESSION)]
            self._due()
            return out
        return []

    def open_instruments(self) -> list[str]:
        """The instruments with a bar being built."""
        return list(self._open)

    def complete(self) -> list[BarEvent]:
        """The source completed: every open bar closes now."""
        return [self._close(uid, ClosedBy.COMPLETION) for uid in list(self._open)]

    def _new(self, trade: Trade, start: datetime, end: datetime) -> _Open:
        """A bar of one trade; incomplete if it starts before the end of a gap of its instrument."""
        assert trade.time is not None
        assert trade.price is not None
        made = _Open(trade, trade.price, trade.time, start, end)
        made.incomplete = start < self._gap_until.get(trade.instrument_uid, start)
        made.add(trade.price, trade.time, trade.quantity, trade.direction)
        return made

    def _close(self, uid: str, why: ClosedBy) -> Bar:
        bar = self._open.pop(uid)
        bar.closed_by = why
        self._closed.setdefault(uid, []).append(bar)
        return bar.bar(self.interval, BarState.CLOSED, why)

    def _late(self, trade: Trade, start: datetime, end: datetime, estimate: datetime) -> list[BarEvent]:
        assert trade.time is not None
        assert trade.price is not None
        uid = trade.instrument_uid
        if estimate < end + self.grace:
            for bar in self._closed.get(uid, ()):
                if bar.start == start:
                    bar.add(trade.price, trade.time, trade.quantity, trade.direction)
                    return [bar.bar(self.interval, BarState.CORRECTED, bar.closed_by)]
            # Its bucket never had a bar (a later one came first): this trade makes it, closed at
            # once since a later bar exists, and kept for corrections within grace.
            made = self._new(trade, start, end)
            made.closed_by = ClosedBy.NEXT_TRADE
            self._closed.setdefault(uid, []).append(made)
            self.next_due = min(self.next_due, end + self.grace)
            return [made.bar(self.interval, BarState.CLOSED, ClosedBy.NEXT_TRADE)]
        self.late += 1
        return [
            LateTrade(trade=trade, bar_start=start, lateness=max(timedelta(0), estimate - (end + self.grace)))
        ]
