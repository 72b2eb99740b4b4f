"""Candles from trades: interval alignment and the fold of one trade into a candle.

Intervals are aligned to 00:00 UTC (the API aligns 2 h and 4 h stream candles that way); weeks start
on Monday, months on the 1st. All functions are pure and take aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.model import Candle, CandleSource, SubscriptionInterval, Trade, TradeDirection
from rxinvest.model.kinds import INTERVAL_LENGTH

__all__ = ["INTERVAL_LENGTH", "apply_trade", "interval_end", "interval_start"]

_I = SubscriptionInterval


def interval_start(time: datetime, interval: SubscriptionInterval) -> datetime:
    """Start of the ``interval`` that contains ``time`` (UTC). Raises ConfigurationError for
    UNSPECIFIED."""
    time = time.astimezone(UTC)
    if interval is _I.SUBSCRIPTION_INTERVAL_MONTH:
        return time.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if interval is _I.SUBSCRIPTION_INTERVAL_WEEK:
        day = time.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=day.weekday())
    length = INTERVAL_LENGTH.get(interval)
    if length is None:
        raise ConfigurationError(f"no candles for {interval.name}")
    midnight = time.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((time - midnight) // length) * length


def interval_end(start: datetime, interval: SubscriptionInterval) -> datetime:
    """The first instant after the interval that begins at ``start``."""
    if interval is _I.SUBSCRIPTION_INTERVAL_MONTH:
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + INTERVAL_LENGTH[interval]


def apply_trade(candle: Candle | None, trade: Trade, interval: SubscriptionInterval) -> Candle:
    """The candle of ``trade``'s interval after ``trade``: a new one if ``candle`` is None or older.

    A trade from an interval before ``candle``'s cannot be applied to it, and a trade without a time
    or a price makes no candle: both raise DataIntegrityError. A trade that is older than the
    candle's last trade (a late print) still counts, but does not change the close.
    """
    if trade.time is None or trade.price is None:
        raise DataIntegrityError(
            "a trade without time or price cannot make a candle", instrument=trade.instrument_uid
        )
    start = interval_start(trade.time, interval)
    buy = trade.quantity if trade.direction is TradeDirection.TRADE_DIRECTION_BUY else 0
    sell = trade.quantity if trade.direction is TradeDirection.TRADE_DIRECTION_SELL else 0
    if candle is None or candle.time is None or start > candle.time:
        return Candle(
            figi=trade.figi,
            interval=interval,
            open=trade.price,
            high=trade.price,
            low=trade.price,
            close=trade.price,
            volume=trade.quantity,
            time=start,
            last_trade_ts=trade.time,
            instrument_uid=trade.instrument_uid,
            ticker=trade.ticker,
            class_code=trade.class_code,
            volume_buy=buy,
            volume_sell=sell,
            candle_source_type=CandleSource.CANDLE_SOURCE_EXCHANGE,
        )
    if start < candle.time:
        raise DataIntegrityError(
            f"trade at {trade.time} is before the candle starting {candle.time}",
            instrument=trade.instrument_uid,
        )
    assert candle.high is not None
    assert candle.low is not None
    latest = candle.last_trade_ts is None or trade.time >= candle.last_trade_ts
    return Candle(
        figi=candle.figi,
        interval=interval,
        open=candle.open,
        high=max(candle.high, trade.price),
        low=min(candle.low, trade.price),
        close=trade.price if latest else candle.close,
        volume=candle.volume + trade.quantity,
        time=candle.time,
        last_trade_ts=trade.time if latest else candle.last_trade_ts,
        instrument_uid=candle.instrument_uid,
        ticker=candle.ticker,
        class_code=candle.class_code,
        volume_buy=candle.volume_buy + buy,
        volume_sell=candle.volume_sell + sell,
        candle_source_type=candle.candle_source_type,
    )
