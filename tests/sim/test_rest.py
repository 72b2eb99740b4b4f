"""The simulator's REST gateway over real HTTP on loopback, with the stdlib ``http.client`` as client.

Expected values come from what the tests did (orders placed, money moved), from the broker's own
records, and from the contract written out here; never from the gateway under test.
"""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError
from rxinvest.sim import Simulator, serve
from rxinvest.wire import Unary

BUY = m.OrderDirection.ORDER_DIRECTION_BUY
SELL = m.OrderDirection.ORDER_DIRECTION_SELL
SBER, GAZP_FIGI = "SBER_TQBR", "BBG004730RP0"
_BASE = "/rest/tinkoff.public.invest.api.contract.v1."
PATHS = {
    "GetOrders": _BASE + "OrdersService/GetOrders",
    "GetOrderState": _BASE + "OrdersService/GetOrderState",
    "GetOperationsByCursor": _BASE + "OperationsService/GetOperationsByCursor",
    "GetPositions": _BASE + "OperationsService/GetPositions",
    "GetPortfolio": _BASE + "OperationsService/GetPortfolio",
}
MAX_PAGES = 200  # every paging loop below is bounded by it


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with serve(seed=5, manual=True, trader=False) as simulator:
        yield simulator


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


def post(
    sim: Simulator,
    path: str,
    body: bytes | str = b"{}",
    *,
    token: str | None = "full",
    verb: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request on a new connection to the simulator's REST port."""
    url = urlsplit(sim.rest_url)
    assert url.hostname == "127.0.0.1"
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {sim.token if token == 'full' else token}"
    try:
        connection.request(verb, path, body=body, headers=sent)
        return Reply(connection.getresponse())
    finally:
        connection.close()


def call(sim: Simulator, name: str, request: Any) -> Any:
    reply = post(sim, PATHS[name], wire.encode_unary(request))
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"] == "application/json"
    return wire.decode_unary(Unary(name), reply.body)


def error(reply: Reply, status: int, code: int, message: str) -> None:
    assert reply.status == status, reply.body
    body = reply.json()
    assert (body["code"], body["message"]) == (code, message), body
    assert isinstance(body.get("description"), str)


def test_rest_url_is_a_loopback_port_of_its_own(sim: Simulator) -> None:
    url = urlsplit(sim.rest_url)
    assert (url.scheme, url.hostname, url.path) == ("http", "127.0.0.1", "/rest/")
    assert url.port not in (None, 0, sim.port)
    assert sim.rest_url == f"http://127.0.0.1:{url.port}/rest/"


def test_the_rest_port_closes_with_the_simulator() -> None:
    with serve(seed=1, manual=True) as simulator:
        url = urlsplit(simulator.rest_url)
        assert post(simulator, PATHS["GetOrders"], token=None).status == 401
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=2)
    try:
        with pytest.raises(ConnectionRefusedError):
            connection.request("POST", PATHS["GetOrders"], body=b"{}")
    finally:
        connection.close()


# --- access ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PATHS))
def test_a_missing_or_unknown_token_is_401_and_the_readonly_one_403(sim: Simulator, name: str) -> None:
    body = json.dumps({"accountId": sim.accounts[0]})
    error(post(sim, PATHS[name], body, token=None), 401, 16, "40003")
    error(post(sim, PATHS[name], body, token="sim-full-not-this-one"), 401, 16, "40003")
    error(post(sim, PATHS[name], body, token=None, headers={"Authorization": sim.token}), 401, 16, "40003")
    error(post(sim, PATHS[name], body, token=sim.readonly_token), 403, 7, "40002")


def test_error_bodies_never_repeat_a_token(sim: Simulator) -> None:
    for token in (None, sim.readonly_token, "sim-full-not-this-one"):
        reply = post(sim, PATHS["GetOrders"], token=token)
        assert sim.token.encode() not in reply.body and sim.readonly_token.encode() not in reply.body


def test_paths_and_verbs(sim: Simulator) -> None:
    for path in (f"{_BASE}OrdersService/PostOrder", f"{_BASE}OperationsService/GetOrders", "/rest/", "/ws/x"):
        error(post(sim, path), 404, 12, "12001")
    reply = post(sim, PATHS["GetOrders"], b"", verb="GET")
    assert reply.status == 405 and reply.headers["Allow"] == "POST"
    query = post(sim, PATHS["GetPositions"] + "?x=1", json.dumps({"accountId": sim.accounts[0]}))
    assert query.status == 200
    assert post(sim, PATHS["GetOrders"], token=None).headers["x-tracking-id"]


