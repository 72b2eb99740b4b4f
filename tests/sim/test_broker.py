"""The simulator's account model: accept/reject, fills, blocks, cancels, money movements, valuation.

Property tests drive a broker with random order scripts against a seeded random market and check
after every step that the books balance exactly, nothing goes negative, every event has a wire form,
the streamed positions agree with the snapshots, and the same seed gives the same events.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.sim.broker import (
    MARKET_PROTECTION,
    RUB_FIGI,
    AccountSeed,
    Broker,
    Event,
    default_accounts,
    unit_value,
)
from rxinvest.sim.instruments import CATALOGUE, Instrument, InstrumentIndex
from rxinvest.sim.quote import Quote

BUY = m.OrderDirection.ORDER_DIRECTION_BUY
SELL = m.OrderDirection.ORDER_DIRECTION_SELL
LIMIT = m.OrderType.ORDER_TYPE_LIMIT
MARKET = m.OrderType.ORDER_TYPE_MARKET
BESTPRICE = m.OrderType.ORDER_TYPE_BESTPRICE
Status = m.OrderExecutionReportStatus
Cause = m.StatusCauseInfo

T0 = datetime(2025, 1, 6, 7, 0, tzinfo=UTC)
INDEX = InstrumentIndex(CATALOGUE)
SBER = INDEX["SBER_TQBR"]  # lot 10, tick 0.01
LKOH = INDEX["LKOH_TQBR"]  # lot 1, tick 0.5
OFZ = INDEX["SU26238RMFS4_TQOB"]  # bond, price in percent
TMOS = INDEX["TMOS_TQTF"]
SI = INDEX["SiZ5_SPBFUT"]  # futures: not modelled
SEEDS = default_accounts(CATALOGUE)
A, B = (seed.account_id for seed in SEEDS)
UNKNOWN_ACCOUNT = "2999999999"


def quote(
    instrument: Instrument,
    bid: str | None = None,
    ask: str | None = None,
    *,
    size: int = 100,
    last: str | None = None,
    tradable: bool = True,
) -> Quote:
    """A quote of ``instrument``; prices as text, ``last`` defaults to the instrument's opening price."""
    return Quote(
        instrument_uid=instrument.uid,
        best_bid=Decimal(bid) if bid is not None else None,
        best_ask=Decimal(ask) if ask is not None else None,
        bid_size=size,
        ask_size=size,
        last_price=Decimal(last) if last is not None else instrument.price,
        tradable=tradable,
    )


def rub(amount: str | int | Decimal) -> m.Money:
    return m.Money(Decimal(amount), "rub")


def new_broker(seed: int = 1) -> Broker:
    return Broker(CATALOGUE, SEEDS, seed=seed)


def buy_sber(
    broker: Broker,
    lots: int = 5,
    price: str = "285.40",
    now: datetime = T0,
    order_request_id: str | None = None,
) -> list[Event]:
    """Account A buys SBER (bid 285.30, ask 285.40) with a limit order."""
    return broker.place_order(
        account_id=A,
        instrument_id=SBER.figi,
        direction=BUY,
        lots=lots,
        price=Decimal(price),
        order_request_id=order_request_id,
        now=now,
        quote=quote(SBER, "285.30", "285.40"),
    )


def placed(events: Sequence[Event]) -> m.OrderState:
    """The order state a placement answered with first."""
    state = events[0]
    assert isinstance(state, m.OrderState)
    return state


def latest(broker: Broker, account_id: str, order_id: str) -> m.OrderState:
    state = broker.order(account_id, order_id)
    assert state is not None
    return state


def only(events: Sequence[Event], cls: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, cls)]


def money_of(broker: Broker, account_id: str) -> tuple[Decimal, Decimal]:
    """(available, blocked) roubles of the account's snapshot."""
    snapshot = broker.positions(account_id, T0)
    return snapshot.money[0].amount, snapshot.blocked[0].amount


def units_of(broker: Broker, account_id: str, instrument: Instrument) -> tuple[int, int]:
    """(balance, blocked) units of the account's snapshot; (0, 0) when not listed."""
    for security in broker.positions(account_id, T0).securities:
        if security.instrument_uid == instrument.uid:
            return security.balance, security.blocked
    return 0, 0


# --- the seeded random market of the property tests ----------------------------------------------


