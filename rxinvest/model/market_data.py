"""MarketDataStream messages: subscription requests, their results, and market events.

Prices are per one unit of the instrument (bonds and futures in points), quantities and volumes in
lots, times aware UTC. Absent message fields (prices, times) are ``None``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest.model.common import PingDelaySettings, int32
from rxinvest.model.enums import (
    CandleSource,
    CandleSourceFilter,
    LastPriceType,
    OrderBookType,
    SecurityTradingStatus,
    SubscriptionAction,
    SubscriptionInterval,
    SubscriptionStatus,
    TradeDirection,
    TradeSourceType,
)

__all__ = [
    "Candle",
    "CandleInstrument",
    "CandleSubscription",
    "GetMySubscriptions",
    "InfoInstrument",
    "InfoSubscription",
    "LastPrice",
    "LastPriceInstrument",
    "LastPriceSubscription",
    "MarketDataServerSideStreamRequest",
    "OpenInterest",
    "Order",
    "OrderBook",
    "OrderBookInstrument",
    "OrderBookSubscription",
    "SubscribeCandlesRequest",
    "SubscribeCandlesResponse",
    "SubscribeInfoRequest",
    "SubscribeInfoResponse",
    "SubscribeLastPriceRequest",
    "SubscribeLastPriceResponse",
    "SubscribeOrderBookRequest",
    "SubscribeOrderBookResponse",
    "SubscribeTradesRequest",
    "SubscribeTradesResponse",
    "Trade",
    "TradeInstrument",
    "TradeSubscription",
    "TradingStatus",
]

# --- requests -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class CandleInstrument:
    """One instrument of a candle subscription; ``instrument_id`` is a FIGI, uid or ``TICKER_CLASS``."""

    figi: str = ""  # deprecated by the API: use instrument_id
    interval: SubscriptionInterval = SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    instrument_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeCandlesRequest:
    """(Un)subscribe candles; ``waiting_close=True`` sends only closed candles."""

    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    instruments: tuple[CandleInstrument, ...] = ()
    waiting_close: bool = False
    candle_source_type: CandleSourceFilter | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderBookInstrument:
    """One instrument of a book subscription; ``depth`` is 1, 10, 20, 30, 40 or 50 levels."""

    figi: str = ""  # deprecated by the API: use instrument_id
    depth: int = int32()
    instrument_id: str = ""
    order_book_type: OrderBookType = OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeOrderBookRequest:
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    instruments: tuple[OrderBookInstrument, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class TradeInstrument:
    figi: str = ""  # deprecated by the API: use instrument_id
    instrument_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeTradesRequest:
    """(Un)subscribe anonymous trades; ``with_open_interest`` adds ``OpenInterest`` for futures."""

    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    instruments: tuple[TradeInstrument, ...] = ()
    trade_source: TradeSourceType = TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    with_open_interest: bool = False


@attrs.frozen(kw_only=True, weakref_slot=False)
class InfoInstrument:
    figi: str = ""  # deprecated by the API: use instrument_id
    instrument_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeInfoRequest:
    """(Un)subscribe trading statuses."""

    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    instruments: tuple[InfoInstrument, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class LastPriceInstrument:
    figi: str = ""  # deprecated by the API: use instrument_id
    instrument_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeLastPriceRequest:
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    instruments: tuple[LastPriceInstrument, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetMySubscriptions:
    """Ask for the active subscriptions; the answer is one ``Subscribe*Response`` per kind."""


@attrs.frozen(kw_only=True, weakref_slot=False)
class MarketDataServerSideStreamRequest:
    """The single request of MarketDataServerSideStream: every subscription kind at once."""

    subscribe_candles_request: SubscribeCandlesRequest | None = None
    subscribe_order_book_request: SubscribeOrderBookRequest | None = None
    subscribe_trades_request: SubscribeTradesRequest | None = None
    subscribe_info_request: SubscribeInfoRequest | None = None
    subscribe_last_price_request: SubscribeLastPriceRequest | None = None
    ping_settings: PingDelaySettings | None = None


# --- subscription results -------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class CandleSubscription:
    figi: str = ""
    interval: SubscriptionInterval = SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    subscription_status: SubscriptionStatus = SubscriptionStatus.SUBSCRIPTION_STATUS_UNSPECIFIED
    instrument_uid: str = ""
    waiting_close: bool = False
    stream_id: str = ""
    subscription_id: str = ""
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    candle_source_type: CandleSourceFilter | None = None
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeCandlesResponse:
    tracking_id: str = ""
    candles_subscriptions: tuple[CandleSubscription, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderBookSubscription:
    figi: str = ""
    depth: int = int32()
    subscription_status: SubscriptionStatus = SubscriptionStatus.SUBSCRIPTION_STATUS_UNSPECIFIED
    instrument_uid: str = ""
    stream_id: str = ""
    subscription_id: str = ""
    order_book_type: OrderBookType = OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeOrderBookResponse:
    tracking_id: str = ""
    order_book_subscriptions: tuple[OrderBookSubscription, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class TradeSubscription:
    figi: str = ""
    subscription_status: SubscriptionStatus = SubscriptionStatus.SUBSCRIPTION_STATUS_UNSPECIFIED
    instrument_uid: str = ""
    stream_id: str = ""
    subscription_id: str = ""
    with_open_interest: bool = False
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeTradesResponse:
    tracking_id: str = ""
    trade_subscriptions: tuple[TradeSubscription, ...] = ()
    trade_source: TradeSourceType = TradeSourceType.TRADE_SOURCE_UNSPECIFIED


@attrs.frozen(kw_only=True, weakref_slot=False)
class InfoSubscription:
    figi: str = ""
    subscription_status: SubscriptionStatus = SubscriptionStatus.SUBSCRIPTION_STATUS_UNSPECIFIED
    instrument_uid: str = ""
    stream_id: str = ""
    subscription_id: str = ""
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeInfoResponse:
    tracking_id: str = ""
    info_subscriptions: tuple[InfoSubscription, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class LastPriceSubscription:
    figi: str = ""
    subscription_status: SubscriptionStatus = SubscriptionStatus.SUBSCRIPTION_STATUS_UNSPECIFIED
    instrument_uid: str = ""
    stream_id: str = ""
    subscription_id: str = ""
    subscription_action: SubscriptionAction = SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscribeLastPriceResponse:
    tracking_id: str = ""
    last_price_subscriptions: tuple[LastPriceSubscription, ...] = ()


# --- market events --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class Candle:
    """An OHLCV candle; ``time`` is the start of its interval, ``volume*`` are in lots.

    Without ``waiting_close`` the server resends the forming candle as it changes (same ``time``)
    and may send corrective candles after the close: upsert by (instrument_uid, interval, time).
    """

    figi: str = ""
    interval: SubscriptionInterval = SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: int = 0
    time: datetime | None = None
    last_trade_ts: datetime | None = None
    instrument_uid: str = ""
    ticker: str = ""
    class_code: str = ""
    volume_buy: int = 0
    volume_sell: int = 0
    candle_source_type: CandleSource = CandleSource.CANDLE_SOURCE_UNSPECIFIED


@attrs.frozen(kw_only=True, weakref_slot=False)
class Trade:
    """An anonymous market trade; ``quantity`` in lots, ``time`` exchange time."""

    figi: str = ""
    direction: TradeDirection = TradeDirection.TRADE_DIRECTION_UNSPECIFIED
    price: Decimal | None = None
    quantity: int = 0
    time: datetime | None = None
    instrument_uid: str = ""
    trade_source: TradeSourceType = TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class Order:
    """One order-book level: a price per unit and a quantity in lots."""

    price: Decimal | None = None
    quantity: int = 0


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderBook:
    """A full order-book snapshot (not a delta); ``is_consistent=False`` means levels may be missing.

    ``bids`` are best (highest) first, ``asks`` best (lowest) first.
    """

    figi: str = ""
    depth: int = int32()
    is_consistent: bool = False
    bids: tuple[Order, ...] = ()
    asks: tuple[Order, ...] = ()
    time: datetime | None = None
    limit_up: Decimal | None = None
    limit_down: Decimal | None = None
    instrument_uid: str = ""
    order_book_type: OrderBookType = OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class TradingStatus:
    figi: str = ""
    trading_status: SecurityTradingStatus = SecurityTradingStatus.SECURITY_TRADING_STATUS_UNSPECIFIED
    time: datetime | None = None
    limit_order_available_flag: bool = False
    market_order_available_flag: bool = False
    instrument_uid: str = ""
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class LastPrice:
    figi: str = ""
    price: Decimal | None = None
    time: datetime | None = None
    ticker: str = ""
    class_code: str = ""
    instrument_uid: str = ""
    last_price_type: LastPriceType = LastPriceType.LAST_PRICE_UNSPECIFIED


@attrs.frozen(kw_only=True, weakref_slot=False)
class OpenInterest:
    """Open interest of a future (only with ``with_open_interest=True`` on the trades subscription)."""

    instrument_uid: str = ""
    time: datetime | None = None
    open_interest: int = 0
    ticker: str = ""
    class_code: str = ""
