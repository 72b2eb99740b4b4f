"""The unary methods' wire: request and answer bodies, error bodies, REST endpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError, DecodeError, EncodeError
from rxinvest.model import unary
from rxinvest.testing.strategies import messages
from rxinvest.wire import Unary

METHODS = list(Unary)
# The contract, written out by hand from the proto files (not read from the code under test).
CONTRACT = {
    "GetOrders": ("OrdersService", m.GetOrdersRequest, m.GetOrdersResponse),
    "GetOrderState": ("OrdersService", m.GetOrderStateRequest, m.OrderSnapshot),
    "GetOperationsByCursor": (
        "OperationsService",
        m.GetOperationsByCursorRequest,
        m.GetOperationsByCursorResponse,
    ),
    "GetPositions": ("OperationsService", m.GetPositionsRequest, m.PositionsResponse),
    "GetPortfolio": ("OperationsService", m.PortfolioRequest, m.PortfolioResponse),
}


def test_the_methods_table_is_the_contract() -> None:
    assert {u.value for u in Unary} == set(CONTRACT)
    assert set(wire.UNARY_TYPES) == set(Unary)
    for method in Unary:
        service, request, response = CONTRACT[method.value]
        assert method.service == service
        assert method.path == f"tinkoff.public.invest.api.contract.v1.{service}/{method.value}"
        assert wire.UNARY_TYPES[method] == (request, response)
        assert wire.UNARY_TYPES[method].request is request and wire.UNARY_TYPES[method].response is response
    assert Unary.GET_ORDERS.path == "tinkoff.public.invest.api.contract.v1.OrdersService/GetOrders"


# --- round trips ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=str)
@given(data=st.data(), include_defaults=st.booleans())
def test_requests_round_trip_through_their_bodies(
    method: Unary, data: st.DataObject, include_defaults: bool
) -> None:
    request = data.draw(messages(CONTRACT[method.value][1]))
    body = wire.encode_unary(request, include_defaults=include_defaults)
    assert isinstance(body, bytes)
    assert wire.decode_unary_request(method, body) == request


@pytest.mark.parametrize("method", METHODS, ids=str)
@given(data=st.data(), include_defaults=st.booleans())
def test_answers_round_trip_through_their_bodies(
    method: Unary, data: st.DataObject, include_defaults: bool
) -> None:
    answer = data.draw(messages(CONTRACT[method.value][2]))
    decoded = wire.decode_unary(method, wire.encode_unary(answer, include_defaults=include_defaults))
    assert type(decoded) is type(answer)
    assert decoded == answer
    assert hash(decoded) == hash(answer)


@given(data=st.data(), dialect=st.sampled_from(["json", "json-proto"]))
def test_answers_decode_from_either_key_style(data: st.DataObject, dialect: str) -> None:
    answer = data.draw(messages(m.GetOperationsByCursorResponse))
    body = json.dumps(wire.dump(answer, dialect=dialect, include_defaults=True)).encode()
    assert wire.decode_unary(Unary.GET_OPERATIONS_BY_CURSOR, body) == answer


def test_every_unary_class_is_reached_by_a_method() -> None:
    reached = {cls for types in wire.UNARY_TYPES.values() for cls in types}
    nested = {
        m.OrderStage, m.OperationItem, m.OperationItemTrades, m.OperationItemTrade, m.ChildOperationItem,
        m.GetOrdersRequestFilters,
    }  # fmt: skip
    assert {getattr(unary, name) for name in unary.__all__} <= reached | nested


# --- hand-written bodies: the oracle -----------------------------------------------------------------

ORDER_STATE_BODY = b"""{
  "orderId": "49000000001",
  "executionReportStatus": "EXECUTION_REPORT_STATUS_PARTIALLYFILL",
  "lotsRequested": "3",
  "lotsExecuted": "2",
  "initialOrderPrice": {"currency": "RUB", "units": "897", "nano": 300000000},
  "executedOrderPrice": {"currency": "rub", "units": "598", "nano": 200000000},
  "totalOrderAmount": {"currency": "rub", "units": "598", "nano": 500000000},
  "averagePositionPrice": {"currency": "rub", "units": "299", "nano": 100000000},
  "initialCommission": {"currency": "rub", "units": "0", "nano": 0},
  "executedCommission": {"currency": "rub", "units": "0", "nano": 300000000},
  "figi": "BBG004730N88",
  "direction": "ORDER_DIRECTION_BUY",
  "initialSecurityPrice": {"currency": "rub", "units": "299", "nano": 100000000},
  "stages": [
    {"price": {"currency": "rub", "units": "299", "nano": 100000000}, "quantity": "2",
     "tradeId": "7600000001", "executionTime": "2024-05-06T07:08:09.123456Z"}
  ],
  "serviceCommission": {"currency": "rub"},
  "currency": "rub",
  "orderType": "ORDER_TYPE_LIMIT",
  "orderDate": "2024-05-06T07:08:00Z",
  "instrumentUid": "e6123145-9665-43e0-8413-cd61b8aa9b13",
  "orderRequestId": "3f6f2b0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
  "someFieldOfALaterRelease": {"x": 1}
}"""


def rub(text: str) -> m.Money:
    return m.Money(Decimal(text), "rub")


def test_a_hand_written_order_state_decodes_to_a_snapshot() -> None:
    expected = m.OrderSnapshot(
        order_id="49000000001",
        execution_report_status=m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
        lots_requested=3,
        lots_executed=2,
        initial_order_price=rub("897.3"),
        executed_order_price=rub("598.2"),
        total_order_amount=rub("598.5"),
        average_position_price=rub("299.1"),
        initial_commission=rub("0"),
        executed_commission=rub("0.3"),
        figi="BBG004730N88",
        direction=m.OrderDirection.ORDER_DIRECTION_BUY,
        initial_security_price=rub("299.1"),
        stages=(
            m.OrderStage(
                price=rub("299.1"),
                quantity=2,
                trade_id="7600000001",
                execution_time=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            ),
        ),
        service_commission=rub("0"),
        currency="rub",
        order_type=m.OrderType.ORDER_TYPE_LIMIT,
        order_date=datetime(2024, 5, 6, 7, 8, tzinfo=UTC),
        instrument_uid="e6123145-9665-43e0-8413-cd61b8aa9b13",
        order_request_id="3f6f2b0a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
    )
    assert wire.decode_unary(Unary.GET_ORDER_STATE, ORDER_STATE_BODY) == expected
    orders = b'{"orders": [' + ORDER_STATE_BODY + b"]}"
    assert wire.decode_unary(Unary.GET_ORDERS, orders) == m.GetOrdersResponse(orders=(expected,))
    assert wire.decode_unary("GetOrders", b"{}") == m.GetOrdersResponse()


# proto field names (the json-proto style), including the keyword-named ``yield``.
OPERATIONS_BODY = """{
  "has_next": true,
  "next_cursor": "c2",
  "items": [{
    "cursor": "c1", "broker_account_id": "2000000001", "id": "op1", "parent_operation_id": "",
    "name": "Покупка ценных бумаг", "date": "2024-05-06T10:08:09+03:00",
    "type": "OPERATION_TYPE_BUY", "description": "", "state": "OPERATION_STATE_EXECUTED",
    "instrument_uid": "u1", "figi": "BBG004730N88", "instrument_type": "share",
    "instrument_kind": "INSTRUMENT_TYPE_SHARE", "position_uid": "p1",
    "payment": {"currency": "rub", "units": "-2990", "nano": -500000000},
    "price": {"currency": "rub", "units": "299", "nano": 50000000},
    "commission": {"currency": "rub", "units": "-1", "nano": -500000000},
    "yield": {"currency": "rub", "units": "12"}, "yield_relative": {"units": "0", "nano": 40000000},
    "accrued_int": {"currency": "rub"},
    "quantity": "10", "quantity_rest": "0", "quantity_done": 10,
    "cancel_date_time": null, "cancel_reason": "",
    "trades_info": {"trades": [{"num": "7600000001", "date": "2024-05-06T07:08:09Z", "quantity": "10",
      "price": {"currency": "rub", "units": "299", "nano": 50000000},
      "yield": {"currency": "rub", "units": "-3"}, "yield_relative": {"units": "-1"}}]},
    "asset_uid": "a1",
    "child_operations": [{"instrument_uid": "u2", "payment": {"currency": "rub", "units": "5"}}]
  }]
}""".encode()


def test_a_hand_written_operations_page_decodes_with_its_keyword_fields() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    expected = m.GetOperationsByCursorResponse(
        has_next=True,
        next_cursor="c2",
        items=(
            m.OperationItem(
                cursor="c1",
                broker_account_id="2000000001",
                id="op1",
                name="Покупка ценных бумаг",
                date=moment,
                type=m.OperationType.OPERATION_TYPE_BUY,
                state=m.OperationState.OPERATION_STATE_EXECUTED,
                instrument_uid="u1",
                figi="BBG004730N88",
                instrument_type="share",
                instrument_kind=m.InstrumentType.INSTRUMENT_TYPE_SHARE,
                position_uid="p1",
                payment=rub("-2990.5"),
                price=rub("299.05"),
                commission=rub("-1.5"),
                yield_=rub("12"),
                yield_relative=Decimal("0.04"),
                accrued_int=rub("0"),
                quantity=10,
                quantity_done=10,
                trades_info=m.OperationItemTrades(
                    trades=(
                        m.OperationItemTrade(
                            num="7600000001",
                            date=moment,
                            quantity=10,
                            price=rub("299.05"),
                            yield_=rub("-3"),
                            yield_relative=Decimal(-1),
                        ),
                    )
                ),
                asset_uid="a1",
                child_operations=(m.ChildOperationItem(instrument_uid="u2", payment=rub("5")),),
            ),
        ),
    )
    decoded = wire.decode_unary(Unary.GET_OPERATIONS_BY_CURSOR, OPERATIONS_BODY)
    assert decoded == expected
    assert decoded.items[0].date.tzinfo is UTC


def test_positions_and_portfolio_answers_decode_with_their_account() -> None:
    positions = b"""{"money": [{"currency": "rub", "units": "1000"}], "blocked": [],
      "securities": [{"figi": "F", "blocked": "2", "balance": "8", "instrumentUid": "u",
                      "instrumentType": "share"}],
      "limitsLoadingInProgress": false, "futures": [], "options": [], "accountId": "2000000001"}"""
    assert wire.decode_unary(Unary.GET_POSITIONS, positions) == m.PositionsResponse(
        money=(rub("1000"),),
        securities=(
            m.PositionsSecurities(
                figi="F", blocked=2, balance=8, instrument_uid="u", instrument_type="share"
            ),
        ),
        account_id="2000000001",
    )
    portfolio = b"""{"totalAmountShares": {"currency": "rub", "units": "100"},
      "expectedYield": {"units": "1"}, "positions": [{"figi": "F", "quantity": {"units": "3"}}],
      "accountId": "2000000001"}"""
    assert wire.decode_unary(Unary.GET_PORTFOLIO, portfolio) == m.PortfolioResponse(
        total_amount_shares=rub("100"),
        expected_yield=Decimal(1),
        positions=(m.PortfolioPosition(figi="F", quantity=Decimal(3)),),
        account_id="2000000001",
    )


# --- the ``from`` keyword and request bodies ---------------------------------------------------------


def test_from_travels_under_its_proto_name() -> None:
    request = m.GetOperationsByCursorRequest(
        account_id="2000000001",
        instrument_id="BBG004730N88",
        from_=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        to=datetime(2024, 2, 1, tzinfo=UTC),
        cursor="c9",
        limit=50,
        operation_types=(m.OperationType.OPERATION_TYPE_BUY, m.OperationType.OPERATION_TYPE_SELL),
        state=m.OperationState.OPERATION_STATE_EXECUTED,
        without_commissions=True,
        without_trades=False,
    )
    assert json.loads(wire.encode_unary(request)) == {
        "accountId": "2000000001",
        "instrumentId": "BBG004730N88",
        "from": "2024-01-02T03:04:05Z",
        "to": "2024-02-01T00:00:00Z",
        "cursor": "c9",
        "limit": 50,
        "operationTypes": ["OPERATION_TYPE_BUY", "OPERATION_TYPE_SELL"],
        "state": "OPERATION_STATE_EXECUTED",
        "withoutCommissions": True,
        "withoutTrades": False,
    }
    assert wire.dump(request, dialect="json-proto")["from"] == "2024-01-02T03:04:05Z"
    hand_written = b'{"account_id": "2000000001", "from": "2024-01-02T06:04:05+03:00", "limit": "7"}'
    assert wire.decode_unary_request(Unary.GET_OPERATIONS_BY_CURSOR, hand_written) == (
        m.GetOperationsByCursorRequest(
            account_id="2000000001", from_=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), limit=7
        )
    )
    # The attribute's spelling is not a wire key: ignored like any unknown key.
    assert (
        wire.decode_unary_request(Unary.GET_OPERATIONS_BY_CURSOR, b'{"from_": "2024-01-02T03:04:05Z"}')
        == m.GetOperationsByCursorRequest()
    )


def test_requests_leave_defaults_out_and_use_camel_case() -> None:
    assert json.loads(wire.encode_unary(m.GetOrderStateRequest(account_id="1", order_id="2"))) == {
        "accountId": "1",
        "orderId": "2",
    }
    assert json.loads(wire.encode_unary(m.GetOrdersRequest())) == {}
    assert json.loads(
        wire.encode_unary(m.PortfolioRequest(account_id="1", currency=m.CurrencyRequest.RUB))
    ) == {
        "accountId": "1",
        "currency": "RUB",
    }
    full = json.loads(wire.encode_unary(m.GetPositionsRequest(), include_defaults=True))
    assert full == {"accountId": ""}


def test_encode_unary_refuses_what_is_no_unary_message() -> None:
    with pytest.raises(EncodeError):
        wire.encode_unary(m.Ping())
    with pytest.raises(EncodeError):
        wire.encode_unary(m.GetOperationsByCursorRequest(from_=datetime(2024, 1, 1)))  # naive
    with pytest.raises(EncodeError):
        wire.encode_unary(m.GetOperationsByCursorRequest(limit=2**31))  # int32


# --- malformed bodies --------------------------------------------------------------------------------

MALFORMED = [
    b"",
    b"not json",
    b"[]",
    b"null",
    b'"text"',
    b'{"orderId": 5}',
    b'{"lotsRequested": "1.5"}',
    b'{"lotsRequested": "9223372036854775808"}',
    b'{"orderDate": "yesterday"}',
    b'{"orderDate": "2024-01-01T00:00:00"}',  # no offset
    b'{"stages": {"quantity": "1"}}',
    b'{"stages": [{"price": {"units": "1", "nano": 1000000000}}]}',
    b'{"orderId": "1"} trailing',
    b'{"orderId": "\xff"}',
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_answers_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        wire.decode_unary(Unary.GET_ORDER_STATE, body)
    assert caught.value.raw == body.decode("utf-8", errors="replace")[:256]


@pytest.mark.parametrize(
    "body", [b"{", b'{"accountId": 1}', b'{"limit": "many"}', b'{"operationTypes": "OPERATION_TYPE_BUY"}']
)
def test_malformed_requests_raise_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        wire.decode_unary_request(Unary.GET_OPERATIONS_BY_CURSOR, body)


def test_unknown_enum_names_decode_to_the_zero_member() -> None:
    decoded = wire.decode_unary(
        Unary.GET_OPERATIONS_BY_CURSOR, b'{"items": [{"type": "OPERATION_TYPE_FROM_2030", "state": 99}]}'
    )
    assert decoded.items[0].type is m.OperationType.OPERATION_TYPE_UNSPECIFIED
    assert decoded.items[0].state is m.OperationState.OPERATION_STATE_UNSPECIFIED


def test_unknown_methods_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        wire.decode_unary("PostOrder", b"{}")
    with pytest.raises(ConfigurationError):
        wire.decode_unary_request("GetOrderStateStream", b"{}")


# --- error bodies ------------------------------------------------------------------------------------


def test_a_gateway_error_body_decodes_to_its_status() -> None:
    body = b'{"code": 7, "message": "40002", "description": "Insufficient privileges"}'
    assert wire.decode_unary_error(body) == m.RpcStatus(
        code=7, message="40002", details=('{"description":"Insufficient privileges"}',)
    )
    with_details = b'{"code": "3", "message": "30021", "details": [{"b": 1, "a": "x"}]}'
    assert wire.decode_unary_error(with_details) == m.RpcStatus(
        code=3, message="30021", details=('{"a":"x","b":1}',)
    )
    assert wire.decode_unary_error('{"message": "50005"}') == m.RpcStatus(code=2, message="50005")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>\n", "<html><body>502 Bad Gateway</body></html>"),
        (b"", ""),
        (b"[1, 2]", "[1, 2]"),
        (b'{"error": "x"}', '{"error": "x"}'),
        (b"\xff oops", "\ufffd oops"),
        (b"x" * 1000, "x" * 256),
    ],
)
def test_other_error_bodies_keep_their_text(body: bytes, message: str) -> None:
    assert wire.decode_unary_error(body) == m.RpcStatus(code=2, message=message)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_decode_unary_error_never_raises(body: bytes) -> None:
    assert isinstance(wire.decode_unary_error(body), m.RpcStatus)


def test_the_error_body_the_simulator_writes_reads_back() -> None:
    body = wire.encode_unary_error(5, "50004", "account not found")
    assert json.loads(body) == {"code": 5, "message": "50004", "description": "account not found"}
    assert wire.decode_unary_error(body) == m.RpcStatus(
        code=5, message="50004", details=('{"description":"account not found"}',)
    )


# --- REST base URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ws", "rest"),
    [
        ("wss://invest-public-api.tinkoff.ru/ws/", "https://invest-public-api.tinkoff.ru/rest/"),
        (
            "wss://sandbox-invest-public-api.tinkoff.ru/ws/",
            "https://sandbox-invest-public-api.tinkoff.ru/rest/",
        ),
        ("ws://127.0.0.1:54321/ws/", "http://127.0.0.1:54321/rest/"),
        ("ws://localhost:8080/ws", "http://localhost:8080/rest/"),
        ("wss://[::1]:443/ws/", "https://[::1]:443/rest/"),
    ],
)
def test_rest_base_url_maps_the_proxy_to_its_gateway(ws: str, rest: str) -> None:
    assert wire.rest_base_url(ws) == rest


def test_the_known_bases_map_to_the_rest_constants() -> None:
    assert wire.PROD_REST_BASE_URL == "https://invest-public-api.tinkoff.ru/rest/"
    assert wire.SANDBOX_REST_BASE_URL == "https://sandbox-invest-public-api.tinkoff.ru/rest/"
    assert wire.rest_base_url(wire.PROD_BASE_URL) == wire.PROD_REST_BASE_URL
    assert wire.rest_base_url(wire.SANDBOX_BASE_URL) == wire.SANDBOX_REST_BASE_URL
    assert wire.rest_base_url(wire.resolve_base_url("ws://127.0.0.1:9/ws")) == "http://127.0.0.1:9/rest/"


@pytest.mark.parametrize(
    "bad",
    [
        "https://invest-public-api.tinkoff.ru/rest/",
        "http://127.0.0.1:80/ws/",
        "wss://invest-public-api.tinkoff.ru/",
        "wss://invest-public-api.tinkoff.ru/ws/x",
        "ws:///ws/",
        "ws://127.0.0.1:99999/ws/",
        "ws://127.0.0.1:1/ws/?a=b",
        "prod",
        "",
    ],
)
def test_rest_base_url_refuses_anything_else(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        wire.rest_base_url(bad)