class Tape:
    """A seeded random market: each instrument's mid walks on its tick grid, the spread is 1-3 ticks,
    touch sizes 0-20 lots; now and then a side is empty or trading is halted."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.mids = {i.uid: int(i.price / i.min_price_increment) for i in CATALOGUE}
        self.quotes = self.step()

    def step(self) -> dict[str, Quote]:
        rng, quotes = self.rng, {}
        for instrument in CATALOGUE:
            tick = instrument.min_price_increment
            mid = self.mids[instrument.uid] = max(20, self.mids[instrument.uid] + rng.randint(-3, 3))
            tradable = rng.random() > 0.05
            bid = (mid - rng.randint(0, 1)) * tick if tradable and rng.random() > 0.05 else None
            ask = (mid + rng.randint(1, 2)) * tick if tradable and rng.random() > 0.05 else None
            quotes[instrument.uid] = Quote(
                instrument.uid, bid, ask, rng.randint(0, 20), rng.randint(0, 20), mid * tick, tradable
            )
        self.quotes = quotes
        return quotes


# --- invariants ------------------------------------------------------------------------------------


def check_event(event: Event) -> None:
    wire.encode(event)  # has a wire form: 9 decimal places at most, ints in range, aware times
    if isinstance(event, m.OrderState):
        assert event.lots_executed + event.lots_left + event.lots_cancelled == event.lots_requested
        assert event.lots_executed >= 0 and event.lots_left >= 0
        assert sum(trade.quantity for trade in event.trades) == event.lots_executed * event.lot_size
    elif isinstance(event, m.PositionData):
        for money in event.money:
            assert money.available_value and money.available_value.amount >= 0
            assert money.blocked_value and money.blocked_value.amount >= 0
        assert all(s.balance >= 0 and s.blocked >= 0 for s in event.securities)


def check_account(
    broker: Broker, seed: AccountSeed, events: Sequence[Event], quotes: Mapping[str, Quote]
) -> None:
    account_id = seed.account_id
    snapshot = broker.positions(account_id, T0)
    wire.encode(snapshot)
    available, blocked = money_of(broker, account_id)
    assert available >= 0 and blocked >= 0
    fills = broker.fills(account_id)

    # Money: what came in, less what trading and movements took out, to the kopeck and beyond.
    traded = sum((f.amount if f.direction is SELL else -f.amount for f in fills), Decimal(0))
    moved = sum((movement.amount for movement in broker.movements(account_id)), Decimal(0))
    assert available + blocked == seed.money + traded + moved
    assert all(f.amount == unit_value(INDEX[f.instrument_uid], f.price) * f.units for f in fills)

    # Units: balance + blocked is the seed plus signed fills; blocks match the active orders exactly.
    active = broker.active_orders(account_id)
    for instrument in CATALOGUE:
        balance, held_back = units_of(broker, account_id, instrument)
        signed = sum(
            f.units if f.direction is BUY else -f.units for f in fills if f.instrument_uid == instrument.uid
        )
        assert balance >= 0 and held_back >= 0
        assert balance + held_back == seed.securities.get(instrument.uid, 0) + signed
        selling = [o for o in active if o.instrument_uid == instrument.uid and o.direction is SELL]
        assert held_back == sum(o.lots_left * o.lot_size for o in selling)
    buying = [o for o in active if o.direction is BUY]
    assert blocked == sum(
        (o.order_price.amount * o.lots_left * o.lot_size for o in buying if o.order_price), Decimal(0)
    )
    assert all(
        o.execution_report_status
        in (Status.EXECUTION_REPORT_STATUS_NEW, Status.EXECUTION_REPORT_STATUS_PARTIALLYFILL)
        for o in active
    )

    # The last streamed value of each position is the snapshot's.
    mine = [event for event in events if isinstance(event, m.PositionData) and event.account_id == account_id]
    last_money = [money for event in mine for money in event.money]
    if last_money:
        assert last_money[-1].available_value == rub(available)
        assert last_money[-1].blocked_value == rub(blocked)
    last_security = {s.instrument_uid: s for event in mine for s in event.securities}
    for uid, security in last_security.items():
        assert (security.balance, security.blocked) == units_of(broker, account_id, INDEX[uid])

    # The trades stream and the order states tell the same fills as fills().
    streamed = [
        t for e in events if isinstance(e, m.OrderTrades) and e.account_id == account_id for t in e.trades
    ]
    assert [(t.trade_id, t.price, t.quantity) for t in streamed] == [
        (f.trade_id, f.price, f.units) for f in fills
    ]
    for order_id in {f.order_id for f in fills}:
        trades = latest(broker, account_id, order_id).trades
        assert [t.trade_id for t in trades] == [f.trade_id for f in fills if f.order_id == order_id]

    check_portfolio(broker, account_id, quotes)


def check_portfolio(broker: Broker, account_id: str, quotes: Mapping[str, Quote]) -> None:
    portfolio = broker.portfolio(account_id, quotes)
    wire.encode(portfolio)
    totals: dict[str, Decimal] = {}
    for position in portfolio.positions:
        assert position.quantity is not None and position.current_price and position.average_position_price
        value = position.current_price.amount * position.quantity
        totals[position.instrument_type] = totals.get(position.instrument_type, Decimal(0)) + value
        cost = position.average_position_price.amount * position.quantity
        assert position.expected_yield == value - cost
        if position.figi != RUB_FIGI:
            instrument = INDEX[position.instrument_uid]
            last_price = quotes[instrument.uid].last_price
            assert position.current_price.amount == unit_value(instrument, last_price)
    amounts = {
        "share": portfolio.total_amount_shares,
        "bond": portfolio.total_amount_bonds,
        "etf": portfolio.total_amount_etf,
        "currency": portfolio.total_amount_currencies,
        "futures": portfolio.total_amount_futures,
    }
    assert all(amounts[kind] == rub(totals.get(kind, Decimal(0))) for kind in amounts)
    assert portfolio.total_amount_portfolio == rub(sum(totals.values(), Decimal(0)))

    # The same holdings as positions(): securities (balance + blocked) and all money.
    snapshot = broker.positions(account_id, T0)
    securities = {s.instrument_uid: s.balance + s.blocked for s in snapshot.securities}
    valued = {p.instrument_uid: p.quantity for p in portfolio.positions if p.instrument_type != "currency"}
    assert valued == securities
    (roubles,) = (p for p in portfolio.positions if p.figi == RUB_FIGI)
    assert roubles.quantity == snapshot.money[0].amount + snapshot.blocked[0].amount


def check_all(broker: Broker, events: Sequence[Event], quotes: Mapping[str, Quote]) -> None:
    for seed in SEEDS:
        check_account(broker, seed, events, quotes)


# --- scripts ---------------------------------------------------------------------------------------


def mostly(usual: st.SearchStrategy[Any], unusual: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from ``usual`` about 9 times in 10, else from ``unusual`` (bad input, edge cases)."""
    return st.integers(0, 9).flatmap(lambda n: unusual if n == 9 else usual)


