"""Golden tests: every sample message in ``shared/samples`` against a hand-written expectation.

The expected objects are typed from reading the JSON files, never computed by the codec, so these tests
check the decoder independently. Each sample is also re-encoded (both dialects) and decoded again, and
its key paths must all appear in the encoder's output: the encoder writes the keys the real API uses.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from rxinvest import model as m
from rxinvest import wire

# The checkout sits next to ``shared/``.
SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "samples"
if not SAMPLES.is_dir():
    pytest.skip(f"sample messages not found at {SAMPLES}", allow_module_level=True)

ALL_STREAMS = ("MarketDataStream", "OrderStateStream", "TradesStream", "PortfolioStream", "PositionsStream")

SBER_FIGI = "BBG004730RP0"
SBER_UID = "962e2a95-02a9-4171-abd7-aa198dbe643a"
ACCOUNT = "*accountId"

Action = m.SubscriptionAction
Status = m.SubscriptionStatus


def at(*args: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)


def rub(amount: str) -> m.Money:
    return m.Money(Decimal(amount), "rub")


def level(price: str, quantity: int) -> m.Order:
    return m.Order(price=Decimal(price), quantity=quantity)


# --- the expectations, one per sample file ------------------------------------------------------------

EXPECTED: dict[str, Any] = {
    "MarketDataStream/candle.json": m.Candle(
        figi=SBER_FIGI,
        interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
        open=Decimal("179.05"),
        high=Decimal("179.07"),
        low=Decimal("178.95"),
        close=Decimal("178.95"),
        volume=4279,
        time=at(2023, 5, 16, 8, 44, 0),
        last_trade_ts=at(2023, 5, 16, 8, 44, 27, 432487),
        instrument_uid=SBER_UID,
    ),
    "MarketDataStream/last_price.json": m.LastPrice(
        figi=SBER_FIGI,
        price=Decimal("178.79"),
        time=at(2023, 5, 16, 8, 49, 31, 85056),
        instrument_uid=SBER_UID,
    ),
    "MarketDataStream/orderbook.json": m.OrderBook(
        figi=SBER_FIGI,
        depth=10,
        is_consistent=True,
        bids=(
            level("178.97", 20),
            level("178.96", 27),
            level("178.95", 34),
            level("178.94", 41),
            level("178.93", 48),
            level("178.92", 55),
            level("178.91", 62),
            level("178.90", 69),
            level("178.89", 76),
            level("178.88", 83),
        ),
        asks=(
            level("178.98", 3),
            level("178.99", 8),
            level("179", 13),
            level("179.01", 18),
            level("179.02", 23),
            level("179.03", 28),
            level("179.04", 33),
            level("179.05", 38),
            level("179.06", 43),
            level("179.07", 48),
        ),
        time=at(2023, 5, 16, 8, 54, 0, 549662),
        limit_up=Decimal("191.44"),
        limit_down=Decimal("156.24"),
        instrument_uid=SBER_UID,
        order_book_type=m.OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
    ),
    "MarketDataStream/subscribe_candles_request.json": m.SubscribeCandlesRequest(
        subscription_action=Action.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(
            m.CandleInstrument(
                interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
                instrument_id=SBER_UID,
            ),
        ),
        waiting_close=False,
    ),
    "MarketDataStream/subscribe_candles_response.json": m.SubscribeCandlesResponse(
        tracking_id="066f2eeff1a0b76f5a6c05b3b41f23df",
        candles_subscriptions=(
            m.CandleSubscription(
                figi=SBER_FIGI,
                interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE,
                subscription_status=Status.SUBSCRIPTION_STATUS_SUCCESS,
                instrument_uid=SBER_UID,
                waiting_close=False,
                stream_id="8d9a6312-8965-4734-a571-e9f1b599427d",
                subscription_id="72d91c60-a094-482b-89af-a604ae87d234",
            ),
        ),
    ),
    "MarketDataStream/subscribe_info_request.json": m.SubscribeInfoRequest(
        subscription_action=Action.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(m.InfoInstrument(instrument_id=SBER_UID),),
    ),
    "MarketDataStream/subscribe_info_response.json": m.SubscribeInfoResponse(
        tracking_id="ca4af996193cf5d9b3b933fa0ad61910",
        info_subscriptions=(
            m.InfoSubscription(
                figi=SBER_FIGI,
                subscription_status=Status.SUBSCRIPTION_STATUS_SUCCESS,
                instrument_uid=SBER_UID,
                stream_id="e99563dc-b8cd-4930-9a0a-7c31988c0007",
                subscription_id="dc550001-b138-4197-9792-84f304c706c2",
            ),
        ),
    ),
    "MarketDataStream/subscribe_last_price_request.json": m.SubscribeLastPriceRequest(
        subscription_action=Action.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(m.LastPriceInstrument(instrument_id=SBER_UID),),
    ),
    "MarketDataStream/subscribe_last_price_response.json": m.SubscribeLastPriceResponse(
        tracking_id="9db9ee41448a36bf3526c8bd8d1a6c83",
        last_price_subscriptions=(
            m.LastPriceSubscription(
                figi=SBER_FIGI,
                subscription_status=Status.SUBSCRIPTION_STATUS_SUCCESS,
                instrument_uid=SBER_UID,
                stream_id="b620cf01-0080-4e14-8937-1cdcb92201a0",
                subscription_id="d2969818-2c02-40f2-9d87-668a9b41e9c4",
            ),
        ),
    ),
    "MarketDataStream/subscribe_order_book_request.json": m.SubscribeOrderBookRequest(
        subscription_action=Action.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(m.OrderBookInstrument(depth=10, instrument_id=SBER_UID),),
    ),
    "MarketDataStream/subscribe_order_book_response.json": m.SubscribeOrderBookResponse(
        tracking_id="0193243a978d7363f55813841f6da08e",
        order_book_subscriptions=(
            m.OrderBookSubscription(
                figi=SBER_FIGI,
                depth=10,
                subscription_status=Status.SUBSCRIPTION_STATUS_SUCCESS,
                instrument_uid=SBER_UID,
                stream_id="02df047c-a6b5-4e02-8459-d754978f869a",
                subscription_id="48e7432d-4c9f-4457-9b71-286a19d9ba30",
                order_book_type=m.OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
            ),
        ),
    ),
    "MarketDataStream/subscribe_trades_request.json": m.SubscribeTradesRequest(
        subscription_action=Action.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(m.TradeInstrument(instrument_id=SBER_UID),),
    ),
    "MarketDataStream/subscribe_trades_response.json": m.SubscribeTradesResponse(
        tracking_id="d39351591fce577df57b2e9bea6dde1b",
        trade_subscriptions=(
            m.TradeSubscription(
                figi=SBER_FIGI,
                subscription_status=Status.SUBSCRIPTION_STATUS_SUCCESS,
                instrument_uid=SBER_UID,
                stream_id="ffb815b3-6344-4c82-9ad6-6072f7bee1db",
                subscription_id="b34b5c06-0b4c-49e5-9f78-2aa7bc3df3a3",
            ),
        ),
    ),
    "MarketDataStream/trade.json": m.Trade(
        figi=SBER_FIGI,
        direction=m.TradeDirection.TRADE_DIRECTION_SELL,
        price=Decimal("178.86"),
        quantity=200,
        time=at(2023, 5, 16, 8, 50, 22, 807741),
        instrument_uid=SBER_UID,
    ),
    "MarketDataStream/trading_status.json": m.TradingStatus(
        figi=SBER_FIGI,
        trading_status=m.SecurityTradingStatus.SECURITY_TRADING_STATUS_NORMAL_TRADING,
        time=at(2023, 5, 16, 7, 0, 0, 750460),
        limit_order_available_flag=True,
        market_order_available_flag=True,
        instrument_uid=SBER_UID,
    ),
    "OrderStateStream/order_state.json": m.OrderState(
        order_id="49478317886",
        order_request_id="ec5e2892-58ca-4851-bc47-c2acf1368fde",
        client_code="770083706834",
        created_at=at(2024, 7, 15, 7, 7, 17, 321267),
        execution_report_status=m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW,
        ticker="POLY",
        class_code="TQBR",
        lot_size=1,
        direction=m.OrderDirection.ORDER_DIRECTION_BUY,
        time_in_force=m.TimeInForceType.TIME_IN_FORCE_DAY,
        order_type=m.OrderType.ORDER_TYPE_LIMIT,
        account_id="2223337448",
        initial_order_price=rub("195.2"),
        order_price=rub("195.2"),
        amount=rub("195.2"),
        executed_order_price=rub("195.2"),
        currency="RUB",  # a plain string field: kept as sent
        lots_requested=1,
        lots_executed=1,
        lots_left=0,
        lots_cancelled=0,
        marker=m.MarkerType.MARKER_UNKNOWN,  # present on the wire, so not None
        trades=(
            m.OrderTrade(
                date_time=at(2024, 7, 15, 7, 7, 17, 321267),
                price=Decimal("195.2"),
                quantity=1,
                trade_id="7653265991",
            ),
        ),
        exchange="MOEX",
        instrument_uid="127361c2-32ec-448c-b3ec-602166f537ea",
    ),
    "OrderStateStream/request.json": m.OrderStateStreamRequest(accounts=(ACCOUNT,)),
    "PortfolioStream/portfolio.json": m.PortfolioResponse(
        total_amount_shares=rub("2787.7"),
        total_amount_bonds=rub("0"),
        total_amount_etf=rub("11.115"),
        total_amount_currencies=rub("3194.8436"),
        expected_yield=Decimal("9158.16"),
        positions=(
            m.PortfolioPosition(
                figi="BBG004S68473",
                instrument_type="share",
                quantity=Decimal("400"),
                average_position_price=rub("3.942567"),
                expected_yield=Decimal("6.352"),
                average_position_price_pt=Decimal("3.942567"),
                current_price=rub("4.193"),
                average_position_price_fifo=rub("3.956275"),
                quantity_lots=Decimal("4"),
                blocked=False,
                position_uid="427f9bcc-2cab-4561-bf94-942d4261fbb7",
                instrument_uid="2dfbc1fd-b92a-436e-b011-928c79e805f2",
            ),
        ),
        account_id=ACCOUNT,
        virtual_positions=(),
    ),
    "PortfolioStream/request.json": m.PortfolioStreamRequest(accounts=(ACCOUNT,)),
    "PortfolioStream/subscriptions.json": m.PortfolioSubscriptionResult(
        accounts=(
            m.AccountSubscriptionStatus(
                account_id=ACCOUNT,
                subscription_status=m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS,
            ),
        ),
    ),
    "PositionsStream/position.json": m.PositionData(
        account_id=ACCOUNT,
        money=(m.PositionsMoney(available_value=rub("3148.13"), blocked_value=rub("0.02")),),
        securities=(
            m.PositionsSecurities(
                figi="BBG00RPRPX12",
                blocked=0,
                balance=9,
                position_uid="eee36ccf-5f28-4419-9c29-c6465f39581a",
                instrument_uid="ade12bc5-07d9-44fe-b27a-1543e05bacfd",
                exchange_blocked=False,
                instrument_type="etf",
            ),
        ),
        futures=(),
        options=(),
        date=at(2023, 5, 16, 13, 29, 13, 411710),
    ),
    "PositionsStream/request.json": m.PositionsStreamRequest(accounts=(ACCOUNT,)),
    "PositionsStream/subscriptions.json": m.PositionsSubscriptionResult(
        accounts=(
            m.PositionsSubscriptionStatus(
                account_id=ACCOUNT,
                subscription_status=m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS,
            ),
        ),
    ),
    "TradesStream/order_trades.json": m.OrderTrades(
        order_id="36042910361",
        created_at=at(2023, 5, 16, 13, 27, 14, 682140),  # "...14.682140664Z": nanoseconds truncated
        direction=m.OrderDirection.ORDER_DIRECTION_SELL,
        figi="BBG00RPRPX12",
        trades=(
            m.OrderTrade(
                date_time=at(2023, 5, 16, 13, 27, 13, 423246),
                price=Decimal("1.235"),
                quantity=1,
                trade_id="7653265991",
            ),
        ),
        account_id=ACCOUNT,
        instrument_uid="ade12bc5-07d9-44fe-b27a-1543e05bacfd",
    ),
    "TradesStream/request.json": m.TradesStreamRequest(accounts=(ACCOUNT,)),
    # "...14.974035911Z": nanoseconds truncated, not rounded.
    "common/ping.json": m.Ping(time=at(2024, 4, 11, 8, 49, 14, 974035), stream_id=""),
}


# --- cases: (sample, stream) pairs --------------------------------------------------------------------


@attrs.frozen
class Case:
    path: str  # relative to SAMPLES
    stream: str

    @property
    def is_request(self) -> bool:
        return "request" in Path(self.path).name

    @property
    def wrapped(self) -> bool:
        """Whether the frame is a oneof (``{"candle": {...}}``); account-stream requests are plain objects."""
        return not self.is_request or self.stream == "MarketDataStream"

    def decode(self, data: str | bytes) -> Any:
        decoder = wire.decode_request if self.is_request else wire.decode
        return decoder(data, stream=self.stream)

    def read(self) -> bytes:
        return (SAMPLES / self.path).read_bytes()


def _cases() -> list[Case]:
    cases = []
    for path in EXPECTED:
        directory = path.split("/")[0]
        streams = ALL_STREAMS if directory == "common" else (directory,)
        cases.extend(Case(path, stream) for stream in streams)
    return cases


def _id(case: Case) -> str:
    name = case.path.removesuffix(".json")
    return name if name.startswith(case.stream) else f"{name}@{case.stream}"


CASES = pytest.mark.parametrize("case", _cases(), ids=_id)


def assert_identical(actual: Any, expected: Any, where: str = "") -> None:
    """Equality that also checks exact types (``1`` is not ``True``) and names the first differing field."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not a {type(expected).__name__}"
    if attrs.has(type(expected)):
        for field in attrs.fields(type(expected)):
            name = field.name
            assert_identical(getattr(actual, name), getattr(expected, name), f"{where}.{name}")
    elif isinstance(expected, tuple):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, expected {len(expected)}"
        for i, (item, expected_item) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(item, expected_item, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        if isinstance(expected, datetime):
            assert actual.tzinfo is UTC, f"{where}: {actual!r} is not in UTC"


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every nested key path of a JSON value; list elements share one ``[]`` path (their keys merged)."""
    if isinstance(value, dict):
        paths: set[str] = set()
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            paths |= {path} | key_paths(item, path)
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, f"{prefix}[]") for item in value))
    return set()


# --- tests --------------------------------------------------------------------------------------------


def test_every_sample_has_an_expectation() -> None:
    on_disk = {path.relative_to(SAMPLES).as_posix() for path in SAMPLES.rglob("*.json")}
    assert on_disk == set(EXPECTED), "write an expectation for each new sample file (and drop stale ones)"


@CASES
def test_decode(case: Case) -> None:
    expected = EXPECTED[case.path]
    decoded = case.decode(case.read())
    assert_identical(decoded, expected, type(expected).__name__)
    assert decoded == expected


@CASES
@pytest.mark.parametrize("include_defaults", [False, True], ids=["sparse", "full"])
@pytest.mark.parametrize("dialect", ["json", "json-proto"])
def test_reencode_roundtrip(case: Case, dialect: str, include_defaults: bool) -> None:
    decoded = case.decode(case.read())
    frame = wire.encode(decoded, dialect=dialect, include_defaults=include_defaults)
    assert_identical(case.decode(frame), decoded, f"re-decoded {type(decoded).__name__}")


@CASES
def test_encoder_writes_every_sample_key(case: Case) -> None:
    sample = json.loads(case.read())
    decoded = case.decode(case.read())
    dumped = wire.dump(decoded, include_defaults=True)
    if case.wrapped:
        (member,) = json.loads(wire.encode(decoded))  # the oneof key the encoder wraps the payload in
        dumped = {member: dumped}
    missing = key_paths(sample) - key_paths(dumped)
    assert not missing, f"keys of {case.path} the encoder does not write: {sorted(missing)}"
