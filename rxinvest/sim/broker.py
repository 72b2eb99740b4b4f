"""The simulator's account model: orders, fills, blocked funds, positions and portfolio valuation.

Sans-I/O and deterministic: no threads, sockets or clock reads. Time comes in as ``now`` (an aware
``datetime``, stored as UTC); randomness comes only from ``random.Random`` instances the broker owns,
seeded from ``seed``, so the same seed and the same calls give the same events. Money is exact
``Decimal`` in roubles (the only currency modelled); security quantities are in units (pieces).

Every mutating call returns the events a real broker would stream, in stream order, as model classes
(``OrderState`` for OrderStateStream, ``OrderTrades`` for TradesStream, ``PositionData`` for
PositionsStream); each carries its ``account_id`` so the server can route it.

Conventions (where the API docs are silent we do what a real broker does, and say so):

* **Prices.** ``OrderTrade.price``, limit prices and ``Quote`` prices are exchange prices per unit:
  roubles for shares and funds, percent of nominal for bonds. Every ``Money`` field is roubles: a
  bond unit is worth ``price / 100 * BOND_NOMINAL`` (nominal 1000 rub; accrued coupon interest is not
  modelled), see :func:`unit_value`. Orders, blocks, fills and the portfolio all use this one rule.
* **OrderState money fields.** ``order_price`` is the per-unit price (rub) the order rests at: the
  limit price, the counter-side touch for best-price orders, or the protective price of a market
  order. ``initial_order_price`` and ``amount`` are the whole order at that price
  (``order_price * lots_requested * lot_size``), which is also the money a buy blocks.
  ``executed_order_price`` is the money of all fills so far. The docs' sample (1 lot of 1 unit, all
  four equal) agrees with this reading.
* **Blocking.** An accepted buy moves ``order_price * lots * lot`` from available to blocked money;
  an accepted sell moves ``lots * lot`` units from balance to blocked. A fill first releases the
  filled lots' block, then settles at the fill price; a cancel releases what is left. So available
  money is never negative and there is no short selling or margin.
* **Commissions, taxes, session end.** Not modelled: fills settle at the fill price exactly, and
  ``TIME_IN_FORCE_DAY`` orders live until filled or cancelled.
* **Futures.** Not modelled (they need margin and variation margin): orders on futures are rejected
  with ``CAUSE_REJECTED_BY_BROKER`` and seeds may not hold them.
* **Outside trading.** :meth:`Broker.external` moves money in or out (a transfer, a dividend ...,
  recorded as a :class:`Movement`); :meth:`Broker.transfer_securities` moves units of a security in
  or out with no order, fill or money (a depository transfer, recorded as a
  :class:`SecuritiesMovement`). Units that come in join the average price at the last price the
  broker knows (as seeded holdings count at the opening price); units that go out leave it as is.
  Each emits the ``PositionData`` of what it changed; neither may take more than is free.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any, TypeAlias

import attrs

from rxinvest.errors import ConfigurationError
from rxinvest.model.common import Money
from rxinvest.model.enums import (
    MarkerType,
    OrderDirection,
    OrderExecutionReportStatus,
    OrderType,
    StatusCauseInfo,
    TimeInForceType,
)
from rxinvest.model.operations import (
    PortfolioPosition,
    PortfolioResponse,
    PositionData,
    PositionsMoney,
    PositionsResponse,
    PositionsSecurities,
)
from rxinvest.model.orders import OrderState, OrderTrade, OrderTrades
from rxinvest.sim.instruments import Instrument, InstrumentIndex
from rxinvest.sim.quote import Quote

__all__ = [
    "BOND_NOMINAL",
    "MARKET_PROTECTION",
    "RUB_FIGI",
    "AccountSeed",
    "Broker",
    "Event",
    "Fill",
    "Movement",
    "SecuritiesMovement",
    "default_accounts",
    "unit_value",
]

Event: TypeAlias = OrderState | OrderTrades | PositionData

BUY = OrderDirection.ORDER_DIRECTION_BUY
SELL = OrderDirection.ORDER_DIRECTION_SELL
_Status = OrderExecutionReportStatus
_Cause = StatusCauseInfo

RUB = "rub"
#: Nominal of every simulated bond, in roubles (real OFZ nominal); bond prices are percent of it.
BOND_NOMINAL = Decimal(1000)
#: A market order rests as a limit order this far beyond the touch at placement: a real market order
#: is bounded by the exchange's price limits and the broker must block money for its worst price, so
#: we bound it, and block at that protective price (our choice of band; the API does not state one).
MARKET_PROTECTION = Decimal("0.05")
#: The real FIGI of the rouble; ticker and class code are its real ones too, the uids are ours.
RUB_FIGI = "RUB000UTSTOM"
_RUB_CLASS_CODE = "CETS"
_RUB_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rxinvest-sim/{RUB_FIGI}"))
_RUB_POSITION_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, f"position/{_RUB_UID}"))
_NANO = Decimal("1e-9")  # the finest amount a Quotation / MoneyValue can carry
_EXCHANGE = "MOEX"
# Order and trade ids are counters, shaped like the real numeric ids.
_FIRST_ORDER_ID = 49_000_000_001
_FIRST_TRADE_ID = 7_600_000_001

# The automatic trader, per account and step: the chance it acts at all; when it acts, the chance
# it cancels its oldest active order rather than placing one; the share of market orders among those
# it places; the most lots per order; the most ticks a limit lies inside the book from the touch.
_TRADER_ACT = 0.15
_TRADER_CANCEL_SHARE = 0.3
_TRADER_MARKET_SHARE = 0.3
_TRADER_MAX_LOTS = 3
_TRADER_MAX_OFFSET = 4


def unit_value(instrument: Instrument, price: Decimal) -> Decimal:
    """Money (rub) of one unit at exchange price ``price``; bonds are quoted in percent of nominal."""
    if instrument.kind == "bond":
        return price * BOND_NOMINAL / 100
    return price


def _rub(amount: Decimal) -> Money:
    return Money(amount, RUB)


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigurationError(f"now must be an aware datetime, got {now!r}")
    return now.astimezone(UTC)


def _is_money(amount: object) -> bool:
    """A finite ``Decimal`` with at most 9 decimal places: what a MoneyValue can carry (checked exactly)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        return False
    _, digits, exponent = amount.as_tuple()
    excess = -int(exponent) - 9
    return excess <= 0 or not any(digits[-excess:])