# A step of a script: place an order, cancel one, move money, let the market or the trader act.
places = st.tuples(
    st.just("place"),
    mostly(st.sampled_from((A, B)), st.just(UNKNOWN_ACCOUNT)),
    mostly(st.sampled_from(CATALOGUE), st.none()),  # None: an id no instrument has
    st.sampled_from(("figi", "uid", "instrument_id")),
    mostly(st.sampled_from((BUY, SELL)), st.just(m.OrderDirection.ORDER_DIRECTION_UNSPECIFIED)),
    mostly(st.integers(1, 10), st.sampled_from((-1, 0, 400))),
    mostly(st.sampled_from((LIMIT, LIMIT, MARKET, BESTPRICE)), st.just(m.OrderType.ORDER_TYPE_UNSPECIFIED)),
    mostly(st.integers(-2, 4), st.none()),  # limit price: ticks beyond the counter-side touch
    mostly(st.just(False), st.just(True)),  # off the tick grid by half a tick
)
cancels = st.tuples(
    st.just("cancel"), mostly(st.sampled_from((A, B)), st.just(UNKNOWN_ACCOUNT)), st.integers(0, 30)
)
externals = st.tuples(
    st.just("external"),
    st.sampled_from((A, B)),
    st.integers(-300_000_00, 300_000_00),  # kopecks
    st.sampled_from(("transfer", "dividend")),
)
markets = st.just(("market",))
scripts = st.lists(
    st.one_of(places, places, cancels, externals, markets, markets, markets, st.just(("trader",))),
    min_size=10,
    max_size=60,
)


def limit_price(
    instrument: Instrument, direction: m.OrderDirection, q: Quote, ticks: int | None, off_grid: bool
) -> Decimal | None:
    """``ticks`` beyond the counter-side touch (or the last price), so positive ones are marketable."""
    if ticks is None:
        return None
    tick = instrument.min_price_increment
    touch = q.best_ask if direction is BUY else q.best_bid
    beyond = ticks * tick if direction is BUY else -ticks * tick
    return (touch if touch is not None else q.last_price) + beyond + (tick / 2 if off_grid else 0)


def run(seed: int, script: Sequence[tuple[Any, ...]], *, check: bool = True) -> tuple[Broker, list[Event]]:
    """Play ``script`` on a fresh broker; check the invariants after every step if ``check``."""
    broker, tape, events = new_broker(seed), Tape(seed), []
    orders: list[str] = []
    for step, action in enumerate(script):
        now = T0 + timedelta(seconds=step)
        match action:
            case ("place", account_id, instrument, id_form, direction, lots, order_type, ticks, off_grid):
                instrument_id = getattr(instrument, id_form) if instrument else "NO_SUCH_ID"
                q = tape.quotes[(instrument or SBER).uid]
                price = limit_price(instrument or SBER, direction, q, ticks, off_grid)
                new = broker.place_order(
                    account_id=account_id,
                    instrument_id=instrument_id,
                    direction=direction,
                    lots=lots,
                    order_type=order_type,
                    price=price,
                    now=now,
                    quote=q,
                )
                orders.append(placed(new).order_id)
            case ("cancel", account_id, pick):
                order_id = orders[pick % len(orders)] if orders else "0"
                new = broker.cancel_order(account_id=account_id, order_id=order_id, now=now)
            case ("external", account_id, cents, kind):
                new = broker.external(account_id=account_id, amount=Decimal(cents) / 100, now=now, kind=kind)
            case ("market",):
                new = broker.on_market(tape.step(), now)
            case ("trader",):
                new = broker.trader_step(tape.step(), now)
        for event in new:
            check_event(event)
        events += new
        if check:
            check_all(broker, events, tape.quotes)
    return broker, events


@given(seed=st.integers(0, 2**32), script=scripts)
def test_books_balance_after_every_step_of_any_script(seed: int, script: list[tuple[Any, ...]]) -> None:
    run(seed, script)


@given(seed=st.integers(0, 2**32), script=scripts)
def test_same_seed_and_calls_give_the_same_events(seed: int, script: list[tuple[Any, ...]]) -> None:
    first, events = run(seed, script, check=False)
    second, again = run(seed, script, check=False)
    assert events == again
    quotes = Tape(seed).quotes
    assert all(first.portfolio(a, quotes) == second.portfolio(a, quotes) for a in first.accounts)


@given(seed=st.integers(0, 2**32))
def test_the_trader_keeps_the_books_balanced_and_its_orders_are_accepted(seed: int) -> None:
    broker, events = run(seed, [("trader",), ("market",)] * 60, check=False)
    check_all(broker, events, Tape(seed).quotes)
    states = only(events, m.OrderState)
    assert not [s for s in states if s.execution_report_status is Status.EXECUTION_REPORT_STATUS_REJECTED]


def test_the_trader_trades() -> None:
    broker, events = run(7, [("trader",), ("market",)] * 150, check=False)
    statuses = {s.execution_report_status for s in only(events, m.OrderState)}
    assert {Status.EXECUTION_REPORT_STATUS_NEW, Status.EXECUTION_REPORT_STATUS_FILL} <= statuses
    assert Status.EXECUTION_REPORT_STATUS_CANCELLED in statuses
    assert all(broker.fills(account) for account in broker.accounts)


# --- examples --------------------------------------------------------------------------------------


def test_default_accounts_are_two_with_money_and_a_few_securities() -> None:
    assert [(s.account_id, s.money) for s in SEEDS] == [("2000000001", 1_000_000), ("2000000002", 250_000)]
    assert len(SEEDS[0].securities) == 4 and not SEEDS[1].securities
    assert all(INDEX[uid].kind != "futures" for uid in SEEDS[0].securities)
    assert default_accounts(CATALOGUE) == SEEDS


