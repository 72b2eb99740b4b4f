"""OrderStateStream and TradesStream (deprecated) messages."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest.model.common import Money, int32
from rxinvest.model.enums import (
    MarkerType,
    OrderDirection,
    OrderExecutionReportStatus,
    OrderType,
    ResultSubscriptionStatus,
    StatusCauseInfo,
    TimeInForceType,
)

__all__ = [
    "ErrorDetail",
    "OrderState",
    "OrderStateStreamRequest",
    "OrderTrade",
    "OrderTrades",
    "SubscriptionResponse",
    "TradesStreamRequest",
]


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderStateStreamRequest:
    """Subscribe to order states of ``accounts``; ``ping_delay_millis`` is 1 000-120 000 ms."""

    accounts: tuple[str, ...] = ()
    ping_delay_millis: int | None = int32(None)


@attrs.frozen(kw_only=True, weakref_slot=False)
class TradesStreamRequest:
    """Subscribe to order fills of ``accounts`` (deprecated stream); ``ping_delay_ms`` 5 000-180 000."""

    accounts: tuple[str, ...] = ()
    ping_delay_ms: int | None = int32(None)


@attrs.frozen(kw_only=True, weakref_slot=False)
class ErrorDetail:
    """Why an account subscription failed; ``code`` is an API error code as text."""

    code: str = ""
    message: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class SubscriptionResponse:
    """Result of an OrderStateStream / TradesStream subscription."""

    tracking_id: str = ""
    status: ResultSubscriptionStatus = ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_UNSPECIFIED
    stream_id: str = ""
    accounts: tuple[str, ...] = ()
    error: ErrorDetail | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderTrade:
    """One fill: price per unit; ``quantity`` in units (pieces) per the contract, not lots."""

    date_time: datetime | None = None
    price: Decimal | None = None
    quantity: int = 0
    trade_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderTrades:
    """Fills of one order (TradesStream)."""

    order_id: str = ""
    created_at: datetime | None = None
    direction: OrderDirection = OrderDirection.ORDER_DIRECTION_UNSPECIFIED
    figi: str = ""
    trades: tuple[OrderTrade, ...] = ()
    account_id: str = ""
    instrument_uid: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderState:
    """One status change of an order (proto ``OrderStateStreamResponse.OrderState``).

    Not the unary ``OrderState`` of GetOrderState. Lots are in lots; ``lot_size`` converts to units.
    The first event for an order may carry a broker-internal ``order_id``.
    """

    order_id: str = ""
    order_request_id: str | None = None
    client_code: str = ""
    created_at: datetime | None = None
    execution_report_status: OrderExecutionReportStatus = (
        OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_UNSPECIFIED
    )
    status_info: StatusCauseInfo | None = None
    ticker: str = ""
    class_code: str = ""
    lot_size: int = int32()
    direction: OrderDirection = OrderDirection.ORDER_DIRECTION_UNSPECIFIED
    time_in_force: TimeInForceType = TimeInForceType.TIME_IN_FORCE_UNSPECIFIED
    order_type: OrderType = OrderType.ORDER_TYPE_UNSPECIFIED
    account_id: str = ""
    initial_order_price: Money | None = None
    order_price: Money | None = None
    amount: Money | None = None
    executed_order_price: Money | None = None
    currency: str = ""
    lots_requested: int = 0
    lots_executed: int = 0
    lots_left: int = 0
    lots_cancelled: int = 0
    marker: MarkerType | None = None
    trades: tuple[OrderTrade, ...] = ()
    completion_time: datetime | None = None
    exchange: str = ""
    instrument_uid: str = ""