def _frozen_mapping(securities: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(securities))


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@attrs.frozen
class AccountSeed:
    """Initial state of one account: ``money`` in roubles, ``securities`` as instrument id -> units.

    Instrument ids may be any form :class:`InstrumentIndex` resolves.
    """

    account_id: str
    money: Decimal
    securities: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)


@attrs.frozen
class Fill:
    """One execution of an order: ``lots`` and ``units`` (= lots * lot), exchange ``price`` per unit,
    ``amount`` the money (rub) that changed hands."""

    order_id: str
    trade_id: str
    instrument_uid: str
    direction: OrderDirection
    lots: int
    units: int
    price: Decimal
    amount: Decimal
    time: datetime


@attrs.frozen
class Movement:
    """Money (rub) that entered (+) or left (-) an account outside trading: dividend, transfer ..."""

    amount: Decimal
    kind: str
    time: datetime


@attrs.frozen
class SecuritiesMovement:
    """Units of a security that entered (+) or left (-) an account outside trading (a depository
    transfer): no order, no fill, no money."""

    instrument_uid: str
    units: int
    time: datetime


def default_accounts(instruments: Iterable[Instrument]) -> tuple[AccountSeed, ...]:
    """Two accounts: "2000000001" with 1 000 000 rub and 10 lots each of the first two shares, the
    first bond and the first fund found in ``instruments``; "2000000002" with 250 000 rub only."""
    catalogue = tuple(instruments)
    picks: list[Instrument] = []
    for kind, count in (("share", 2), ("bond", 1), ("etf", 1)):
        picks += [i for i in catalogue if i.kind == kind][:count]
    return (
        AccountSeed("2000000001", Decimal(1_000_000), {i.uid: 10 * i.lot for i in picks}),
        AccountSeed("2000000002", Decimal(250_000)),
    )


@attrs.define
class _Holding:
    """Units of one instrument: ``balance`` free, ``blocked`` by active sells; ``average`` rub per unit."""

    balance: int = 0
    blocked: int = 0
    average: Decimal = Decimal(0)

    @property
    def total(self) -> int:
        return self.balance + self.blocked


@attrs.define
class _Order:
    """An active order: its latest state and the exchange price per unit it rests at."""

    state: OrderState
    instrument: Instrument
    price: Decimal

    @property
    def is_buy(self) -> bool:
        return self.state.direction is BUY

    def block(self, lots: int) -> Decimal:
        """Money (rub) a buy blocks for ``lots`` lots."""
        return unit_value(self.instrument, self.price) * self.units(lots)

    def units(self, lots: int) -> int:
        return self.instrument.lot * lots

    def crosses(self, touch: Decimal) -> bool:
        return touch <= self.price if self.is_buy else touch >= self.price


@attrs.define
class _Account:
    account_id: str
    available: Decimal
    blocked: Decimal = Decimal(0)
    holdings: dict[str, _Holding] = attrs.field(factory=dict)  # by instrument uid
    states: dict[str, OrderState] = attrs.field(factory=dict)  # every order's latest state, by id
    fills: list[Fill] = attrs.field(factory=list)
    movements: list[Movement] = attrs.field(factory=list)
    securities_movements: list[SecuritiesMovement] = attrs.field(factory=list)

    def holding(self, uid: str) -> _Holding:
        return self.holdings.setdefault(uid, _Holding())

    @property
    def client_code(self) -> str:
        return f"SIM{self.account_id}"