def test_a_limit_buy_is_accepted_and_blocks_its_money() -> None:
    broker = new_broker()
    state, position = buy_sber(broker, lots=5, price="285.10")
    assert isinstance(state, m.OrderState) and isinstance(position, m.PositionData)
    assert state.execution_report_status is Status.EXECUTION_REPORT_STATUS_NEW
    assert (state.lots_requested, state.lots_left, state.lots_executed) == (5, 5, 0)
    assert (state.ticker, state.class_code, state.lot_size) == ("SBER", "TQBR", 10)
    assert state.instrument_uid == SBER.uid and state.account_id == A
    assert state.order_price == rub("285.10")
    # 285.10 * 5 lots * 10 units
    assert state.initial_order_price == state.amount == rub(14255)
    assert state.created_at == T0 and state.completion_time is None and state.exchange == "MOEX"
    assert position.money == (m.PositionsMoney(available_value=rub(985_745), blocked_value=rub(14255)),)
    assert position.securities == ()  # a buy's block moves money only
    assert money_of(broker, A) == (985_745, 14255)
    assert broker.active_orders(A) == (state,) and broker.order(A, state.order_id) == state


def test_a_limit_sell_blocks_units() -> None:
    broker = new_broker()
    _, position = broker.place_order(
        account_id=A,
        instrument_id=SBER.uid,
        direction=SELL,
        lots=3,
        price=Decimal(290),
        now=T0,
        quote=quote(SBER),
    )
    assert isinstance(position, m.PositionData) and position.money == ()
    assert [(s.figi, s.balance, s.blocked) for s in position.securities] == [(SBER.figi, 70, 30)]
    assert units_of(broker, A, SBER) == (70, 30)


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"account_id": UNKNOWN_ACCOUNT}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"instrument_id": "NO_SUCH_ID"}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"instrument_id": SI.figi, "price": Decimal(81250)}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"lots": 0}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"lots": -2}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"price": Decimal("285.405")}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"price": Decimal(0)}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"price": None}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"direction": m.OrderDirection.ORDER_DIRECTION_UNSPECIFIED}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"order_type": m.OrderType.ORDER_TYPE_UNSPECIFIED}, Cause.CAUSE_REJECTED_BY_BROKER),
        ({"lots": 351}, Cause.CAUSE_CANCELLED_NOT_ENOUGH_POSITION),  # 351 * 10 * 285.40 > 1 000 000
        ({"direction": SELL, "lots": 11}, Cause.CAUSE_CANCELLED_NOT_ENOUGH_POSITION),  # holds 10 lots
        # No short selling: account B holds no securities.
        ({"account_id": B, "direction": SELL, "lots": 1}, Cause.CAUSE_CANCELLED_NOT_ENOUGH_POSITION),
        ({"order_type": MARKET, "quote": quote(SBER, tradable=False)}, Cause.CAUSE_REJECTED_BY_EXCHANGE),
        ({"order_type": BESTPRICE, "quote": quote(SBER, "285.30", None)}, Cause.CAUSE_REJECTED_BY_EXCHANGE),
    ],
)
def test_invalid_orders_are_rejected_without_touching_balances(
    changes: dict[str, Any], cause: m.StatusCauseInfo
) -> None:
    broker = new_broker()
    order = {
        "account_id": A,
        "instrument_id": SBER.figi,
        "direction": BUY,
        "lots": 5,
        "price": Decimal("285.40"),
        "now": T0,
        "quote": quote(SBER, "285.30", "285.40"),
    }
    if changes.get("instrument_id") == SI.figi:
        order["quote"] = quote(SI, "81249", "81250")
    (state,) = broker.place_order(**(order | changes))
    assert state.execution_report_status is Status.EXECUTION_REPORT_STATUS_REJECTED
    assert state.status_info is cause
    assert (state.lots_left, state.lots_cancelled, state.completion_time) == (0, state.lots_requested, T0)
    check_event(state)
    assert broker.positions(A, T0) == new_broker().positions(A, T0)
    assert broker.active_orders(A) == ()
    if state.account_id == A:
        assert broker.order(A, state.order_id) == state


def test_money_blocked_by_other_buys_is_not_available() -> None:
    broker = new_broker()
    buy_sber(broker, lots=300)  # blocks 856 200 of 1 000 000
    (state,) = buy_sber(broker, lots=51)  # 145 554 > 143 800 left
    assert state.status_info is Cause.CAUSE_CANCELLED_NOT_ENOUGH_POSITION
    assert buy_sber(broker, lots=50)[0].execution_report_status is Status.EXECUTION_REPORT_STATUS_NEW


def test_a_buy_fills_partially_at_the_ask_until_filled() -> None:
    broker = new_broker()
    order = placed(buy_sber(broker, lots=7, price="285.50"))
    market = {SBER.uid: quote(SBER, "285.30", "285.40", size=2)}
    states: list[m.OrderState] = []
    for step in range(1, 20):
        events = broker.on_market(market, T0 + timedelta(seconds=step))
        if events:
            state, trades, position = events
            assert isinstance(state, m.OrderState) and isinstance(trades, m.OrderTrades)
            assert isinstance(position, m.PositionData)
            assert trades.trades == state.trades[-1:] and trades.figi == SBER.figi
            assert state.trades[-1].quantity <= 2 * SBER.lot  # at most the touch's size
            assert [s.balance for s in position.securities] == [100 + state.lots_executed * 10]
            states.append(state)
        if states and states[-1].lots_left == 0:
            break
    *partial, filled = states
    assert all(s.execution_report_status is Status.EXECUTION_REPORT_STATUS_PARTIALLYFILL for s in partial)
    assert filled.execution_report_status is Status.EXECUTION_REPORT_STATUS_FILL
    assert filled.lots_executed == 7 and filled.completion_time is not None
    assert all(trade.price == Decimal("285.40") for trade in filled.trades)  # the ask, not the limit
    assert filled.executed_order_price == rub("19978")  # 285.40 * 70
    assert len({t.trade_id for t in filled.trades}) == len(filled.trades)
    # The limit was 0.10 above the ask: that part of the block came back.
    assert money_of(broker, A) == (1_000_000 - Decimal("19978"), 0)
    assert broker.active_orders(A) == () and broker.order(A, order.order_id) == filled


