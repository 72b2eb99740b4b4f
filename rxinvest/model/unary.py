"""Requests and answers of the unary methods gap recovery calls (OrdersService, OperationsService).

They travel as JSON over HTTP, not over a stream (see :class:`rxinvest.wire.Unary`). GetPositions is
answered by :class:`~rxinvest.model.PositionsResponse` and GetPortfolio by
:class:`~rxinvest.model.PortfolioResponse`, the classes the streams use: the unary messages have the
same fields, ``account_id`` included.

Two proto field names are Python keywords, ``from`` and ``yield``: their attributes are ``from_`` and
``yield_`` (PEP 8's trailing underscore), and the codec writes and reads them under the proto name.
Quantities are in lots where the name says lots (``lots_*``, ``OrderStage.quantity``), else in units.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest.model.common import Money, int32
from rxinvest.model.enums import (
    CurrencyRequest,
    InstrumentType,
    OperationState,
    OperationType,
    OrderDirection,
    OrderExecutionReportStatus,
    OrderIdType,
    OrderType,
    PriceType,
)

__all__ = [
    "ChildOperationItem",
    "GetOperationsByCursorRequest",
    "GetOperationsByCursorResponse",
    "GetOrderStateRequest",
    "GetOrdersRequest",
    "GetOrdersRequestFilters",
    "GetOrdersResponse",
    "GetPositionsRequest",
    "OperationItem",
    "OperationItemTrade",
    "OperationItemTrades",
    "OrderSnapshot",
    "OrderStage",
    "PortfolioRequest",
]


# --- OrdersService -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOrdersRequestFilters:
    """Narrows GetOrders to orders created in ``[from_, to)`` (UTC) with one of ``execution_status``.

    The API applies ``from_`` and ``to`` only to orders created today (its trading day): an order
    created on an earlier day is in no filtered answer. Empty ``execution_status`` means any status.
    Proto ``GetOrdersRequest.GetOrdersRequestFilters`` (contracts release 1.40).
    """

    from_: datetime | None = None
    to: datetime | None = None
    execution_status: tuple[OrderExecutionReportStatus, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOrdersRequest:
    """The orders of ``account_id`` (answered by :class:`GetOrdersResponse`): the active ones, or,
    with ``advanced_filters``, today's orders that match them, final ones included."""

    account_id: str = ""
    advanced_filters: GetOrdersRequestFilters | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOrderStateRequest:
    """The state of one order of ``account_id``, active or final (answered by :class:`OrderSnapshot`).

    ``order_id`` is the exchange order id unless ``order_id_type`` says it is the client's
    ``order_request_id``; ``price_type`` asks for prices in points (futures, bonds) or currency.
    """

    account_id: str = ""
    order_id: str = ""
    price_type: PriceType = PriceType.PRICE_TYPE_UNSPECIFIED
    order_id_type: OrderIdType | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderStage:
    """One fill of an order: ``price`` per unit (multiply by the lot size for a lot), ``quantity`` in lots."""

    price: Money | None = None
    quantity: int = 0
    trade_id: str = ""
    execution_time: datetime | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OrderSnapshot:
    """An order as OrdersService reports it (proto ``OrderState`` of GetOrderState and GetOrders).

    Named apart from :class:`~rxinvest.model.OrderState`, the OrderStateStream event, whose fields
    differ. Lots are in lots; ``initial_order_price`` is the whole order at its price,
    ``initial_security_price`` the price of one unit, ``executed_order_price`` what the fills cost,
    ``total_order_amount`` that with commissions; ``stages`` are the fills.
    """

    order_id: str = ""
    execution_report_status: OrderExecutionReportStatus = (
        OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_UNSPECIFIED
    )
    lots_requested: int = 0
    lots_executed: int = 0
    initial_order_price: Money | None = None
    executed_order_price: Money | None = None
    total_order_amount: Money | None = None
    average_position_price: Money | None = None
    initial_commission: Money | None = None
    executed_commission: Money | None = None
    figi: str = ""
    direction: OrderDirection = OrderDirection.ORDER_DIRECTION_UNSPECIFIED
    initial_security_price: Money | None = None
    stages: tuple[OrderStage, ...] = ()
    service_commission: Money | None = None
    currency: str = ""
    order_type: OrderType = OrderType.ORDER_TYPE_UNSPECIFIED
    order_date: datetime | None = None
    instrument_uid: str = ""
    order_request_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOrdersResponse:
    """The account's active orders, or those the request's filters chose."""

    orders: tuple[OrderSnapshot, ...] = ()


