"""The model's promises: frozen, slotted, by-value values; proto names; exact money; enum numbers."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.testing.strategies import messages, model_classes


@pytest.mark.parametrize("cls", [*model_classes(), m.Money], ids=lambda c: c.__name__)
def test_every_class_is_frozen_slotted_and_hashable(cls: type) -> None:
    value = cls()
    assert not hasattr(value, "__dict__")
    assert hash(value) == hash(cls())
    if attrs.fields(cls):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(value, attrs.fields(cls)[0].name, None)


@given(data=st.data())
def test_equal_values_hash_equal_and_survive_copy_and_pickle(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(model_classes()))
    value = data.draw(messages(cls))
    twin = cls(**attrs.asdict(value, recurse=False))
    assert value == twin and hash(value) == hash(twin)
    assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value


@given(data=st.data())
def test_decoded_values_are_indistinguishable_from_constructed_ones(data: st.DataObject) -> None:
    value = data.draw(messages(m.OrderBook))
    decoded = wire.decode(wire.encode(value), stream="MarketDataStream")
    rebuilt = m.OrderBook(**attrs.asdict(decoded, recurse=False))
    assert type(decoded) is m.OrderBook and type(decoded.bids[0] if decoded.bids else m.Order()) is m.Order
    assert decoded == rebuilt and hash(decoded) == hash(rebuilt) and repr(decoded) == repr(rebuilt)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        decoded.depth = 1  # type: ignore[misc]


def test_constructors_take_keywords_and_proto3_defaults() -> None:
    trade = m.Trade(figi="BBG004730RP0", quantity=3)
    assert trade.price is None and trade.direction is m.TradeDirection.TRADE_DIRECTION_UNSPECIFIED
    with pytest.raises(TypeError):
        m.Trade("BBG004730RP0")  # type: ignore[misc]


def test_money_compares_currencies_case_insensitively_and_amounts_exactly() -> None:
    assert m.Money(Decimal("195.20"), "RUB") == m.Money(Decimal("195.2"), "rub")
    assert m.Money(Decimal("195.2"), "RUB").currency == "rub"
    assert m.Money(Decimal("0.1") + Decimal("0.2"), "usd") == m.Money(Decimal("0.3"), "usd")


def test_attribute_names_are_proto_field_names() -> None:
    assert [f.name for f in attrs.fields(m.OrderBook)] == [
        "figi", "depth", "is_consistent", "bids", "asks", "time", "limit_up", "limit_down",
        "instrument_uid", "order_book_type", "ticker", "class_code",
    ]  # fmt: skip
    assert "ping_delay_millis" in attrs.fields_dict(m.OrderStateStreamRequest)
    assert "ping_delay_ms" in attrs.fields_dict(m.TradesStreamRequest)


@pytest.mark.parametrize(
    ("member", "number"),
    [
        (m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR, 13),
        (m.StatusCauseInfo.CAUSE_CANCELLED_BY_CLIENT, 15),
        (m.CandleSourceFilter.CANDLE_SOURCE_INCLUDE_WEEKEND, 3),
        (m.CandleSource.CANDLE_SOURCE_DEALER_WEEKEND, 2),
        (m.MarkerType.MARKER_UNKNOWN, 0),
        (m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_MONTH, 13),
        (m.SecurityTradingStatus.SECURITY_TRADING_STATUS_DEALER_NOT_AVAILABLE_FOR_TRADING, 16),
    ],
)
def test_enum_members_carry_proto_names_and_numbers(member: object, number: int) -> None:
    assert member.value == number  # type: ignore[attr-defined]