def test_orders_wait_while_the_market_does_not_reach_them() -> None:
    broker = new_broker()
    buy_sber(broker, price="285.00")
    assert broker.on_market({SBER.uid: quote(SBER, "284.90", "285.01")}, T0) == []
    assert broker.on_market({SBER.uid: quote(SBER, "284.90", "285.00", tradable=False)}, T0) == []
    assert broker.on_market({SBER.uid: quote(SBER, "284.90", "285.00", size=0)}, T0) == []
    assert broker.on_market({}, T0) == []
    assert broker.on_market({SBER.uid: quote(SBER, "284.90", "285.00")}, T0) != []


def test_orders_share_the_size_at_the_touch() -> None:
    broker = new_broker()
    buy_sber(broker, lots=1, price="285.40")
    buy_sber(broker, lots=1, price="285.40")
    events = broker.on_market({SBER.uid: quote(SBER, "285.30", "285.40", size=1)}, T0)
    assert len(only(events, m.OrderTrades)) == 1


def test_cancel_after_a_partial_fill_releases_the_rest() -> None:
    broker = new_broker()
    order = placed(buy_sber(broker, lots=5))
    broker.on_market({SBER.uid: quote(SBER, "285.30", "285.40", size=2)}, T0)
    executed = latest(broker, A, order.order_id).lots_executed
    assert 1 <= executed <= 2
    state, position = broker.cancel_order(account_id=A, order_id=order.order_id, now=T0)
    assert isinstance(state, m.OrderState) and isinstance(position, m.PositionData)
    assert state.execution_report_status is Status.EXECUTION_REPORT_STATUS_CANCELLED
    assert state.status_info is Cause.CAUSE_CANCELLED_BY_CLIENT
    assert (state.lots_executed, state.lots_left, state.lots_cancelled) == (executed, 0, 5 - executed)
    assert money_of(broker, A) == (1_000_000 - Decimal("2854") * executed, 0)
    assert broker.cancel_order(account_id=A, order_id=order.order_id, now=T0) == []  # finished
    assert broker.cancel_order(account_id=A, order_id="no such order", now=T0) == []
    assert broker.cancel_order(account_id=UNKNOWN_ACCOUNT, order_id=order.order_id, now=T0) == []


def test_another_accounts_order_cannot_be_cancelled() -> None:
    broker = new_broker()
    order = placed(buy_sber(broker))
    assert broker.cancel_order(account_id=B, order_id=order.order_id, now=T0) == []
    assert broker.active_orders(A) == (order,)


def test_a_sell_settles_money_and_keeps_the_average_price() -> None:
    broker = new_broker()
    broker.place_order(
        account_id=A,
        instrument_id=SBER.uid,
        direction=SELL,
        lots=10,
        price=Decimal(290),
        now=T0,
        quote=quote(SBER),
    )
    market = {SBER.uid: quote(SBER, "291.00", "291.10", size=1)}
    broker.on_market(market, T0)
    position = next(p for p in broker.portfolio(A, market).positions if p.figi == SBER.figi)
    assert position.average_position_price == rub(SBER.price)  # a sell leaves it
    for _ in range(30):
        broker.on_market(market, T0)
    assert units_of(broker, A, SBER) == (0, 0)
    assert money_of(broker, A) == (1_000_000 + Decimal("29100"), 0)  # sold at the bid, above the limit
    assert SBER.figi not in {p.figi for p in broker.portfolio(A, market).positions}


def test_buys_blend_into_the_average_price() -> None:
    broker = Broker(CATALOGUE, [AccountSeed("1", Decimal(100_000), {LKOH.figi: 1})], seed=3)
    broker.place_order(
        account_id="1",
        instrument_id=LKOH.figi,
        direction=BUY,
        lots=2,
        price=Decimal(7000),
        now=T0,
        quote=quote(LKOH),
    )
    market = {LKOH.uid: quote(LKOH, "6999.5", "7000", size=5, last="7000")}
    while broker.active_orders("1"):
        broker.on_market(market, T0)
    (position, _) = broker.portfolio("1", market).positions
    average = ((LKOH.price + 2 * 7000) / 3).quantize(Decimal("1e-9"))
    assert position.average_position_price == rub(average)
    assert position.expected_yield == (7000 - average) * 3


def test_a_market_order_blocks_at_its_protective_price_and_fills_at_the_touch() -> None:
    broker = new_broker()
    state, _ = broker.place_order(
        account_id=B,
        instrument_id=LKOH.figi,
        direction=BUY,
        lots=2,
        order_type=MARKET,
        now=T0,
        quote=quote(LKOH, "7000", "7001"),
    )
    assert Decimal(7001) * (1 + MARKET_PROTECTION) == Decimal("7351.05")  # up to the 0.5 grid:
    assert state.order_price == rub("7351.5")
    assert money_of(broker, B) == (250_000 - 2 * Decimal("7351.5"), 2 * Decimal("7351.5"))
    while broker.active_orders(B):
        broker.on_market({LKOH.uid: quote(LKOH, "7100", "7100.5")}, T0)  # the market moved up
    assert money_of(broker, B) == (250_000 - 2 * Decimal("7100.5"), 0)


def test_a_market_sell_is_priced_from_the_last_price_while_the_bid_side_is_empty() -> None:
    broker = new_broker()
    state, _ = broker.place_order(
        account_id=A,
        instrument_id=SBER.figi,
        direction=SELL,
        lots=1,
        order_type=MARKET,
        now=T0,
        quote=quote(SBER, None, "286", last="285.40"),
    )
    assert state.order_price == rub("271.13")  # 285.40 * 0.95