def test_malformed_bodies_and_missing_fields_are_400(sim: Simulator) -> None:
    account = sim.accounts[0]
    for body in (b"", b"{", b"[]", b'{"accountId": 5}', b'{"accountId": "' + account.encode() + b'", "x": }'):
        reply = post(sim, PATHS["GetOrders"], body)
        assert reply.status == 400 and reply.json()["code"] == 3
        assert reply.json()["message"].startswith("30") and len(reply.json()["message"]) == 5
    error(post(sim, PATHS["GetOrders"], b"{}"), 400, 3, "30021")
    error(post(sim, PATHS["GetOrderState"], json.dumps({"accountId": account})), 400, 3, "30027")
    operations = PATHS["GetOperationsByCursor"]
    error(post(sim, operations, json.dumps({"accountId": account, "limit": 1001})), 400, 3, "30069")
    error(post(sim, operations, json.dumps({"accountId": account, "limit": -1})), 400, 3, "30069")
    between = {"accountId": account, "from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}
    error(post(sim, operations, json.dumps(between)), 400, 3, "30012")
    error(post(sim, operations, json.dumps({"accountId": account, "cursor": "nope"})), 400, 3, "30102")
    reply = post(sim, PATHS["GetOrders"], b"{}", headers={"Content-Length": "nan"})
    assert reply.status == 400


def test_unknown_accounts_orders_and_instruments_are_404(sim: Simulator) -> None:
    for name in PATHS:
        error(post(sim, PATHS[name], json.dumps({"accountId": "9999", "orderId": "1"})), 404, 5, "50004")
    state = json.dumps({"accountId": sim.accounts[0], "orderId": "12345"})
    error(post(sim, PATHS["GetOrderState"], state), 404, 5, "50005")
    mine = sim.place_order(sim.accounts[0], SBER, BUY, 1)
    other = json.dumps({"accountId": sim.accounts[1], "orderId": mine.order_id})
    error(post(sim, PATHS["GetOrderState"], other), 404, 5, "50005")  # another account's order
    instrument = json.dumps({"accountId": sim.accounts[0], "instrumentId": "NOPE_TQBR"})
    error(post(sim, PATHS["GetOperationsByCursor"], instrument), 404, 5, "50002")


# --- orders ------------------------------------------------------------------------------------------


def far_below(sim: Simulator, instrument_id: str) -> Decimal:
    """A limit buy price that never fills: one tick above zero."""
    return sim.index[instrument_id].min_price_increment


def test_get_orders_lists_the_active_orders_only(sim: Simulator) -> None:
    account = sim.accounts[0]
    sber = sim.index[SBER]
    price = far_below(sim, SBER)
    resting = [sim.place_order(account, SBER, BUY, lots, price=price) for lots in (1, 2)]
    cancelled = sim.place_order(account, SBER, BUY, 3, price=price)
    filled = sim.place_order(account, SBER, BUY, 2)  # a market order
    rejected = sim.place_order(account, SBER, BUY, 0, price=price)
    sim.cancel_order(account, cancelled.order_id)
    sim.advance(60)

    orders = call(sim, "GetOrders", m.GetOrdersRequest(account_id=account)).orders
    assert [o.order_id for o in orders] == [o.order_id for o in resting]
    for order, lots in zip(orders, (1, 2), strict=True):
        assert order.execution_report_status is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW
        assert (order.lots_requested, order.lots_executed, order.stages) == (lots, 0, ())
        assert order.direction is BUY and order.order_type is m.OrderType.ORDER_TYPE_LIMIT
        assert order.figi == sber.figi and order.instrument_uid == sber.uid
        assert order.initial_security_price == m.Money(price, "rub")
        assert order.initial_order_price == m.Money(price * sber.lot * lots, "rub")
    assert call(sim, "GetOrders", m.GetOrdersRequest(account_id=sim.accounts[1])).orders == ()

    def state(order_id: str) -> m.OrderSnapshot:
        return call(sim, "GetOrderState", m.GetOrderStateRequest(account_id=account, order_id=order_id))

    statuses = m.OrderExecutionReportStatus
    assert state(cancelled.order_id).execution_report_status is statuses.EXECUTION_REPORT_STATUS_CANCELLED
    assert state(rejected.order_id).execution_report_status is statuses.EXECUTION_REPORT_STATUS_REJECTED
    assert state(filled.order_id).execution_report_status is statuses.EXECUTION_REPORT_STATUS_FILL


def test_get_orders_filters_choose_orders_by_creation_time_and_status(sim: Simulator) -> None:
    account, statuses = sim.accounts[0], m.OrderExecutionReportStatus
    price = far_below(sim, SBER)
    before = sim.place_order(account, SBER, BUY, 1, price=price)
    sim.advance(10)
    cancelled = sim.place_order(account, SBER, BUY, 3, price=price)
    sim.cancel_order(account, cancelled.order_id)
    filled = sim.place_order(account, SBER, BUY, 2)  # a market order
    rejected = sim.place_order(account, SBER, BUY, 0, price=price)
    sim.advance(60)
    since = cancelled.created_at
    assert before.created_at < since

    def listed(**filters: Any) -> list[tuple[str, m.OrderExecutionReportStatus]]:
        chosen = m.GetOrdersRequestFilters(**filters)
        request = m.GetOrdersRequest(account_id=account, advanced_filters=chosen)
        return [(o.order_id, o.execution_report_status) for o in call(sim, "GetOrders", request).orders]

    assert listed(from_=since) == [
        (cancelled.order_id, statuses.EXECUTION_REPORT_STATUS_CANCELLED),
        (filled.order_id, statuses.EXECUTION_REPORT_STATUS_FILL),
        (rejected.order_id, statuses.EXECUTION_REPORT_STATUS_REJECTED),
    ]
    assert listed(to=since) == [(before.order_id, statuses.EXECUTION_REPORT_STATUS_NEW)]  # ``to`` excluded
    only = (statuses.EXECUTION_REPORT_STATUS_CANCELLED, statuses.EXECUTION_REPORT_STATUS_NEW)
    assert listed(execution_status=only) == [
        (before.order_id, statuses.EXECUTION_REPORT_STATUS_NEW),
        (cancelled.order_id, statuses.EXECUTION_REPORT_STATUS_CANCELLED),
    ]
    # without filters: the active ones only
    plain = call(sim, "GetOrders", m.GetOrdersRequest(account_id=account)).orders
    assert [o.order_id for o in plain] == [before.order_id]


def test_get_order_state_reports_the_fills_as_stages(sim: Simulator) -> None:
    account = sim.accounts[0]
    request_id = str(uuid.UUID(int=7, version=4))
    placed = sim.place_order(account, SBER, BUY, 5, order_request_id=request_id)
    sim.advance(80)
    fills = [f for f in sim.broker.fills(account) if f.order_id == placed.order_id]
    assert sum(f.lots for f in fills) == 5  # the market filled it, in one or more trades

    snapshot = call(
        sim, "GetOrderState", m.GetOrderStateRequest(account_id=account, order_id=placed.order_id)
    )
    lot = sim.index[SBER].lot
    assert snapshot.order_id == placed.order_id and snapshot.order_request_id == request_id
    assert snapshot.lots_requested == snapshot.lots_executed == 5
    assert [(s.trade_id, s.quantity, s.price, s.execution_time) for s in snapshot.stages] == [
        (f.trade_id, f.lots, m.Money(f.price, "rub"), f.time) for f in fills
    ]
    spent = sum(s.price.amount * s.quantity * lot for s in snapshot.stages)
    assert snapshot.executed_order_price == m.Money(spent, "rub")
    assert snapshot.average_position_price == m.Money(spent / (5 * lot), "rub")
    assert snapshot.order_date == placed.created_at and snapshot.currency == "rub"

    by_request = m.GetOrderStateRequest(
        account_id=account, order_id=request_id, order_id_type=m.OrderIdType.ORDER_ID_TYPE_REQUEST
    )
    assert call(sim, "GetOrderState", by_request) == snapshot


# --- positions and portfolio -------------------------------------------------------------------------


def test_positions_and_portfolio_are_the_brokers(sim: Simulator) -> None:
    account = sim.accounts[0]
    sber = sim.index[SBER]
    before = call(sim, "GetPositions", m.GetPositionsRequest(account_id=account))
    held = next(s.balance for s in before.securities if s.instrument_uid == sber.uid)
    assert held == 10 * sber.lot  # the default seed: 10 lots of the first shares

    sim.place_order(account, SBER, BUY, 2)
    sim.place_order(account, SBER, SELL, 3, price=sber.price * 100)  # rests: blocks 3 lots
    sim.advance(80)
    positions = call(sim, "GetPositions", m.GetPositionsRequest(account_id=account))
    after = next(s for s in positions.securities if s.instrument_uid == sber.uid)
    assert (after.balance, after.blocked) == (held + 2 * sber.lot - 3 * sber.lot, 3 * sber.lot)
    assert positions == sim.broker.positions(account, sim.clock())
    assert positions.account_id == account

    portfolio = call(sim, "GetPortfolio", m.PortfolioRequest(account_id=account))
    assert portfolio == sim.broker.portfolio(account, sim.market.quotes())
    assert portfolio.account_id == account
    rub = m.PortfolioRequest(account_id=account, currency=m.CurrencyRequest.RUB)
    assert call(sim, "GetPortfolio", rub) == portfolio
    usd = wire.encode_unary(m.PortfolioRequest(account_id=account, currency=m.CurrencyRequest.USD))
    assert post(sim, PATHS["GetPortfolio"], usd).status == 400


# --- operations --------------------------------------------------------------------------------------


def trade(sim: Simulator, account: str) -> None:
    """Fills on two instruments and money movements, spread over simulated time."""
    shares = [i for i in sim.instruments if i.kind == "share"][:2]
    for round_ in range(3):
        for instrument in shares:
            sim.place_order(account, instrument.uid, BUY, 2)
            sim.advance(20)
        sim.move_money(account, Decimal(1000 + round_), kind="dividend" if round_ else "transfer")
        sim.advance(5)
    sim.place_order(account, shares[0].uid, SELL, 1)
    sim.advance(40)
    sim.move_money(account, Decimal(-50))


def pages(sim: Simulator, request: m.GetOperationsByCursorRequest) -> list[m.GetOperationsByCursorResponse]:
    out = []
    cursor = ""
    for _ in range(MAX_PAGES):
        page = call(sim, "GetOperationsByCursor", m.GetOperationsByCursorRequest(**{
            **{f: getattr(request, f) for f in ("account_id", "instrument_id", "from_", "to", "limit")},
            "cursor": cursor,
        }))  # fmt: skip
        out.append(page)
        if not page.has_next:
            return out
        assert page.next_cursor
        cursor = page.next_cursor
    raise AssertionError(f"more than {MAX_PAGES} pages")


@pytest.mark.parametrize("limit", [None, 1, 2, 3, 7, 1000])
def test_paging_returns_every_operation_exactly_once_newest_first(sim: Simulator, limit: int | None) -> None:
    account = sim.accounts[0]
    trade(sim, account)
    fills = sim.broker.fills(account)
    movements = sim.broker.movements(account)
    assert len(fills) >= 7 and len(movements) == 4

    got = pages(sim, m.GetOperationsByCursorRequest(account_id=account, limit=limit))
    items = [item for page in got for item in page.items]
    assert all(len(page.items) == (limit or 100) for page in got[:-1])
    assert len(items) == len(fills) + len(movements)
    assert len({item.cursor for item in items}) == len(items)  # no item twice
    dates = [item.date for item in items]
    assert dates == sorted(dates, reverse=True)
    assert got[-1].next_cursor == ""

    trades = [
        i
        for i in items
        if i.type in (m.OperationType.OPERATION_TYPE_BUY, m.OperationType.OPERATION_TYPE_SELL)
    ]
    by_trade = {f.trade_id: f for f in fills}
    assert {t.trades_info.trades[0].num for t in trades} == set(by_trade)
    for item in trades:
        fill = by_trade[item.trades_info.trades[0].num]
        (only,) = item.trades_info.trades
        assert item.id == fill.order_id  # the simulator's convention
        assert item.state is m.OperationState.OPERATION_STATE_EXECUTED
        assert item.quantity == item.quantity_done == only.quantity == fill.units
        assert item.price == only.price == m.Money(fill.price, "rub")
        assert item.payment == m.Money(fill.amount if fill.direction is SELL else -fill.amount, "rub")
        assert item.instrument_uid == fill.instrument_uid and item.date == only.date == fill.time
        assert item.type is (
            m.OperationType.OPERATION_TYPE_BUY
            if fill.direction is BUY
            else m.OperationType.OPERATION_TYPE_SELL
        )
    money = sorted((i.payment.amount, i.type) for i in items if i not in trades)
    assert money == [
        (Decimal(-50), m.OperationType.OPERATION_TYPE_OUTPUT),
        (Decimal(1000), m.OperationType.OPERATION_TYPE_INPUT),
        (Decimal(1001), m.OperationType.OPERATION_TYPE_DIVIDEND),
        (Decimal(1002), m.OperationType.OPERATION_TYPE_DIVIDEND),
    ]


def test_operations_filter_by_period_and_instrument(sim: Simulator) -> None:
    account = sim.accounts[0]
    trade(sim, account)
    fills = sim.broker.fills(account)
    everything = [i for p in pages(sim, m.GetOperationsByCursorRequest(account_id=account)) for i in p.items]
    times = sorted({f.time for f in fills})
    start, end = times[1], times[-2]
    expected = {i.cursor for i in everything if start <= i.date < end}
    window = m.GetOperationsByCursorRequest(account_id=account, from_=start, to=end, limit=2)
    assert {i.cursor for p in pages(sim, window) for i in p.items} == expected
    assert any(i.date == start for i in everything if i.cursor in expected)  # from: inclusive
    assert not any(i.date == end for i in everything if i.cursor in expected)  # to: exclusive

    first = sim.instruments[0]
    for instrument_id in (first.figi, first.uid, f"{first.ticker}_{first.class_code}"):
        request = m.GetOperationsByCursorRequest(account_id=account, instrument_id=instrument_id, limit=3)
        mine = [i for p in pages(sim, request) for i in p.items]
        assert {i.trades_info.trades[0].num for i in mine} == {
            f.trade_id for f in fills if f.instrument_uid == first.uid
        }


def test_operations_filters_by_type_and_state_and_can_leave_trades_out(sim: Simulator) -> None:
    account = sim.accounts[0]
    trade(sim, account)
    sells = m.GetOperationsByCursorRequest(
        account_id=account, operation_types=(m.OperationType.OPERATION_TYPE_SELL,)
    )
    page = call(sim, "GetOperationsByCursor", sells)
    assert [i.type for i in page.items] == [m.OperationType.OPERATION_TYPE_SELL] * sum(
        1 for f in sim.broker.fills(account) if f.direction is SELL
    )
    canceled = m.GetOperationsByCursorRequest(
        account_id=account, state=m.OperationState.OPERATION_STATE_CANCELED
    )
    assert call(sim, "GetOperationsByCursor", canceled).items == ()
    bare = call(
        sim, "GetOperationsByCursor", m.GetOperationsByCursorRequest(account_id=account, without_trades=True)
    )
    assert bare.items and all(i.trades_info is None for i in bare.items)


def test_operations_recorded_between_pages_do_not_disturb_the_paging(sim: Simulator) -> None:
    account = sim.accounts[0]
    trade(sim, account)
    first = call(sim, "GetOperationsByCursor", m.GetOperationsByCursorRequest(account_id=account, limit=3))
    sim.move_money(account, Decimal(7))  # newer than every cursor
    rest = pages(sim, m.GetOperationsByCursorRequest(account_id=account, limit=3))
    listed = [i.cursor for i in first.items]
    cursor = first.next_cursor
    for _ in range(MAX_PAGES):
        page = call(
            sim,
            "GetOperationsByCursor",
            m.GetOperationsByCursorRequest(account_id=account, limit=3, cursor=cursor),
        )
        listed += [i.cursor for i in page.items]
        if not page.has_next:
            break
        cursor = page.next_cursor
    everything = [i.cursor for p in rest for i in p.items]
    assert listed == everything[1:]  # all but the new movement, each once


# --- faults and counters -----------------------------------------------------------------------------


def test_fault_rest_fails_the_next_calls_then_serves_again(sim: Simulator) -> None:
    account = sim.accounts[0]
    body = json.dumps({"accountId": account})
    sim.fault_rest()
    error(post(sim, PATHS["GetPositions"], body), 503, 14, "70001")
    assert post(sim, PATHS["GetPositions"], body).status == 200

    sim.fault_rest(2, status=500, code="70002")
    error(post(sim, PATHS["GetOrders"], body, token=None), 500, 13, "70002")  # before the token check
    error(post(sim, PATHS["GetOrders"], body), 500, 13, "70002")
    assert post(sim, PATHS["GetOrders"], body).status == 200

    sim.fault_rest(1, status=429, code="80002")
    error(post(sim, PATHS["GetPortfolio"], body), 429, 8, "80002")
    sim.fault_rest(0)
    assert post(sim, PATHS["GetPortfolio"], body).status == 200
    for bad in ({"count": -1}, {"status": 200}, {"status": 700}, {"code": 70001}):
        with pytest.raises(ConfigurationError):
            sim.fault_rest(**bad)


def test_rest_calls_counts_each_methods_calls(sim: Simulator) -> None:
    assert sim.rest_calls() == {}
    body = json.dumps({"accountId": sim.accounts[0]})
    for _ in range(3):
        post(sim, PATHS["GetOrders"], body)
    post(sim, PATHS["GetOrders"], body, token=None)  # refused: counted
    sim.fault_rest()
    post(sim, PATHS["GetPositions"], body)  # faulted: counted
    post(sim, PATHS["GetPositions"], body)
    post(sim, "/rest/nowhere", body)  # no method: not counted
    post(sim, PATHS["GetPortfolio"], body, verb="GET")  # not a call: not counted
    assert sim.rest_calls() == {"GetOrders": 4, "GetPositions": 2}


def test_one_connection_serves_several_calls(sim: Simulator) -> None:
    url = urlsplit(sim.rest_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"Authorization": f"Bearer {sim.token}", "Content-Type": "application/json"}
    try:
        for name in PATHS:
            body = json.dumps({"accountId": sim.accounts[0], "orderId": "1"})
            connection.request("POST", PATHS[name], body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == (404 if name == "GetOrderState" else 200)
    finally:
        connection.close()
    assert sim.rest_calls() == dict.fromkeys(PATHS, 1)


def test_a_mean_price_with_more_than_nine_places_is_rounded_to_the_nano() -> None:
    """Found by the soak: three fills of 1 unit at 512, 512 and 513 average 512.333..., which the
    codec refuses (money carries 9 decimal places); the gateway's answer must still encode."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from rxinvest.sim.broker import Fill
    from rxinvest.sim.rest import RestGateway

    when = datetime(2026, 3, 2, 10, tzinfo=UTC)
    fills = [
        Fill("O1", f"T{i}", "U", m.OrderDirection.ORDER_DIRECTION_BUY, 1, 1, Decimal(p), Decimal(p), when)
        for i, p in enumerate(("512", "512", "513"))
    ]
    sim = SimpleNamespace(
        broker=SimpleNamespace(fills=lambda account: fills), index=SimpleNamespace(get=lambda uid: None)
    )
    state = m.OrderState(order_id="O1", account_id="A", instrument_uid="U", lots_requested=3, lots_executed=3)
    snapshot = RestGateway(sim)._snapshot(state)  # type: ignore[arg-type]
    assert snapshot.average_position_price is not None
    assert snapshot.average_position_price.amount == Decimal("512.333333333")
    assert wire.decode_unary(Unary.GET_ORDER_STATE, wire.encode_unary(snapshot)) == snapshot


# --- securities transfers ----------------------------------------------------------------------------


def test_securities_transfers_are_operations_with_units_and_no_trades(sim: Simulator) -> None:
    account = sim.accounts[1]  # the default seed: money only
    sber = sim.index[SBER]
    sim.move_money(account, Decimal(100))  # at the same instant as the first transfer: listed as older
    (position,) = sim.transfer_securities(account, SBER, 30)
    assert isinstance(position, m.PositionData) and position.securities[0].balance == 30
    sim.advance(5)
    assert sim.transfer_securities(account, sber.figi, -31) == []  # more than is free: refused
    assert sim.transfer_securities(account, sber.uid, 0) == []
    sim.transfer_securities(account, sber.figi, -10)
    sim.advance(5)
    sim.transfer_securities(account, GAZP_FIGI, 7)
    with pytest.raises(ConfigurationError):
        sim.transfer_securities(account, "NO_SUCH_TQBR", 1)
    with pytest.raises(ConfigurationError):
        sim.transfer_securities(account, SBER, 1.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        sim.transfer_securities("2999999999", SBER, 1)

    moved = sim.broker.securities_movements(account)
    assert [(mv.instrument_uid, mv.units) for mv in moved] == [
        (sber.uid, 30),
        (sber.uid, -10),
        (sim.index[GAZP_FIGI].uid, 7),
    ]
    listing = call(sim, "GetOperationsByCursor", m.GetOperationsByCursorRequest(account_id=account))
    assert [(i.cursor, i.type, i.quantity) for i in listing.items] == [
        ("S3", m.OperationType.OPERATION_TYPE_INPUT_SECURITIES, 7),
        ("S2", m.OperationType.OPERATION_TYPE_OUTPUT_SECURITIES, 10),
        ("S1", m.OperationType.OPERATION_TYPE_INPUT_SECURITIES, 30),
        ("M1", m.OperationType.OPERATION_TYPE_INPUT, 0),
    ]
    for item, movement in zip(listing.items[:3], reversed(moved), strict=True):
        instrument = sim.index[movement.instrument_uid]
        assert item.id == item.cursor and item.broker_account_id == account
        assert item.date == movement.time
        assert item.state is m.OperationState.OPERATION_STATE_EXECUTED
        assert item.quantity_done == item.quantity == abs(movement.units)
        assert (item.instrument_uid, item.figi, item.position_uid) == (
            instrument.uid,
            instrument.figi,
            instrument.position_uid,
        )
        assert (item.instrument_type, item.instrument_kind) == (
            "share",
            m.InstrumentType.INSTRUMENT_TYPE_SHARE,
        )
        assert item.payment == m.Money(Decimal(0), "rub") and item.trades_info is None

    by_instrument = m.GetOperationsByCursorRequest(account_id=account, instrument_id=SBER, limit=1)
    assert [i.cursor for p in pages(sim, by_instrument) for i in p.items] == ["S2", "S1"]
    outputs = m.GetOperationsByCursorRequest(
        account_id=account, operation_types=(m.OperationType.OPERATION_TYPE_OUTPUT_SECURITIES,)
    )
    assert [i.cursor for i in call(sim, "GetOperationsByCursor", outputs).items] == ["S2"]

    positions = call(sim, "GetPositions", m.GetPositionsRequest(account_id=account))
    assert [(s.instrument_uid, s.balance, s.blocked) for s in positions.securities] == [
        (sber.uid, 20, 0),
        (sim.index[GAZP_FIGI].uid, 7, 0),
    ]
    assert positions.money == (m.Money(Decimal(250_100), "rub"),)
    portfolio = call(sim, "GetPortfolio", m.PortfolioRequest(account_id=account))
    assert portfolio == sim.broker.portfolio(account, sim.market.quotes())
    assert [(p.instrument_uid, p.quantity) for p in portfolio.positions[:2]] == [
        (sber.uid, 20),
        (sim.index[GAZP_FIGI].uid, 7),
    ]


def test_a_client_streams_the_positions_and_portfolio_of_a_transfer(sim: Simulator) -> None:
    """End to end: rxinvest's client, subscribed to positions and portfolio, sees a transfer."""
    import queue

    import rxinvest

    account = sim.accounts[1]
    sber = sim.index[SBER]
    received: dict[str, queue.Queue[Any]] = {"positions": queue.Queue(), "portfolio": queue.Queue()}

    def next_of(name: str, kind: type) -> Any:
        for _ in range(MAX_PAGES):  # bounded: each get waits 10 s at most
            event = received[name].get(timeout=10)
            if isinstance(event, kind):
                return event
        raise AssertionError(f"no {kind.__name__} on {name}")

    with rxinvest.connect(sim.token, target=sim.base_url) as client:
        subscriptions = [
            client.operations.positions(account).subscribe(received["positions"].put),
            client.operations.portfolio(account).subscribe(received["portfolio"].put),
        ]
        initial = next_of("positions", m.PositionsResponse)  # subscribed: what follows is live
        assert initial.securities == ()
        assert next_of("portfolio", m.PortfolioResponse).account_id == account
        (sent,) = sim.transfer_securities(account, SBER, 40)
        change = next_of("positions", m.PositionData)
        assert change == sent
        assert change.account_id == account and change.money == ()
        assert [(s.instrument_uid, s.balance, s.blocked) for s in change.securities] == [(sber.uid, 40, 0)]
        portfolio = next_of("portfolio", m.PortfolioResponse)
        assert [
            (p.instrument_uid, p.quantity) for p in portfolio.positions if p.instrument_type == "share"
        ] == [(sber.uid, 40)]
        sim.transfer_securities(account, SBER, -40)
        out = next_of("positions", m.PositionData)
        assert [(s.instrument_uid, s.balance) for s in out.securities] == [(sber.uid, 0)]
        for subscription in subscriptions:
            subscription.dispose()