class Broker:
    """The accounts of the simulated broker, driven by explicit calls (see the module docstring).

    ``accounts`` lists the account ids in seed order. Queries about an unknown account raise
    ``KeyError``; order calls for one answer with a rejection instead, like the API.
    :class:`~rxinvest.errors.ConfigurationError` (a ``ValueError``) means a bad argument: a naive
    ``now``, a quote for another instrument, a bad seed, an amount with no ``MoneyValue`` form, a
    securities transfer of an unknown instrument or of units that are not an ``int``.
    """

    def __init__(
        self, instruments: Iterable[Instrument], accounts: Iterable[AccountSeed], *, seed: int
    ) -> None:
        self._index = InstrumentIndex(instruments)
        self._accounts: dict[str, _Account] = {}
        for account_seed in accounts:
            self._accounts[account_seed.account_id] = self._open(account_seed)
        self.accounts: tuple[str, ...] = tuple(self._accounts)
        # Separate generators, so that e.g. asking the trader to act does not change later fill sizes.
        # String seeds are hashed with SHA-512: the same on every run, whatever PYTHONHASHSEED says.
        self._fill_rng = random.Random(f"{seed}/fills")
        self._id_rng = random.Random(f"{seed}/ids")
        self._trader_rngs = {
            account_id: random.Random(f"{seed}/trader/{account_id}") for account_id in self.accounts
        }
        self._order_ids = _FIRST_ORDER_ID
        self._trade_ids = _FIRST_TRADE_ID
        self._active: dict[str, _Order] = {}  # all accounts, placement order = time priority
        self._last_prices: dict[str, Decimal] = {}

    def _open(self, account_seed: AccountSeed) -> _Account:
        if not isinstance(account_seed, AccountSeed):
            raise ConfigurationError(f"accounts must be AccountSeed values, not {account_seed!r}")
        if account_seed.account_id in self._accounts:
            raise ConfigurationError(f"duplicate account {account_seed.account_id}")
        if not _is_money(account_seed.money) or account_seed.money < 0:
            raise ConfigurationError(
                f"{account_seed.account_id}: money {account_seed.money!r} is not a MoneyValue >= 0"
            )
        account = _Account(account_seed.account_id, account_seed.money)
        for instrument_id, units in account_seed.securities.items():
            instrument = self._index.get(instrument_id)
            if instrument is None or instrument.kind == "futures" or units < 0:
                raise ConfigurationError(f"{account_seed.account_id}: cannot hold {units} of {instrument_id}")
            holding = account.holding(instrument.uid)
            holding.balance += units
            # Seeded holdings count as bought at the instrument's opening price.
            holding.average = unit_value(instrument, instrument.price)
        return account

    # --- orders --------------------------------------------------------------------------------------

    def place_order(
        self,
        *,
        account_id: str,
        instrument_id: str,
        direction: OrderDirection,
        lots: int,
        order_type: OrderType = OrderType.ORDER_TYPE_LIMIT,
        price: Decimal | None = None,
        order_request_id: str | None = None,
        now: datetime,
        quote: Quote,
    ) -> list[Event]:
        """Validate and accept (or reject) an order; returns ``[OrderState NEW, PositionData]`` or
        ``[OrderState REJECTED]``.

        ``price`` is the exchange price per unit of a limit order (on the tick grid); market and
        best-price orders ignore it, like the API. ``quote`` is the market of that instrument now: it
        prices market orders (protective price ``MARKET_PROTECTION`` beyond the touch, or beyond the
        last price while the counter side is empty) and best-price orders (a limit at the counter-side
        touch, our reading of "best price"). Placement never fills: the next :meth:`on_market` does.

        Rejections: ``CAUSE_REJECTED_BY_BROKER`` for an unknown account or instrument, futures, an
        unspecified direction or type, ``lots <= 0``, a missing, non-positive or off-grid limit price;
        ``CAUSE_REJECTED_BY_EXCHANGE`` for a market or best-price order while trading is halted, or a
        best-price order with an empty counter side; ``CAUSE_CANCELLED_NOT_ENOUGH_POSITION`` for a
        buy beyond the available (unblocked) money or a sell beyond the free units. A rejected order
        has ``lots_cancelled == lots_requested`` and changes no balance.

        ``order_request_id`` is kept if it is a UUID, else replaced by a generated UUID (as the API
        does); it is not used to deduplicate. Raises :class:`~rxinvest.errors.ConfigurationError` for
        a naive ``now`` or a ``quote`` of another instrument.
        """
        now = _utc(now)
        account = self._accounts.get(account_id)
        instrument = self._index.get(instrument_id)
        if instrument is not None and quote.instrument_uid != instrument.uid:
            message = f"quote of {quote.instrument_uid} given for an order on {instrument.uid}"
            raise ConfigurationError(message)
        keep_request_id = order_request_id is not None and _is_uuid(order_request_id)
        state = OrderState(
            order_id=self._next_order_id(),
            order_request_id=order_request_id if keep_request_id else self._uuid(),
            client_code=account.client_code if account else "",
            created_at=now,
            execution_report_status=_Status.EXECUTION_REPORT_STATUS_NEW,
            ticker=instrument.ticker if instrument else "",
            class_code=instrument.class_code if instrument else "",
            lot_size=instrument.lot if instrument else 0,
            direction=direction,
            time_in_force=TimeInForceType.TIME_IN_FORCE_DAY,
            order_type=order_type,
            account_id=account_id,
            executed_order_price=_rub(Decimal(0)),
            currency=RUB,
            lots_requested=lots,
            lots_left=lots,
            marker=MarkerType.MARKER_UNKNOWN,
            exchange=_EXCHANGE,
            instrument_uid=instrument.uid if instrument else "",
        )
        if (
            account is None
            or instrument is None
            or instrument.kind == "futures"
            or direction not in (BUY, SELL)
            or order_type is OrderType.ORDER_TYPE_UNSPECIFIED
            or lots <= 0
        ):
            return self._reject(account, state, _Cause.CAUSE_REJECTED_BY_BROKER, now)
        resting = _resting_price(instrument, direction, order_type, price, quote)
        if isinstance(resting, StatusCauseInfo):
            return self._reject(account, state, resting, now)
        order_value = _rub(unit_value(instrument, resting) * instrument.lot * lots)
        state = _evolve(
            state,
            order_price=_rub(unit_value(instrument, resting)),
            initial_order_price=order_value,
            amount=order_value,
        )
        order = _Order(state, instrument, resting)
        shortfall = self._shortfall(account, order)
        if shortfall is not None:
            return self._reject(account, state, shortfall, now)
        return self._accept(account, order, now)

    def _reject(
        self, account: _Account | None, state: OrderState, cause: StatusCauseInfo, now: datetime
    ) -> list[Event]:
        state = _evolve(
            state,
            execution_report_status=_Status.EXECUTION_REPORT_STATUS_REJECTED,
            status_info=cause,
            lots_left=0,
            lots_cancelled=state.lots_requested,
            completion_time=now,
        )
        if account is not None:
            account.states[state.order_id] = state
        return [state]

    def _shortfall(self, account: _Account, order: _Order) -> StatusCauseInfo | None:
        """``CAUSE_CANCELLED_NOT_ENOUGH_POSITION`` when the account cannot cover ``order``'s block."""
        lots = order.state.lots_requested
        if order.is_buy:
            enough = order.block(lots) <= account.available
        else:
            enough = order.units(lots) <= account.holding(order.instrument.uid).balance
        return None if enough else _Cause.CAUSE_CANCELLED_NOT_ENOUGH_POSITION

    def _accept(self, account: _Account, order: _Order, now: datetime) -> list[Event]:
        self._block(account, order, order.state.lots_requested)
        self._active[order.state.order_id] = order
        account.states[order.state.order_id] = order.state
        return [order.state, self._block_changed(account, now, order)]

    def cancel_order(self, *, account_id: str, order_id: str, now: datetime) -> list[Event]:
        """Cancel an active order: ``[OrderState CANCELLED (CAUSE_CANCELLED_BY_CLIENT), PositionData]``.

        The unfilled lots move to ``lots_cancelled`` and their block is released. An unknown account
        or order, another account's order, or a finished one changes nothing and returns ``[]``: no
        order changed state, so nothing is streamed (the API answers such a CancelOrder with an
        error, which is the caller's to send).
        """
        now = _utc(now)
        order = self._active.get(order_id)
        if order is None or order.state.account_id != account_id:
            return []
        account = self._accounts[account_id]
        left = order.state.lots_left
        self._block(account, order, -left)
        state = _evolve(
            order.state,
            execution_report_status=_Status.EXECUTION_REPORT_STATUS_CANCELLED,
            status_info=_Cause.CAUSE_CANCELLED_BY_CLIENT,
            lots_left=0,
            lots_cancelled=order.state.lots_cancelled + left,
            completion_time=now,
        )
        self._finish(account, order, state)
        return [state, self._block_changed(account, now, order)]

    def _block(self, account: _Account, order: _Order, lots: int) -> None:
        """Block ``lots`` of ``order`` (release them if negative): a buy's money, a sell's units."""
        if order.is_buy:
            account.available -= order.block(lots)
            account.blocked += order.block(lots)
        else:
            holding = account.holding(order.instrument.uid)
            holding.balance -= order.units(lots)
            holding.blocked += order.units(lots)

    def _finish(self, account: _Account, order: _Order, state: OrderState) -> None:
        order.state = account.states[state.order_id] = state
        if state.lots_left == 0:
            del self._active[state.order_id]

    # --- the market ------------------------------------------------------------------------------

    def on_market(self, quotes: Mapping[str, Quote], now: datetime) -> list[Event]:
        """Match the active orders of all accounts against ``quotes`` (keyed by instrument uid), once.

        Orders go in placement order (time priority). A buy trades when the quote is tradable and
        ``best_ask <= order price`` (sells: ``best_bid >=``), at the touch, for
        ``min(lots left, size left at the touch, a seeded random 1..lots left)`` lots; the touch's
        size is shared by the orders of one step. Our orders take liquidity but do not change the
        market's book. Each fill emits ``OrderState`` (PARTIALLYFILL or FILL, cumulative ``trades``),
        ``OrderTrades`` (this fill) and ``PositionData`` (money and the instrument).
        """
        now = _utc(now)
        self._last_prices.update((uid, quote.last_price) for uid, quote in quotes.items())
        liquidity: dict[tuple[str, OrderDirection], int] = {}
        events: list[Event] = []
        for order in list(self._active.values()):
            quote = quotes.get(order.instrument.uid)
            if quote is None or not quote.tradable:
                continue
            touch, size = (
                (quote.best_ask, quote.ask_size) if order.is_buy else (quote.best_bid, quote.bid_size)
            )
            if touch is None or not order.crosses(touch):
                continue
            key = (order.instrument.uid, order.state.direction)
            size = liquidity.get(key, size)
            left = order.state.lots_left
            lots = min(left, size, self._fill_rng.randint(1, left))
            if lots <= 0:
                continue
            liquidity[key] = size - lots
            events += self._fill(order, lots, touch, now)
        return events

    def _fill(self, order: _Order, lots: int, price: Decimal, now: datetime) -> list[Event]:
        account = self._accounts[order.state.account_id]
        instrument = order.instrument
        units = order.units(lots)
        amount = unit_value(instrument, price) * units
        self._block(account, order, -lots)  # then settle at the fill price
        holding = account.holding(instrument.uid)
        if order.is_buy:
            # Average cost method: a buy blends in at its cost, a sell leaves the average unchanged.
            cost = holding.average * holding.total + amount
            holding.average = (cost / (holding.total + units)).quantize(_NANO, ROUND_HALF_EVEN)
            holding.balance += units
            account.available -= amount
        else:
            holding.balance -= units
            account.available += amount
            if holding.total == 0:
                holding.average = Decimal(0)
        trade = OrderTrade(date_time=now, price=price, quantity=units, trade_id=self._next_trade_id())
        account.fills.append(
            Fill(
                order_id=order.state.order_id,
                trade_id=trade.trade_id,
                instrument_uid=instrument.uid,
                direction=order.state.direction,
                lots=lots,
                units=units,
                price=price,
                amount=amount,
                time=now,
            )
        )
        left = order.state.lots_left - lots
        done = left == 0
        state = _evolve(
            order.state,
            execution_report_status=_Status.EXECUTION_REPORT_STATUS_FILL
            if done
            else _Status.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
            lots_executed=order.state.lots_executed + lots,
            lots_left=left,
            executed_order_price=_rub(_amount(order.state.executed_order_price) + amount),
            trades=(*order.state.trades, trade),
            completion_time=now if done else None,
        )
        self._finish(account, order, state)
        trades = OrderTrades(
            order_id=state.order_id,
            created_at=now,
            direction=state.direction,
            figi=instrument.figi,
            trades=(trade,),
            account_id=account.account_id,
            instrument_uid=instrument.uid,
        )
        return [state, trades, self._position_data(account, now, money=True, instrument=instrument)]

    # --- the automatic trader --------------------------------------------------------------------

    def trader_step(self, quotes: Mapping[str, Quote], now: datetime) -> list[Event]:
        """One step of each account's seeded automatic trader; returns the events of what it did.

        Per account it acts now and then; when it does, it either cancels its oldest active order or
        places a few lots on a random tradable non-futures instrument that has a quote: a sell when
        it holds a lot and a coin says so, else a buy; a market order, or a limit a few ticks inside
        the book from the counter-side touch (at the touch: marketable). Lots are capped by what the
        account can cover, so its orders are accepted; with nothing to cover it does nothing. The
        odds are the module's ``_TRADER_*`` constants.
        """
        now = _utc(now)
        events: list[Event] = []
        for account_id in self.accounts:
            rng = self._trader_rngs[account_id]
            if rng.random() >= _TRADER_ACT:
                continue
            account = self._accounts[account_id]
            mine = [order for order in self._active.values() if order.state.account_id == account_id]
            if mine and rng.random() < _TRADER_CANCEL_SHARE:
                events += self.cancel_order(account_id=account_id, order_id=mine[0].state.order_id, now=now)
                continue
            events += self._trader_order(account, rng, quotes, now)
        return events

    def _trader_order(
        self, account: _Account, rng: random.Random, quotes: Mapping[str, Quote], now: datetime
    ) -> list[Event]:
        candidates = [
            (instrument, quote)
            for instrument in self._index
            if instrument.kind != "futures"
            and (quote := quotes.get(instrument.uid)) is not None
            and quote.tradable
        ]
        if not candidates:
            return []
        instrument, quote = rng.choice(candidates)
        holding = account.holding(instrument.uid)
        direction = SELL if holding.balance >= instrument.lot and rng.random() < 0.5 else BUY
        if rng.random() < _TRADER_MARKET_SHARE:
            order_type, price = OrderType.ORDER_TYPE_MARKET, None
        else:
            order_type, price = OrderType.ORDER_TYPE_LIMIT, _near_touch(instrument, direction, quote, rng)
        resting = _resting_price(instrument, direction, order_type, price, quote)
        if isinstance(resting, StatusCauseInfo):
            return []
        if direction is BUY:
            coverable = int(account.available // (unit_value(instrument, resting) * instrument.lot))
        else:
            coverable = holding.balance // instrument.lot
        if coverable < 1:
            return []
        return self.place_order(
            account_id=account.account_id,
            instrument_id=instrument.uid,
            direction=direction,
            lots=rng.randint(1, min(_TRADER_MAX_LOTS, coverable)),
            order_type=order_type,
            price=price,
            now=now,
            quote=quote,
        )

    # --- money and securities from outside -------------------------------------------------------

    def external(
        self, *, account_id: str, amount: Decimal, now: datetime, kind: str = "transfer"
    ) -> list[Event]:
        """Money (rub) into (+) or out of (-) the account's available money: ``[PositionData]``.

        ``kind`` ("transfer", "dividend", "coupon", "tax" ...) is recorded in :meth:`movements`. A
        withdrawal beyond the available (unblocked) money is refused, like a real broker, and so is
        a zero amount: both return ``[]``. Raises ``KeyError`` for an unknown account and
        :class:`~rxinvest.errors.ConfigurationError` for an amount that is not a finite ``Decimal``
        with at most 9 decimal places.
        """
        now = _utc(now)
        account = self._accounts[account_id]
        if not _is_money(amount):
            raise ConfigurationError(f"amount {amount!r} has no MoneyValue form")
        if amount == 0 or account.available + amount < 0:
            return []
        account.available += amount
        account.movements.append(Movement(amount, kind, now))
        return [self._position_data(account, now, money=True)]

    def transfer_securities(
        self, *, account_id: str, instrument_uid: str, units: int, now: datetime
    ) -> list[Event]:
        """Units of a security into (+) or out of (-) the account's free balance, with no order, no
        fill and no money (a depository transfer): ``[PositionData]`` of that security.

        ``instrument_uid`` may be any id :class:`InstrumentIndex` resolves. Units that come in join
        the average price at the last price the broker knows (the last :meth:`on_market` saw, else
        the opening price); units that go out leave it unchanged. Recorded in
        :meth:`securities_movements`. A zero, or an outflow beyond the free (unblocked) units, is
        refused: ``[]``. Raises ``KeyError`` for an unknown account and
        :class:`~rxinvest.errors.ConfigurationError` for an unknown instrument, futures (not
        modelled) or ``units`` that are not an ``int``.
        """
        now = _utc(now)
        account = self._accounts[account_id]
        instrument = self._index.get(instrument_uid)
        if instrument is None or instrument.kind == "futures":
            raise ConfigurationError(
                f"cannot transfer {instrument_uid!r}: not a known security (futures are not modelled)"
            )
        if isinstance(units, bool) or not isinstance(units, int):
            raise ConfigurationError(f"units must be an int, not {units!r}")
        holding = account.holding(instrument.uid)
        if units == 0 or holding.balance + units < 0:
            return []
        if units > 0:
            cost = (
                holding.average * holding.total
                + unit_value(instrument, self._last_price(instrument, {})) * units
            )
            holding.average = (cost / (holding.total + units)).quantize(_NANO, ROUND_HALF_EVEN)
        holding.balance += units
        if holding.total == 0:
            holding.average = Decimal(0)
        account.securities_movements.append(SecuritiesMovement(instrument.uid, units, now))
        return [self._position_data(account, now, money=False, instrument=instrument)]

    # --- queries ---------------------------------------------------------------------------------

    def positions(self, account_id: str, now: datetime) -> PositionsResponse:
        """All positions of the account (the ``initial_positions`` snapshot); ``KeyError`` if unknown.

        ``money`` and ``blocked`` always hold one rouble entry each; ``securities`` lists, in
        catalogue order, the instruments with a non-zero balance or block. ``now`` is only checked
        (the snapshot carries no time).
        """
        _utc(now)
        account = self._accounts[account_id]
        return PositionsResponse(
            money=(_rub(account.available),),
            blocked=(_rub(account.blocked),),
            securities=tuple(self._securities(account, self._held(account))),
            account_id=account_id,
        )

    def portfolio(self, account_id: str, quotes: Mapping[str, Quote]) -> PortfolioResponse:
        """The account valued at last prices (rub); ``KeyError`` for an unknown account.

        A security's price is its quote's ``last_price``, else the last one :meth:`on_market` saw,
        else the instrument's opening price. Positions hold every security of :meth:`positions`
        (``quantity`` = balance + blocked units, ``blocked_lots`` = blocked units, as the contract
        text says) and then the rouble (instrument type "currency", all money, blocked included).
        ``expected_yield`` of a position is absolute, ``(current_price - average_position_price) *
        quantity`` in rub (what the real API returns); the portfolio's is percent of the securities'
        cost. FIFO prices, daily yields and accrued interest (``current_nkd`` 0 for bonds) are not
        modelled.
        """
        account = self._accounts[account_id]
        securities = [
            _valued(instrument, account.holdings[instrument.uid], self._last_price(instrument, quotes))
            for instrument in self._held(account)
        ]
        positions = (*securities, _rouble_position(account.available + account.blocked, account.blocked))
        totals: dict[str, Decimal] = {}  # by instrument type
        for position in positions:
            value = _amount(position.current_price) * _number(position.quantity)
            totals[position.instrument_type] = totals.get(position.instrument_type, Decimal(0)) + value
        profit = sum((_number(p.expected_yield) for p in securities), Decimal(0))
        cost = sum((_amount(p.average_position_price) * _number(p.quantity) for p in securities), Decimal(0))

        def total(kind: str) -> Money:
            return _rub(totals.get(kind, Decimal(0)))

        return PortfolioResponse(
            total_amount_shares=total("share"),
            total_amount_bonds=total("bond"),
            total_amount_etf=total("etf"),
            total_amount_currencies=total("currency"),
            total_amount_futures=total("futures"),
            expected_yield=(profit * 100 / cost).quantize(_NANO, ROUND_HALF_EVEN) if cost else Decimal(0),
            positions=positions,
            account_id=account_id,
            total_amount_options=total("option"),
            total_amount_sp=total("sp"),
            total_amount_portfolio=_rub(sum(totals.values(), Decimal(0))),
        )

    def _last_price(self, instrument: Instrument, quotes: Mapping[str, Quote]) -> Decimal:
        """The quote's last price, else the last one :meth:`on_market` saw, else the opening price."""
        quote = quotes.get(instrument.uid)
        if quote is not None:
            return quote.last_price
        return self._last_prices.get(instrument.uid, instrument.price)

    def order(self, account_id: str, order_id: str) -> OrderState | None:
        """Latest state of an order of the account (rejected ones included), ``None`` if unknown."""
        return self._accounts[account_id].states.get(order_id)

    def orders(self, account_id: str) -> tuple[OrderState, ...]:
        """Latest state of every order of the account (rejected ones included), oldest first."""
        return tuple(self._accounts[account_id].states.values())

    def active_orders(self, account_id: str) -> tuple[OrderState, ...]:
        """The account's orders that can still fill (NEW or PARTIALLYFILL), oldest first."""
        self._accounts[account_id]  # KeyError for an unknown account, like every query
        return tuple(order.state for order in self._active.values() if order.state.account_id == account_id)

    def fills(self, account_id: str) -> tuple[Fill, ...]:
        """Every fill of the account so far, oldest first."""
        return tuple(self._accounts[account_id].fills)

    def movements(self, account_id: str) -> tuple[Movement, ...]:
        """Every accepted :meth:`external` money movement of the account, oldest first."""
        return tuple(self._accounts[account_id].movements)

    def securities_movements(self, account_id: str) -> tuple[SecuritiesMovement, ...]:
        """Every accepted :meth:`transfer_securities` movement of the account, oldest first."""
        return tuple(self._accounts[account_id].securities_movements)

    # --- helpers ---------------------------------------------------------------------------------

    def _held(self, account: _Account) -> Iterator[Instrument]:
        """Instruments with units held or blocked, in catalogue order."""
        for instrument in self._index:
            holding = account.holdings.get(instrument.uid)
            if holding is not None and holding.total:
                yield instrument

    def _securities(
        self, account: _Account, instruments: Iterable[Instrument]
    ) -> Iterator[PositionsSecurities]:
        for instrument in instruments:
            holding = account.holding(instrument.uid)
            yield PositionsSecurities(
                figi=instrument.figi,
                blocked=holding.blocked,
                balance=holding.balance,
                position_uid=instrument.position_uid,
                instrument_uid=instrument.uid,
                ticker=instrument.ticker,
                class_code=instrument.class_code,
                instrument_type=instrument.kind,
            )

    def _position_data(
        self, account: _Account, now: datetime, *, money: bool, instrument: Instrument | None = None
    ) -> PositionData:
        """The positions one operation changed: the money if ``money``, and ``instrument``'s units."""
        return PositionData(
            account_id=account.account_id,
            money=(
                PositionsMoney(available_value=_rub(account.available), blocked_value=_rub(account.blocked)),
            )
            if money
            else (),
            securities=tuple(self._securities(account, [instrument] if instrument else [])),
            date=now,
        )

    def _block_changed(self, account: _Account, now: datetime, order: _Order) -> PositionData:
        """Placing or cancelling a buy moves money between available and blocked; a sell, units."""
        return self._position_data(
            account, now, money=order.is_buy, instrument=None if order.is_buy else order.instrument
        )

    def _next_order_id(self) -> str:
        self._order_ids += 1
        return str(self._order_ids - 1)

    def _next_trade_id(self) -> str:
        self._trade_ids += 1
        return str(self._trade_ids - 1)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))