def test_a_best_price_order_rests_at_the_counter_side_touch() -> None:
    broker = new_broker()
    state, _ = broker.place_order(
        account_id=A,
        instrument_id=SBER.figi,
        direction=BUY,
        lots=1,
        order_type=BESTPRICE,
        price=Decimal(1),  # ignored
        now=T0,
        quote=quote(SBER, "285.30", "285.40"),
    )
    assert state.order_price == rub("285.40")  # the ask
    assert broker.on_market({SBER.uid: quote(SBER, "285.40", "285.50")}, T0) == []


def test_bond_money_is_percent_of_a_1000_rouble_nominal() -> None:
    broker = new_broker()
    state, _ = broker.place_order(
        account_id=B,
        instrument_id=OFZ.figi,
        direction=BUY,
        lots=4,
        price=Decimal("61.245"),
        now=T0,
        quote=quote(OFZ),
    )
    assert state.order_price == rub("612.45")
    assert state.initial_order_price == rub("2449.8")
    while broker.active_orders(B):
        broker.on_market({OFZ.uid: quote(OFZ, "61.1", "61.2")}, T0)
    fills = broker.fills(B)
    assert {f.price for f in fills} == {Decimal("61.2")}  # OrderTrade prices stay in percent
    assert money_of(broker, B) == (250_000 - 4 * Decimal(612), 0)
    bond = broker.portfolio(B, {OFZ.uid: quote(OFZ, last="62")}).positions[0]
    assert bond.current_price == rub(620)
    assert bond.current_nkd == rub(0)  # accrued interest is not modelled
    assert bond.expected_yield == (620 - 612) * 4


def test_external_movements_change_available_money() -> None:
    broker = new_broker()
    (position,) = broker.external(account_id=B, amount=Decimal("1234.56"), now=T0, kind="dividend")
    assert isinstance(position, m.PositionData) and position.securities == ()
    assert position.money[0].available_value == rub("251234.56")
    buy = broker.place_order(
        account_id=B,
        instrument_id=LKOH.figi,
        direction=BUY,
        lots=30,
        price=Decimal(7000),
        now=T0,
        quote=quote(LKOH),
    )
    assert buy[0].execution_report_status is Status.EXECUTION_REPORT_STATUS_NEW  # 210 000 blocked
    assert broker.external(account_id=B, amount=Decimal(-50_000), now=T0) == []  # only 41 234.56 free
    assert broker.external(account_id=B, amount=Decimal(0), now=T0) == []
    assert broker.external(account_id=B, amount=Decimal("-41234.56"), now=T0) != []
    assert [(mv.amount, mv.kind) for mv in broker.movements(B)] == [
        (Decimal("1234.56"), "dividend"),
        (Decimal("-41234.56"), "transfer"),
    ]
    assert money_of(broker, B) == (0, 210_000)
    with pytest.raises(ValueError, match="MoneyValue"):
        broker.external(account_id=B, amount=Decimal("1e-10"), now=T0)
    with pytest.raises(KeyError):
        broker.external(account_id=UNKNOWN_ACCOUNT, amount=Decimal(1), now=T0)


def test_the_portfolio_values_positions_at_last_prices() -> None:
    broker = new_broker()
    market = {
        SBER.uid: quote(SBER, last="300"),
        INDEX["GAZP_TQBR"].uid: quote(INDEX["GAZP_TQBR"], last="180"),
        OFZ.uid: quote(OFZ, last="62.5"),
        TMOS.uid: quote(TMOS, last="7"),
    }
    portfolio = broker.portfolio(A, market)
    assert [(p.ticker, p.instrument_type, p.quantity) for p in portfolio.positions] == [
        ("SBER", "share", 100),
        ("GAZP", "share", 100),
        ("SU26238RMFS4", "bond", 10),
        ("TMOS", "etf", 10),
        (RUB_FIGI, "currency", 1_000_000),
    ]
    assert portfolio.total_amount_shares == rub(48_000)
    assert portfolio.total_amount_bonds == rub(6_250)
    assert portfolio.total_amount_etf == rub(70)
    assert portfolio.total_amount_currencies == rub(1_000_000)
    assert portfolio.total_amount_futures == rub(0)
    assert portfolio.total_amount_portfolio == rub(1_054_320)
    assert [p.expected_yield for p in portfolio.positions] == [1460, 103, Decimal("125.5"), Decimal("0.6"), 0]
    cost = Decimal(28540) + Decimal(17897) + Decimal("6124.5") + Decimal("69.4")
    assert portfolio.expected_yield == (Decimal("1689.1") * 100 / cost).quantize(Decimal("1e-9"))
    # Without a quote, the last price on_market saw, else the opening price.
    assert broker.portfolio(A, {}).total_amount_shares == rub(28540 + 17897)
    broker.on_market(market, T0)
    assert broker.portfolio(A, {}) == portfolio


def test_order_request_ids_are_kept_only_when_they_are_uuids() -> None:
    broker = new_broker()
    key = "ec5e2892-58ca-4851-bc47-c2acf1368fde"
    assert placed(buy_sber(broker, order_request_id=key)).order_request_id == key
    generated = placed(buy_sber(broker, order_request_id="my-order-1")).order_request_id
    assert generated is not None and generated != "my-order-1"
    assert uuid.UUID(generated).version == 4 and generated != placed(buy_sber(broker)).order_request_id


def test_order_ids_are_unique_and_numeric() -> None:
    broker = new_broker()
    ids = [placed(buy_sber(broker, lots=1)).order_id for _ in range(5)]
    assert len(set(ids)) == 5 and all(i.isdigit() for i in ids)


