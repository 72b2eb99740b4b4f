"""The account streams of the simulator, end to end over a socket: orders, fills, positions, portfolio."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from rxinvest import model as m
from rxinvest.sim import Simulator, serve
from tests.sim.wsclient import events, first, open_stream, send

BUY = m.OrderDirection.ORDER_DIRECTION_BUY
SELL = m.OrderDirection.ORDER_DIRECTION_SELL
OK = m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_OK
ERROR = m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with serve(seed=21, manual=True, trader=False) as simulator:
        yield simulator


def subscribed(ws, stream: str, request: object) -> object:
    send(ws, request)
    return first(ws, stream, lambda e: not isinstance(e, m.Ping))


def test_order_states_fills_and_positions_agree(sim: Simulator) -> None:
    account = sim.accounts[0]
    with (
        open_stream(sim, "OrderStateStream") as orders,
        open_stream(sim, "TradesStream") as fills,
        open_stream(sim, "PositionsStream") as positions,
    ):
        assert (
            subscribed(orders, "OrderStateStream", m.OrderStateStreamRequest(accounts=(account,))).status
            is OK
        )
        assert subscribed(fills, "TradesStream", m.TradesStreamRequest(accounts=(account,))).status is OK
        result = subscribed(
            positions,
            "PositionsStream",
            m.PositionsStreamRequest(accounts=(account,), with_initial_positions=True),
        )
        assert (
            result.accounts[0].subscription_status
            is m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS
        )
        initial = first(positions, "PositionsStream", lambda e: isinstance(e, m.PositionsResponse))

        new = sim.place_order(account, "SBER_TQBR", BUY, 3)  # a market order
        assert new.execution_report_status is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW
        sim.advance(50)

        states = [e for e in events(orders, "OrderStateStream", timeout=1) if isinstance(e, m.OrderState)]
        trades = [e for e in events(fills, "TradesStream", timeout=0.5) if isinstance(e, m.OrderTrades)]
        changes = [
            e for e in events(positions, "PositionsStream", timeout=0.5) if isinstance(e, m.PositionData)
        ]

    assert states[0] == new
    final = states[-1]
    assert final.execution_report_status is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_FILL
    assert final.lots_executed == 3
    assert final.lots_left == 0
    units = sum(t.quantity for t in final.trades)
    assert units == 3 * final.lot_size
    assert sum(t.quantity for o in trades for t in o.trades) == units  # TradesStream saw every fill

    sber = "e6123145-9665-43e0-8413-cd61b8aa9b13"
    before = next((s.balance + s.blocked for s in initial.securities if s.instrument_uid == sber), 0)
    after = [s for change in changes for s in change.securities if s.instrument_uid == sber][-1]
    assert after.balance + after.blocked == before + units  # positions = initial + fills

    spent = sum(t.price * t.quantity for t in final.trades)
    money_before = sum(mv.amount for mv in initial.money) + sum(mv.amount for mv in initial.blocked)
    last_money = changes[-1].money[0]
    assert last_money.available_value.amount + last_money.blocked_value.amount == money_before - spent


def test_limit_orders_can_be_cancelled(sim: Simulator) -> None:
    account = sim.accounts[0]
    quote = sim.market.quote("e6123145-9665-43e0-8413-cd61b8aa9b13")
    far_below = quote.best_bid - 50 * Decimal("0.01")
    with open_stream(sim, "OrderStateStream") as orders:
        subscribed(orders, "OrderStateStream", m.OrderStateStreamRequest(accounts=(account,)))
        new = sim.place_order(account, "SBER_TQBR", BUY, 1, price=far_below)
        sim.advance(5)
        events_ = sim.cancel_order(account, new.order_id)
        cancelled = first(
            orders,
            "OrderStateStream",
            lambda e: (
                isinstance(e, m.OrderState)
                and e.execution_report_status
                is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_CANCELLED
            ),
        )
    assert cancelled.order_id == new.order_id
    assert cancelled.lots_cancelled == 1
    assert cancelled.status_info is m.StatusCauseInfo.CAUSE_CANCELLED_BY_CLIENT
    assert cancelled in events_
    assert sim.cancel_order(account, new.order_id) == []  # nothing left to cancel


def test_orders_the_account_cannot_afford_are_rejected(sim: Simulator) -> None:
    state = sim.place_order(sim.accounts[1], "LKOH_TQBR", BUY, 10_000)
    assert state.execution_report_status is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_REJECTED
    assert state.status_info is m.StatusCauseInfo.CAUSE_CANCELLED_NOT_ENOUGH_POSITION


def test_external_movements_reach_the_positions_stream(sim: Simulator) -> None:
    account = sim.accounts[1]
    with open_stream(sim, "PositionsStream") as positions:
        subscribed(positions, "PositionsStream", m.PositionsStreamRequest(accounts=(account,)))
        before = sim.broker.positions(account, sim.clock()).money[0].amount
        sim.move_money(account, Decimal("1234.56"), kind="dividend")
        change = first(positions, "PositionsStream", lambda e: isinstance(e, m.PositionData))
    assert change.money[0].available_value.amount == before + Decimal("1234.56")


def test_portfolio_snapshots_follow_changes(sim: Simulator) -> None:
    account = sim.accounts[0]
    with open_stream(sim, "PortfolioStream") as portfolio:
        result = subscribed(portfolio, "PortfolioStream", m.PortfolioStreamRequest(accounts=(account,)))
        assert (
            result.accounts[0].subscription_status
            is m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS
        )
        initial = first(portfolio, "PortfolioStream", lambda e: isinstance(e, m.PortfolioResponse))
        sim.move_money(account, Decimal(1000))
        after = first(portfolio, "PortfolioStream", lambda e: isinstance(e, m.PortfolioResponse))
    assert initial.account_id == after.account_id == account
    assert after.total_amount_currencies.amount == initial.total_amount_currencies.amount + 1000


def test_unknown_accounts_and_read_only_tokens_are_refused_per_account(sim: Simulator) -> None:
    with open_stream(sim, "OrderStateStream") as ws:
        answer = subscribed(
            ws, "OrderStateStream", m.OrderStateStreamRequest(accounts=(sim.accounts[0], "999"))
        )
    assert answer.status is ERROR
    assert answer.accounts == (sim.accounts[0],)
    assert answer.error.code == "50004"

    with open_stream(sim, "TradesStream", token="readonly") as ws:
        answer = subscribed(ws, "TradesStream", m.TradesStreamRequest(accounts=sim.accounts))
    assert answer.status is ERROR
    assert answer.accounts == ()
    assert answer.error.code == "40002"

    with open_stream(sim, "PortfolioStream", token="readonly") as ws:
        answer = subscribed(ws, "PortfolioStream", m.PortfolioStreamRequest(accounts=sim.accounts))
    assert {a.subscription_status for a in answer.accounts} == {
        m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND
    }

    with open_stream(sim, "MarketDataStream", token="readonly") as ws:  # market data is allowed
        send(ws, m.SubscribeLastPriceRequest(
            subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
            instruments=(m.LastPriceInstrument(instrument_id="SBER_TQBR"),),
        ))  # fmt: skip
        ok = first(ws, "MarketDataStream", lambda e: isinstance(e, m.SubscribeLastPriceResponse))
    assert (
        ok.last_price_subscriptions[0].subscription_status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
    )


def test_the_automatic_trader_makes_the_account_streams_live() -> None:
    with serve(seed=3, manual=True, trader=True) as sim, open_stream(sim, "OrderStateStream") as orders:
        subscribed(orders, "OrderStateStream", m.OrderStateStreamRequest(accounts=sim.accounts))
        sim.advance(300)
        states = [e for e in events(orders, "OrderStateStream", timeout=1) if isinstance(e, m.OrderState)]
    assert len({s.order_id for s in states}) >= 3
    assert {s.account_id for s in states} <= set(sim.accounts)


def test_server_side_market_data_stream_takes_one_request(sim: Simulator) -> None:
    request = m.MarketDataServerSideStreamRequest(
        subscribe_last_price_request=m.SubscribeLastPriceRequest(
            subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
            instruments=(m.LastPriceInstrument(instrument_id="GAZP_TQBR"),),
        )
    )
    with open_stream(sim, "MarketDataServerSideStream") as ws:
        send(ws, request)
        first(ws, "MarketDataServerSideStream", lambda e: isinstance(e, m.SubscribeLastPriceResponse))
        price = first(ws, "MarketDataServerSideStream", lambda e: isinstance(e, m.LastPrice))
    assert price.instrument_uid == "962e2a95-02a9-4171-abd7-aa198dbe643a"
