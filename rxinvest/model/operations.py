"""PortfolioStream and PositionsStream messages.

Position balances are in units (pieces), money is exact :class:`~rxinvest.model.Money`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest.model.common import Money, PingDelaySettings
from rxinvest.model.enums import PortfolioSubscriptionStatus, PositionsAccountSubscriptionStatus

__all__ = [
    "AccountSubscriptionStatus",
    "PortfolioPosition",
    "PortfolioResponse",
    "PortfolioStreamRequest",
    "PortfolioSubscriptionResult",
    "PositionData",
    "PositionsFutures",
    "PositionsMoney",
    "PositionsOptions",
    "PositionsResponse",
    "PositionsSecurities",
    "PositionsStreamRequest",
    "PositionsSubscriptionResult",
    "PositionsSubscriptionStatus",
    "VirtualPortfolioPosition",
]


@attrs.frozen(kw_only=True, weakref_slot=False)
class PortfolioStreamRequest:
    accounts: tuple[str, ...] = ()
    ping_settings: PingDelaySettings | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsStreamRequest:
    """Subscribe to positions; ``with_initial_positions`` sends a ``PositionsResponse`` snapshot first."""

    accounts: tuple[str, ...] = ()
    with_initial_positions: bool = False
    ping_settings: PingDelaySettings | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class AccountSubscriptionStatus:
    account_id: str = ""
    subscription_status: PortfolioSubscriptionStatus = (
        PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_UNSPECIFIED
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class PortfolioSubscriptionResult:
    accounts: tuple[AccountSubscriptionStatus, ...] = ()
    tracking_id: str = ""
    stream_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PortfolioPosition:
    """A portfolio position; ``quantity`` in units (may be fractional), prices per unit."""

    figi: str = ""
    instrument_type: str = ""
    quantity: Decimal | None = None
    average_position_price: Money | None = None
    expected_yield: Decimal | None = None
    current_nkd: Money | None = None
    average_position_price_pt: Decimal | None = None  # deprecated by the API
    current_price: Money | None = None
    average_position_price_fifo: Money | None = None
    quantity_lots: Decimal | None = None  # deprecated by the API
    blocked: bool = False
    blocked_lots: Decimal | None = None
    position_uid: str = ""
    instrument_uid: str = ""
    var_margin: Money | None = None
    expected_yield_fifo: Decimal | None = None
    daily_yield: Money | None = None
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class VirtualPortfolioPosition:
    position_uid: str = ""
    instrument_uid: str = ""
    figi: str = ""
    instrument_type: str = ""
    quantity: Decimal | None = None
    average_position_price: Money | None = None
    expected_yield: Decimal | None = None
    expected_yield_fifo: Decimal | None = None
    expire_date: datetime | None = None
    current_price: Money | None = None
    average_position_price_fifo: Money | None = None
    daily_yield: Money | None = None
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PortfolioResponse:
    """A full portfolio snapshot of one account; yields in percent, totals in the account currency."""

    total_amount_shares: Money | None = None
    total_amount_bonds: Money | None = None
    total_amount_etf: Money | None = None
    total_amount_currencies: Money | None = None
    total_amount_futures: Money | None = None
    expected_yield: Decimal | None = None
    positions: tuple[PortfolioPosition, ...] = ()
    account_id: str = ""
    total_amount_options: Money | None = None
    total_amount_sp: Money | None = None
    total_amount_portfolio: Money | None = None
    virtual_positions: tuple[VirtualPortfolioPosition, ...] = ()
    daily_yield: Money | None = None
    daily_yield_relative: Decimal | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsSubscriptionStatus:
    account_id: str = ""
    subscription_status: PositionsAccountSubscriptionStatus = (
        PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_UNSPECIFIED
    )


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsSubscriptionResult:
    accounts: tuple[PositionsSubscriptionStatus, ...] = ()
    tracking_id: str = ""
    stream_id: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsMoney:
    available_value: Money | None = None
    blocked_value: Money | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsSecurities:
    """Securities balance in units: ``balance`` is unblocked, ``blocked`` held by active orders."""

    figi: str = ""
    blocked: int = 0
    balance: int = 0
    position_uid: str = ""
    instrument_uid: str = ""
    ticker: str = ""
    class_code: str = ""
    exchange_blocked: bool = False
    instrument_type: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsFutures:
    figi: str = ""
    blocked: int = 0
    balance: int = 0
    position_uid: str = ""
    instrument_uid: str = ""
    ticker: str = ""
    class_code: str = ""


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsOptions:
    position_uid: str = ""
    instrument_uid: str = ""
    ticker: str = ""
    class_code: str = ""
    blocked: int = 0
    balance: int = 0


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionData:
    """Positions changed by one operation at ``date`` (PositionsStream ``position``)."""

    account_id: str = ""
    money: tuple[PositionsMoney, ...] = ()
    securities: tuple[PositionsSecurities, ...] = ()
    futures: tuple[PositionsFutures, ...] = ()
    options: tuple[PositionsOptions, ...] = ()
    date: datetime | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PositionsResponse:
    """All positions of an account (PositionsStream ``initial_positions``); money as plain lists."""

    money: tuple[Money, ...] = ()
    blocked: tuple[Money, ...] = ()
    securities: tuple[PositionsSecurities, ...] = ()
    limits_loading_in_progress: bool = False
    futures: tuple[PositionsFutures, ...] = ()
    options: tuple[PositionsOptions, ...] = ()
    account_id: str = ""


@attrs.frozen
class PerAccountAnswer:
    """How PortfolioStream or PositionsStream answers its request: a ``result`` of one ``entry``
    (``account_id``, ``subscription_status``) per account, ``granted`` or ``refused``."""

    result: Callable[..., object]
    entry: Callable[..., object]
    granted: object
    refused: object


#: The answer of each account stream that answers account by account, by its method name (the
#: others answer with one ``SubscriptionResponse``); the simulator and the bus gateway write them
#: from this table.
PER_ACCOUNT_ANSWERS: dict[str, PerAccountAnswer] = {
    "PortfolioStream": PerAccountAnswer(
        PortfolioSubscriptionResult,
        AccountSubscriptionStatus,
        PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS,
        PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND,
    ),
    "PositionsStream": PerAccountAnswer(
        PositionsSubscriptionResult,
        PositionsSubscriptionStatus,
        PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS,
        PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND,
    ),
}