def _evolve(state: OrderState, **changes: Any) -> OrderState:
    return attrs.evolve(state, **changes)


def _amount(money: Money | None) -> Decimal:
    return money.amount if money is not None else Decimal(0)


def _number(quotation: Decimal | None) -> Decimal:
    return quotation if quotation is not None else Decimal(0)


def _valued(instrument: Instrument, holding: _Holding, last_price: Decimal) -> PortfolioPosition:
    """A security's portfolio position at ``last_price`` (exchange price per unit)."""
    current = unit_value(instrument, last_price)
    return PortfolioPosition(
        figi=instrument.figi,
        instrument_type=instrument.kind,
        quantity=Decimal(holding.total),
        average_position_price=_rub(holding.average),
        expected_yield=(current - holding.average) * holding.total,
        current_nkd=_rub(Decimal(0)) if instrument.kind == "bond" else None,
        # Deprecated by the API but still sent: the average price in points, and lots.
        average_position_price_pt=holding.average,
        current_price=_rub(current),
        # FIFO and average-cost prices differ only after partial sales; the simulator keeps one.
        average_position_price_fifo=_rub(holding.average),
        quantity_lots=(Decimal(holding.total) / instrument.lot).quantize(_NANO),
        blocked_lots=Decimal(holding.blocked),
        position_uid=instrument.position_uid,
        instrument_uid=instrument.uid,
        ticker=instrument.ticker,
        class_code=instrument.class_code,
    )