def test_time_must_be_aware_and_is_reported_in_utc() -> None:
    broker = new_broker()
    with pytest.raises(ValueError, match="aware"):
        buy_sber(broker, now=datetime(2025, 1, 6, 7, 0))
    moscow = datetime(2025, 1, 6, 10, 0, tzinfo=timezone(timedelta(hours=3)))
    state = placed(
        broker.place_order(
            account_id=A,
            instrument_id=SBER.figi,
            direction=BUY,
            lots=1,
            price=Decimal(285),
            now=moscow,
            quote=quote(SBER),
        )
    )
    assert state.created_at == T0 and state.created_at is not None and state.created_at.tzinfo is UTC


def test_a_quote_of_another_instrument_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="quote"):
        new_broker().place_order(
            account_id=A,
            instrument_id=SBER.figi,
            direction=BUY,
            lots=1,
            price=Decimal(285),
            now=T0,
            quote=quote(LKOH),
        )


@pytest.mark.parametrize(
    "seed",
    [
        AccountSeed("1", Decimal(-1)),
        AccountSeed("1", Decimal(1), {SI.figi: 1}),
        AccountSeed("1", Decimal(1), {"NO_SUCH_ID": 1}),
        AccountSeed("1", Decimal(1), {SBER.figi: -1}),
    ],
)
def test_impossible_seeds_are_refused(seed: AccountSeed) -> None:
    with pytest.raises(ValueError, match=r"^1: "):
        Broker(CATALOGUE, [seed], seed=0)


def test_queries_about_an_unknown_account_raise_key_error() -> None:
    broker = new_broker()
    for query in (
        lambda: broker.positions(UNKNOWN_ACCOUNT, T0),
        lambda: broker.portfolio(UNKNOWN_ACCOUNT, {}),
        lambda: broker.active_orders(UNKNOWN_ACCOUNT),
        lambda: broker.fills(UNKNOWN_ACCOUNT),
        lambda: broker.order(UNKNOWN_ACCOUNT, "1"),
    ):
        with pytest.raises(KeyError):
            query()


# --- securities transfers ----------------------------------------------------------------------------


def transfer(broker: Broker, account_id: str, instrument: Instrument | str, units: Any) -> list[Event]:
    instrument_id = instrument.uid if isinstance(instrument, Instrument) else instrument
    return broker.transfer_securities(
        account_id=account_id, instrument_uid=instrument_id, units=units, now=T0
    )


def test_securities_transfers_move_free_units_with_no_order_fill_or_money() -> None:
    broker = new_broker()
    (position,) = transfer(broker, B, SBER, 30)
    assert position == m.PositionData(
        account_id=B,
        securities=(
            m.PositionsSecurities(
                figi=SBER.figi,
                blocked=0,
                balance=30,
                position_uid=SBER.position_uid,
                instrument_uid=SBER.uid,
                ticker="SBER",
                class_code="TQBR",
                instrument_type="share",
            ),
        ),
        date=T0,
    )
    check_event(position)
    assert units_of(broker, B, SBER) == (30, 0)
    assert money_of(broker, B) == (250_000, 0)
    assert broker.fills(B) == () and broker.orders(B) == () and broker.movements(B) == ()

    # In: the units join the average at the last price known (here the opening price) ...
    portfolio = broker.portfolio(B, {SBER.uid: quote(SBER, last="300")})
    sber, roubles = portfolio.positions
    assert (sber.instrument_uid, sber.quantity, sber.blocked_lots) == (SBER.uid, 30, 0)
    assert sber.average_position_price == rub(SBER.price)
    assert sber.expected_yield == (300 - SBER.price) * 30
    assert roubles.quantity == 250_000 and portfolio.total_amount_shares == rub(9_000)
    # ... then at the last price on_market saw.
    broker.on_market({SBER.uid: quote(SBER, last="290")}, T0)
    transfer(broker, B, SBER.figi, 10)  # any id form
    average = broker.portfolio(B, {}).positions[0].average_position_price
    assert average == rub(((30 * SBER.price + 10 * 290) / 40).quantize(Decimal("1e-9")))

    # Out: the average stays; all out, and the security leaves positions and portfolio.
    (out,) = transfer(broker, B, "SBER_TQBR", -15)
    assert (out.securities[0].balance, out.money) == (25, ())
    assert broker.portfolio(B, {}).positions[0].average_position_price == average
    (gone,) = transfer(broker, B, SBER, -25)
    assert (gone.securities[0].balance, gone.securities[0].blocked) == (0, 0)
    assert broker.positions(B, T0).securities == ()
    assert [p.figi for p in broker.portfolio(B, {}).positions] == [RUB_FIGI]
    assert [(mv.instrument_uid, mv.units, mv.time) for mv in broker.securities_movements(B)] == [
        (SBER.uid, 30, T0),
        (SBER.uid, 10, T0),
        (SBER.uid, -15, T0),
        (SBER.uid, -25, T0),
    ]
    assert broker.securities_movements(A) == () and money_of(broker, B) == (250_000, 0)
    # Back in after all went out: a fresh average.
    transfer(broker, B, SBER, 10)
    assert broker.portfolio(B, {}).positions[0].average_position_price == rub(290)


