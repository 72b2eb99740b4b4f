"""decode(encode(x)) == x for every model class, in both dialects, with and without default fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.model import unary as unary_module
from rxinvest.testing.strategies import messages, model_classes

DIALECTS = ["json", "json-proto"]

RESPONSES = {
    "MarketDataStream": [
        m.SubscribeCandlesResponse,
        m.SubscribeOrderBookResponse,
        m.SubscribeTradesResponse,
        m.SubscribeInfoResponse,
        m.SubscribeLastPriceResponse,
        m.Candle,
        m.Trade,
        m.OrderBook,
        m.TradingStatus,
        m.LastPrice,
        m.OpenInterest,
        m.Ping,
    ],
    "OrderStateStream": [m.OrderState, m.Ping, m.SubscriptionResponse],
    "TradesStream": [m.OrderTrades, m.Ping, m.SubscriptionResponse],
    "PortfolioStream": [m.PortfolioSubscriptionResult, m.PortfolioResponse, m.Ping],
    "PositionsStream": [m.PositionsSubscriptionResult, m.PositionData, m.PositionsResponse, m.Ping],
}
REQUESTS = {
    "MarketDataStream": [
        m.SubscribeCandlesRequest,
        m.SubscribeOrderBookRequest,
        m.SubscribeTradesRequest,
        m.SubscribeInfoRequest,
        m.SubscribeLastPriceRequest,
        m.GetMySubscriptions,
        m.PingRequest,
        m.PingDelaySettings,
    ],
    "MarketDataServerSideStream": [m.MarketDataServerSideStreamRequest],
    "OrderStateStream": [m.OrderStateStreamRequest],
    "TradesStream": [m.TradesStreamRequest],
    "PortfolioStream": [m.PortfolioStreamRequest],
    "PositionsStream": [m.PositionsStreamRequest],
}


def _cases(table: dict[str, list[type]]) -> list[Any]:
    return [
        pytest.param(stream, cls, id=f"{stream}-{cls.__name__}")
        for stream, classes in table.items()
        for cls in classes
    ]


@pytest.mark.parametrize("cls", model_classes(), ids=lambda c: c.__name__)
@given(data=st.data(), dialect=st.sampled_from(DIALECTS), include_defaults=st.booleans())
def test_every_class_round_trips_through_its_json_object(
    cls: type, data: st.DataObject, dialect: str, include_defaults: bool
) -> None:
    value = data.draw(messages(cls))
    assert wire.load(cls, wire.dump(value, dialect=dialect, include_defaults=include_defaults)) == value


@pytest.mark.parametrize(("stream", "cls"), _cases(RESPONSES))
@given(data=st.data(), dialect=st.sampled_from(DIALECTS), include_defaults=st.booleans())
def test_server_messages_round_trip_as_frames(
    stream: str, cls: type, data: st.DataObject, dialect: str, include_defaults: bool
) -> None:
    value = data.draw(messages(cls))
    frame = wire.encode(value, dialect=dialect, include_defaults=include_defaults)
    decoded = wire.decode(frame, stream=stream)
    assert type(decoded) is cls
    assert decoded == value
    assert hash(decoded) == hash(value)


@pytest.mark.parametrize(("stream", "cls"), _cases(REQUESTS))
@given(data=st.data(), dialect=st.sampled_from(DIALECTS), include_defaults=st.booleans())
def test_client_requests_round_trip_as_frames(
    stream: str, cls: type, data: st.DataObject, dialect: str, include_defaults: bool
) -> None:
    value = data.draw(messages(cls))
    frame = wire.encode(value, dialect=dialect, include_defaults=include_defaults)
    assert wire.decode_request(frame, stream=stream) == value


def test_the_tables_above_cover_every_message_class() -> None:
    covered = {cls for table in (RESPONSES, REQUESTS) for classes in table.values() for cls in classes}
    nested = {
        m.CandleInstrument, m.OrderBookInstrument, m.TradeInstrument, m.InfoInstrument, m.LastPriceInstrument,
        m.CandleSubscription, m.OrderBookSubscription, m.TradeSubscription, m.InfoSubscription,
        m.LastPriceSubscription, m.Order, m.ErrorDetail, m.OrderTrade, m.AccountSubscriptionStatus,
        m.PortfolioPosition, m.VirtualPortfolioPosition, m.PositionsSubscriptionStatus, m.PositionsMoney,
        m.PositionsSecurities, m.PositionsFutures, m.PositionsOptions, m.RpcStatus,
    }  # fmt: skip
    # The unary REST messages of gap recovery: covered by tests/wire/test_unary.py.
    unary = {getattr(m, name) for name in unary_module.__all__ if isinstance(getattr(m, name), type)}
    assert covered | nested | unary == set(model_classes())
