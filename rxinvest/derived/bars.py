"""Bars: what rxinvest builds from trades (or from the server's candles), and what it says about them.

A :class:`Bar` is an OHLCV summary of the trades of one instrument over ``[start, end)`` (start
included, end excluded: a trade exactly at ``end`` belongs to the next bar), labelled by ``start``, as
the wire :class:`~rxinvest.model.Candle` is. Unlike a Candle it says what it is: ``state`` (a forming
revision, the closed bar, or a correction of a closed bar), why it closed (``closed_by``), how many
trades made it, and whether events may be missing inside it (``incomplete``). Revisions and closed
bars are the same class with different states, and a consumer that wants closed bars only filters on
``state`` (``ops.to_bars`` emits closed bars only unless asked for updates).

``Bar.from_candle`` / ``Bar.to_candle`` convert, where the server's candle is the source: a candle
knows no trade count (``trade_count`` None) and no closing cause.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from decimal import Decimal

import attrs

from rxinvest.errors import DataIntegrityError
from rxinvest.model import Candle, CandleSource, SubscriptionInterval, Trade
from rxinvest.model.kinds import INTERVAL_LENGTH

__all__ = ["Bar", "BarState", "ClosedBy", "LateTrade"]


class BarState(enum.Enum):
    FORMING = "forming"  # a revision of the bar still open: more trades may come
    CLOSED = "closed"  # the bar as it closed
    CORRECTED = "corrected"  # the closed bar again, changed by a trade that came late (within grace)


class ClosedBy(enum.Enum):
    NEXT_TRADE = "next_trade"  # a trade of a later bar arrived
    TIMER = "timer"  # the clock passed end + grace with no trade of a later bar
    COMPLETION = "completion"  # the source completed: the open bar was flushed
    GAP = "gap"  # events may be missing from here on (a reconnect): closed, incomplete
    THRESHOLD = "threshold"  # a tick or volume bar reached its size
    SERVER = "server"  # the server's candle stream moved on (closed_candles)
    SESSION = "session"  # the instrument stopped trading (a break, the close): see ops.to_bars(sessions=)


@attrs.frozen(kw_only=True)
class Bar:
    """OHLCV of one instrument over ``[start, end)``; prices ``Decimal``, volumes in lots.

    ``interval`` is the length asked for: a ``timedelta``, or a ``SubscriptionInterval`` for the
    calendar ones (weeks start on Monday, months on the 1st, at 00:00 UTC); None for tick and volume
    bars, whose ``start`` and ``end`` are the times of their first and last trade. ``closed_by`` is
    None while the bar is forming. ``incomplete``: a gap fell inside the bar, so trades may be missing.
    """

    instrument_uid: str
    figi: str = ""
    ticker: str = ""
    interval: timedelta | SubscriptionInterval | None
    start: datetime
    end: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    volume_buy: int = 0
    volume_sell: int = 0
    trade_count: int | None = None
    state: BarState = BarState.FORMING
    closed_by: ClosedBy | None = None
    incomplete: bool = False
    #: The server's source of the candle this bar stands for (``from_candle``): one instrument's
    #: exchange and weekend candles are different series. None for bars built from trades.
    candle_source_type: CandleSource | None = None

    @classmethod
    def from_candle(
        cls, candle: Candle, *, end: datetime, state: BarState, closed_by: ClosedBy | None
    ) -> Bar:
        """The bar a server candle stands for (its interval's ``end`` is given: the candle knows
        only its start). A candle without a time or prices is no bar: DataIntegrityError."""
        if (
            candle.time is None
            or candle.open is None
            or candle.high is None
            or candle.low is None
            or candle.close is None
        ):
            raise DataIntegrityError(
                "a candle without time or prices is not a bar", instrument=candle.instrument_uid
            )
        return cls(
            instrument_uid=candle.instrument_uid,
            figi=candle.figi,
            ticker=candle.ticker,
            interval=candle.interval,
            start=candle.time,
            end=end,
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            volume=candle.volume,
            volume_buy=candle.volume_buy,
            volume_sell=candle.volume_sell,
            state=state,
            closed_by=closed_by,
            candle_source_type=candle.candle_source_type,
        )

    def to_candle(self, last_trade_ts: datetime | None = None) -> Candle:
        """The wire-shaped candle of this bar (a calendar or API interval only: a bar of another
        length has no ``SubscriptionInterval``, and its candle says UNSPECIFIED)."""
        interval = (
            self.interval
            if isinstance(self.interval, SubscriptionInterval)
            else _API_LENGTHS.get(self.interval, SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED)
        )
        return Candle(
            figi=self.figi,
            interval=interval,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            time=self.start,
            last_trade_ts=last_trade_ts,
            instrument_uid=self.instrument_uid,
            ticker=self.ticker,
            volume_buy=self.volume_buy,
            volume_sell=self.volume_sell,
            candle_source_type=self.candle_source_type or CandleSource.CANDLE_SOURCE_EXCHANGE,
        )


@attrs.frozen(kw_only=True)
class LateTrade:
    """A trade that came after its bar had closed and its grace had passed: it changes no bar, and
    is reported instead of dropped. ``bar_start`` is the start of the bar it belongs to."""

    trade: Trade
    bar_start: datetime
    lateness: timedelta  # how long after the end of its bar's grace it arrived, by the bar's clock


# The API interval of each fixed length (a week is a calendar interval: Monday to Monday).
_API_LENGTHS: dict[timedelta | SubscriptionInterval | None, SubscriptionInterval] = {
    length: interval
    for interval, length in INTERVAL_LENGTH.items()
    if interval is not SubscriptionInterval.SUBSCRIPTION_INTERVAL_WEEK
}