def test_a_transfer_out_may_take_only_the_free_units() -> None:
    broker = new_broker()
    sell = broker.place_order(
        account_id=A,
        instrument_id=SBER.uid,
        direction=SELL,
        lots=4,
        price=Decimal(400),
        now=T0,
        quote=quote(SBER, "285.30", "285.40"),
    )
    assert placed(sell).execution_report_status is Status.EXECUTION_REPORT_STATUS_NEW
    assert units_of(broker, A, SBER) == (60, 40)
    assert transfer(broker, A, SBER, -61) == []
    assert transfer(broker, A, SBER, 0) == []
    assert transfer(broker, B, SBER, -1) == []  # holds none
    assert units_of(broker, A, SBER) == (60, 40) and broker.securities_movements(A) == ()
    (position,) = transfer(broker, A, SBER, -60)
    assert (position.securities[0].balance, position.securities[0].blocked) == (0, 40)
    portfolio = broker.portfolio(A, {})
    assert (portfolio.positions[0].quantity, portfolio.positions[0].blocked_lots) == (40, 40)
    # The resting sell still fills from its block; then nothing is left.
    for _ in range(100):
        broker.on_market({SBER.uid: quote(SBER, "400", "400.10", size=100)}, T0)
    assert broker.active_orders(A) == ()
    assert units_of(broker, A, SBER) == (0, 0)
    assert money_of(broker, A) == (1_000_000 + 40 * 400, 0)


@pytest.mark.parametrize("units", [1.0, Decimal(1), "1", True, None])
def test_transfer_units_must_be_an_int(units: Any) -> None:
    with pytest.raises(ValueError, match="units must be an int"):
        transfer(new_broker(), A, SBER, units)


def test_transfers_of_unknown_securities_or_accounts_are_errors() -> None:
    broker = new_broker()
    for instrument_id in ("NO_SUCH_ID", SI.uid, SI.figi, RUB_FIGI):
        with pytest.raises(ValueError, match="not a known security"):
            transfer(broker, A, instrument_id, 1)
    with pytest.raises(KeyError):
        transfer(broker, UNKNOWN_ACCOUNT, SBER, 1)
    with pytest.raises(KeyError):
        broker.securities_movements(UNKNOWN_ACCOUNT)
    with pytest.raises(ValueError, match="aware"):
        broker.transfer_securities(account_id=A, instrument_uid=SBER.uid, units=1, now=datetime(2025, 1, 6))
    assert broker.securities_movements(A) == () and broker.positions(A, T0) == new_broker().positions(A, T0)


def test_a_bond_transfer_is_valued_at_percent_of_nominal() -> None:
    broker = new_broker()
    transfer(broker, B, OFZ, 3)
    (bond, _) = broker.portfolio(B, {OFZ.uid: quote(OFZ, last="62")}).positions
    assert bond.average_position_price == rub(OFZ.price * 10)  # 61.245 % of 1000 rub
    assert bond.current_price == rub(620) and bond.quantity == 3


transfers = st.tuples(
    st.just("transfer"),
    st.sampled_from((A, B)),
    st.sampled_from([i for i in CATALOGUE if i.kind != "futures"]),
    st.integers(-120, 120),
)
transfer_scripts = st.lists(
    st.one_of(places, cancels, transfers, transfers, markets, st.just(("trader",))), min_size=5, max_size=40
)


@given(seed=st.integers(0, 2**32), script=transfer_scripts)
def test_transfers_keep_the_books_balanced_among_orders_and_fills(
    seed: int, script: list[tuple[Any, ...]]
) -> None:
    """Units held are the seed plus signed fills plus accepted transfers; blocks are untouched by
    transfers, a transfer is refused exactly when it would take more than the free units, and the last
    streamed position of each security is the snapshot's."""
    broker, tape, events = new_broker(seed), Tape(seed), []
    orders: list[str] = []
    for step, action in enumerate(script):
        now = T0 + timedelta(seconds=step)
        match action:
            case ("place", account_id, instrument, id_form, direction, lots, order_type, ticks, off_grid):
                q = tape.quotes[(instrument or SBER).uid]
                new = broker.place_order(
                    account_id=account_id,
                    instrument_id=getattr(instrument, id_form) if instrument else "NO_SUCH_ID",
                    direction=direction,
                    lots=lots,
                    order_type=order_type,
                    price=limit_price(instrument or SBER, direction, q, ticks, off_grid),
                    now=now,
                    quote=q,
                )
                orders.append(placed(new).order_id)
            case ("cancel", account_id, pick):
                order_id = orders[pick % len(orders)] if orders else "0"
                new = broker.cancel_order(account_id=account_id, order_id=order_id, now=now)
            case ("transfer", account_id, instrument, units):
                free, held_back = units_of(broker, account_id, instrument)
                new = broker.transfer_securities(
                    account_id=account_id, instrument_uid=instrument.uid, units=units, now=now
                )
                assert (new != []) is (units != 0 and free + units >= 0)
                after = (free + units, held_back) if new else (free, held_back)
                assert units_of(broker, account_id, instrument) == after
            case ("market",):
                new = broker.on_market(tape.step(), now)
            case ("trader",):
                new = broker.trader_step(tape.step(), now)
        for event in new:
            check_event(event)
        events += new
    for seed_ in SEEDS:
        account_id = seed_.account_id
        fills, moved = broker.fills(account_id), broker.securities_movements(account_id)
        assert all(mv.units != 0 and mv.time.tzinfo is UTC for mv in moved)
        for instrument in CATALOGUE:
            balance, held_back = units_of(broker, account_id, instrument)
            signed = sum(
                f.units if f.direction is BUY else -f.units
                for f in fills
                if f.instrument_uid == instrument.uid
            )
            transferred = sum(mv.units for mv in moved if mv.instrument_uid == instrument.uid)
            assert balance + held_back == seed_.securities.get(instrument.uid, 0) + signed + transferred
        mine = [e for e in events if isinstance(e, m.PositionData) and e.account_id == account_id]
        last = {s.instrument_uid: s for event in mine for s in event.securities}
        for uid, security in last.items():
            assert (security.balance, security.blocked) == units_of(broker, account_id, INDEX[uid])
        check_portfolio(broker, account_id, tape.quotes)