def _rouble_position(money: Decimal, blocked: Decimal) -> PortfolioPosition:
    """All the account's roubles as a "currency" position, worth 1 rub each and never a yield."""
    return PortfolioPosition(
        figi=RUB_FIGI,
        instrument_type="currency",
        quantity=money,
        average_position_price=_rub(Decimal(1)),
        expected_yield=Decimal(0),
        average_position_price_pt=Decimal(1),
        current_price=_rub(Decimal(1)),
        average_position_price_fifo=_rub(Decimal(1)),
        quantity_lots=money,
        blocked_lots=blocked,
        position_uid=_RUB_POSITION_UID,
        instrument_uid=_RUB_UID,
        ticker=RUB_FIGI,
        class_code=_RUB_CLASS_CODE,
    )


def _on_grid(price: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (price / tick).to_integral_value(rounding) * tick


def _resting_price(
    instrument: Instrument,
    direction: OrderDirection,
    order_type: OrderType,
    price: Decimal | None,
    quote: Quote,
) -> Decimal | StatusCauseInfo:
    """The exchange price per unit an order rests at, or why it cannot be priced."""
    tick = instrument.min_price_increment
    if order_type is OrderType.ORDER_TYPE_LIMIT:
        if price is None or not price.is_finite() or price <= 0 or price % tick:
            return _Cause.CAUSE_REJECTED_BY_BROKER
        return price
    if not quote.tradable:
        return _Cause.CAUSE_REJECTED_BY_EXCHANGE
    buy = direction is BUY
    touch = quote.best_ask if buy else quote.best_bid
    if order_type is OrderType.ORDER_TYPE_BESTPRICE:
        return touch if touch is not None else _Cause.CAUSE_REJECTED_BY_EXCHANGE
    reference = touch if touch is not None else quote.last_price
    if buy:
        return _on_grid(reference * (1 + MARKET_PROTECTION), tick, ROUND_CEILING)
    return max(tick, _on_grid(reference * (1 - MARKET_PROTECTION), tick, ROUND_FLOOR))


def _near_touch(
    instrument: Instrument, direction: OrderDirection, quote: Quote, rng: random.Random
) -> Decimal:
    """A limit price 0.._TRADER_MAX_OFFSET ticks inside the book from the counter-side touch."""
    tick = instrument.min_price_increment
    offset = tick * rng.randint(0, _TRADER_MAX_OFFSET)
    if direction is BUY:
        base = quote.best_ask if quote.best_ask is not None else quote.last_price
        return max(tick, _on_grid(base, tick, ROUND_FLOOR) - offset)
    base = quote.best_bid if quote.best_bid is not None else quote.last_price
    return _on_grid(base, tick, ROUND_CEILING) + offset