# --- OperationsService -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetPositionsRequest:
    """The positions of ``account_id`` (answered by :class:`~rxinvest.model.PositionsResponse`)."""

    account_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PortfolioRequest:
    """The portfolio of ``account_id`` (answered by :class:`~rxinvest.model.PortfolioResponse`),
    valued in ``currency`` (``None``: the API's default, roubles)."""

    account_id: str = ""
    currency: CurrencyRequest | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOperationsByCursorRequest:
    """One page of the operations of ``account_id``, answered by :class:`GetOperationsByCursorResponse`.

    Every filter is optional: ``instrument_id`` (a FIGI or instrument uid; "" for all), the period
    ``from_`` .. ``to`` (UTC instants; the attribute ``from_`` is the proto field ``from``), the
    ``operation_types`` (empty for all) and ``state``. ``cursor`` is the ``next_cursor`` of the page
    before ("" for the first page); ``limit`` is the page size (the API's default 100, at most 1000).
    ``without_commissions``, ``without_trades`` and ``without_overnights`` leave out commission
    operations, the trades of each operation and overnight operations.
    """

    account_id: str = ""
    instrument_id: str = ""
    from_: datetime | None = None
    to: datetime | None = None
    cursor: str = ""
    limit: int | None = int32(None)
    operation_types: tuple[OperationType, ...] = ()
    state: OperationState | None = None
    without_commissions: bool | None = None
    without_trades: bool | None = None
    without_overnights: bool | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OperationItemTrade:
    """One trade of an operation: ``num`` is the trade id, ``quantity`` in units, ``price`` per unit."""

    num: str = ""
    date: datetime | None = None
    quantity: int = 0
    price: Money | None = None
    yield_: Money | None = None
    yield_relative: Decimal | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OperationItemTrades:
    trades: tuple[OperationItemTrade, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class ChildOperationItem:
    """A part of an operation that concerns another instrument, and its payment."""

    instrument_uid: str = ""
    payment: Money | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class OperationItem:
    """One account operation (a trade, a transfer, a dividend, a tax ...).

    ``id`` may change over time, says the API, and no field links an operation to the order that
    caused it. ``cursor`` is this item's position in the listing. ``payment`` is the money the
    account received (+) or paid (-); ``price`` is per unit; quantities are in units
    (``quantity_rest`` not executed, ``quantity_done`` executed); ``yield_`` (proto ``yield``) and
    ``yield_relative`` are the operation's result, absolute and relative.
    """

    cursor: str = ""
    broker_account_id: str = ""
    id: str = ""
    parent_operation_id: str = ""
    name: str = ""
    date: datetime | None = None
    type: OperationType = OperationType.OPERATION_TYPE_UNSPECIFIED
    description: str = ""
    state: OperationState = OperationState.OPERATION_STATE_UNSPECIFIED
    instrument_uid: str = ""
    figi: str = ""
    instrument_type: str = ""
    instrument_kind: InstrumentType = InstrumentType.INSTRUMENT_TYPE_UNSPECIFIED
    position_uid: str = ""
    payment: Money | None = None
    price: Money | None = None
    commission: Money | None = None
    yield_: Money | None = None
    yield_relative: Decimal | None = None
    accrued_int: Money | None = None
    quantity: int = 0
    quantity_rest: int = 0
    quantity_done: int = 0
    cancel_date_time: datetime | None = None
    cancel_reason: str = ""
    trades_info: OperationItemTrades | None = None
    asset_uid: str = ""
    child_operations: tuple[ChildOperationItem, ...] = ()


@attrs.frozen(kw_only=True, weakref_slot=False)
class GetOperationsByCursorResponse:
    """One page of operations; when ``has_next``, ask again with ``cursor=next_cursor``."""

    has_next: bool = False
    next_cursor: str = ""
    items: tuple[OperationItem, ...] = ()
