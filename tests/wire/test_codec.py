"""The codec's rules, one by one: dialects, defaults, numbers, times, enums, errors, interning."""

from __future__ import annotations

import decimal
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError, DecodeError, EncodeError, RxInvestError
from rxinvest.wire import codec

MD = "MarketDataStream"
UID = "962e2a95-02a9-4171-abd7-aa198dbe643a"


def md(payload: object) -> object:
    return wire.decode(json.dumps(payload), stream=MD)


# --- dialects and defaults ---------------------------------------------------------------------------


def test_both_dialects_decode_to_the_same_event() -> None:
    camel = {"lastPrice": {"instrumentUid": UID, "lastPriceType": "LAST_PRICE_DEALER", "classCode": "TQBR"}}
    snake = {
        "last_price": {"instrument_uid": UID, "last_price_type": "LAST_PRICE_DEALER", "class_code": "TQBR"}
    }
    expected = m.LastPrice(
        instrument_uid=UID, last_price_type=m.LastPriceType.LAST_PRICE_DEALER, class_code="TQBR"
    )
    assert md(camel) == md(snake) == expected


def test_missing_keys_and_nulls_mean_proto3_defaults() -> None:
    expected = m.OrderBook()
    assert md({"orderbook": {}}) == expected
    assert md({"orderbook": {"bids": None, "depth": None, "time": None, "isConsistent": None}}) == expected
    assert expected.bids == () and expected.time is None and expected.depth == 0


def test_unknown_keys_are_ignored_at_every_level() -> None:
    frame = {"trade": {"quantity": "3", "brandNewField": {"x": [1]}, "price": {"units": "1", "extra": True}}}
    assert md(frame) == m.Trade(quantity=3, price=Decimal(1))


def test_explicit_presence_fields_keep_none_apart_from_default() -> None:
    absent = wire.decode('{"orderState": {}}', stream="OrderStateStream")
    present = wire.decode(
        '{"orderState": {"orderRequestId": "", "marker": "MARKER_UNKNOWN"}}', stream="OrderStateStream"
    )
    assert absent.order_request_id is None and absent.marker is None
    assert present.order_request_id == "" and present.marker is m.MarkerType.MARKER_UNKNOWN


def test_encode_leaves_defaults_out_unless_asked() -> None:
    trade = m.Trade(quantity=5)
    assert json.loads(wire.encode(trade)) == {"trade": {"quantity": "5"}}
    full = json.loads(wire.encode(trade, include_defaults=True))["trade"]
    assert full["figi"] == "" and full["direction"] == "TRADE_DIRECTION_UNSPECIFIED" and "price" not in full


def test_json_proto_dialect_uses_proto_names_for_keys_and_oneof_members() -> None:
    frame = json.loads(wire.encode(m.LastPrice(instrument_uid=UID), dialect="json-proto"))
    assert frame == {"last_price": {"instrument_uid": UID}}


# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quotation", "expected"),
    [
        ({"units": "178", "nano": 970000000}, Decimal("178.97")),
        ({"units": "-1", "nano": -500000000}, Decimal("-1.5")),
        ({"nano": -1}, Decimal("-0.000000001")),
        ({"units": "9223372036854775807", "nano": 999999999}, Decimal("9223372036854775807.999999999")),
        ({"units": 42}, Decimal(42)),  # int64 as a JSON number is accepted too
        ({"units": "5", "nano": "250000000"}, Decimal("5.25")),  # and int32 as a string
        ({}, Decimal(0)),
    ],
)
def test_quotations_are_exact_decimals(quotation: dict[str, object], expected: Decimal) -> None:
    price = md({"lastPrice": {"price": quotation}}).price
    assert price == expected
    assert price.as_tuple() == expected.normalize().as_tuple() or price == price.to_integral_value()


def test_quotation_decimals_have_a_canonical_form() -> None:
    assert str(md({"lastPrice": {"price": {"units": "178", "nano": 900000000}}}).price) == "178.9"
    assert str(md({"lastPrice": {"price": {"units": "100"}}}).price) == "100"


def test_decoding_ignores_a_low_decimal_context_precision() -> None:
    with decimal.localcontext(decimal.Context(prec=5)):
        codec.clear_caches()
        price = md({"lastPrice": {"price": {"units": "123456789", "nano": 123456789}}}).price
    assert price == Decimal("123456789.123456789")


@pytest.mark.parametrize(
    "payload",
    [
        {"trade": {"quantity": "9223372036854775808"}},  # int64 overflow
        {"trade": {"quantity": "12abc"}},
        {"trade": {"quantity": 1.5}},
        {"trade": {"quantity": True}},
        {"trade": {"price": {"nano": 1000000000}}},  # nano out of range
        {"trade": {"price": {"nano": False}}},
        {"trade": {"price": [1, 2]}},
        {"trade": {"figi": 7}},
        {"orderbook": {"depth": 2147483648}},  # int32 overflow
        {"orderbook": {"isConsistent": "yes"}},
        {"orderbook": {"bids": {"price": {}}}},
        {"orderbook": {"bids": [None]}},
        {"orderbook": {"bids": [{"price": {"units": "1"}, "quantity": "x"}]}},
    ],
)
def test_wrong_types_and_ranges_raise_decode_error(payload: object) -> None:
    with pytest.raises(DecodeError):
        md(payload)


def test_a_cached_level_never_accepts_what_a_cold_decode_rejects() -> None:
    good = {"orderbook": {"bids": [{"price": {"units": "1", "nano": 0}, "quantity": "1"}]}}
    bad = {"orderbook": {"bids": [{"price": {"units": "1", "nano": False}, "quantity": "1"}]}}
    md(good)  # interned now
    with pytest.raises(DecodeError):
        md(bad)


def test_levels_and_prices_are_interned_and_the_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = {"orderbook": {"bids": [{"price": {"units": "10", "nano": 0}, "quantity": "3"}]}}
    first, second = md(frame), md(frame)
    assert first.bids[0] is second.bids[0]
    monkeypatch.setattr(codec, "CACHE_LIMIT", 8)
    for units in range(50):
        md({"orderbook": {"bids": [{"price": {"units": str(units), "nano": 0}, "quantity": "1"}]}})
    assert len(codec._level_cache) <= 8 and len(codec._quotations) <= 8


# --- times -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-16T08:44:00Z", datetime(2023, 5, 16, 8, 44, tzinfo=UTC)),
        ("2023-05-16T08:44:00.321Z", datetime(2023, 5, 16, 8, 44, 0, 321000, tzinfo=UTC)),
        ("2023-05-16T08:44:00.321267Z", datetime(2023, 5, 16, 8, 44, 0, 321267, tzinfo=UTC)),
        ("2024-04-11T08:49:14.974035911Z", datetime(2024, 4, 11, 8, 49, 14, 974035, tzinfo=UTC)),  # truncated
        (
            "2024-04-11T08:49:14.999999999Z",
            datetime(2024, 4, 11, 8, 49, 14, 999999, tzinfo=UTC),
        ),  # not rounded
        ("2023-05-16T11:44:00+03:00", datetime(2023, 5, 16, 8, 44, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc_datetimes(text: str, expected: datetime) -> None:
    time = md({"trade": {"time": text}}).time
    assert time == expected
    assert time.tzinfo is UTC


@pytest.mark.parametrize("text", ["2023-05-16T08:44:00", "yesterday", "2023-13-01T00:00:00Z", ""])
def test_bad_timestamps_raise_decode_error(text: str) -> None:
    with pytest.raises(DecodeError, match="time"):
        md({"trade": {"time": text}})


def test_encoded_timestamps_are_rfc3339_utc() -> None:
    moscow = timezone(timedelta(hours=3))
    frame = json.loads(wire.encode(m.Trade(time=datetime(2023, 5, 16, 11, 44, 0, 5, tzinfo=moscow))))
    assert frame["trade"]["time"] == "2023-05-16T08:44:00.000005Z"
    with pytest.raises(EncodeError, match="aware"):
        wire.encode(m.Trade(time=datetime(2023, 5, 16)))


# --- enums -------------------------------------------------------------------------------------------


def test_unknown_enum_names_and_numbers_decode_to_the_zero_member() -> None:
    assert (
        md({"trade": {"direction": "TRADE_DIRECTION_SIDEWAYS"}}).direction
        is m.TradeDirection.TRADE_DIRECTION_UNSPECIFIED
    )
    assert md({"trade": {"direction": 2}}).direction is m.TradeDirection.TRADE_DIRECTION_SELL
    assert md({"trade": {"direction": 99}}).direction is m.TradeDirection.TRADE_DIRECTION_UNSPECIFIED
    state = wire.decode('{"orderState": {"marker": "MARKER_NEW_KIND"}}', stream="OrderStateStream")
    assert state.marker is m.MarkerType.MARKER_UNKNOWN


def test_the_two_candle_source_enums_are_kept_apart() -> None:
    candle = md({"candle": {"candleSourceType": "CANDLE_SOURCE_DEALER_WEEKEND"}})
    assert candle.candle_source_type is m.CandleSource.CANDLE_SOURCE_DEALER_WEEKEND
    request = wire.decode_request(
        '{"subscribeCandlesRequest": {"candleSourceType": "CANDLE_SOURCE_INCLUDE_WEEKEND"}}', stream=MD
    )
    assert request.candle_source_type is m.CandleSourceFilter.CANDLE_SOURCE_INCLUDE_WEEKEND


# --- frames, payloads and in-band errors -------------------------------------------------------------


def test_stream_errors_decode_to_rpc_status() -> None:
    top = md({"code": 8, "message": "80004", "details": [{"@type": "x", "b": 1, "a": 2}]})
    assert top == m.RpcStatus(code=8, message="80004", details=('{"@type":"x","a":2,"b":1}',))
    wrapped = md({"error": {"grpcCode": 16, "message": "40003", "httpCode": 401}})
    assert wrapped == m.RpcStatus(code=16, message="40003")


def test_result_wrapper_is_unwrapped() -> None:
    assert md({"result": {"trade": {"quantity": "2"}}}) == m.Trade(quantity=2)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("{}", "no MarketDataStream payload"),
        ('{"orderState": {}}', "no MarketDataStream payload"),  # another stream's payload
        ('{"candle": {}, "trade": {}}', "more than one payload key: trade, candle"),
        ("[1, 2]", "Expected `object`"),
        ("not json", "malformed"),
        ('{"trade": ', "truncated"),
    ],
)
def test_frames_without_one_known_payload_raise_decode_error(frame: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as caught:
        wire.decode(frame, stream=MD)
    assert caught.value.raw == frame


def test_decode_error_is_typed_and_keeps_a_truncated_copy_of_the_frame() -> None:
    frame = json.dumps({"trade": {"figi": 1, "padding": "x" * 5000}})
    with pytest.raises(DecodeError) as caught:
        wire.decode(frame.encode(), stream=MD)
    error = caught.value
    assert isinstance(error, RxInvestError) and isinstance(error, ValueError)
    assert error.raw == frame[:256] + "…"
    assert "figi" in error.reason


def test_an_unknown_stream_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="MarketDataStream"):
        wire.decode("{}", stream="MarketDataStreem")


def test_encode_wraps_market_data_requests_but_not_account_stream_requests() -> None:
    subscribe = m.SubscribeInfoRequest(
        subscription_action=m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE,
        instruments=(m.InfoInstrument(instrument_id="SBER_TQBR"),),
    )
    assert json.loads(wire.encode(subscribe)) == {
        "subscribeInfoRequest": {
            "subscriptionAction": "SUBSCRIPTION_ACTION_SUBSCRIBE",
            "instruments": [{"instrumentId": "SBER_TQBR"}],
        }
    }
    assert json.loads(wire.encode(m.GetMySubscriptions())) == {"getMySubscriptions": {}}
    assert json.loads(wire.encode(m.PingDelaySettings(ping_delay_ms=5000))) == {
        "pingSettings": {"pingDelayMs": 5000}
    }
    assert json.loads(wire.encode(m.OrderStateStreamRequest(accounts=("1",), ping_delay_millis=1000))) == {
        "accounts": ["1"],
        "pingDelayMillis": 1000,
    }


@pytest.mark.parametrize(
    "value",
    [
        m.LastPrice(price=Decimal("1.0000000001")),  # ten decimal places
        m.LastPrice(price=Decimal("1e30")),  # beyond int64 units
        m.LastPrice(price=Decimal("NaN")),
        m.Trade(quantity=2**63),
        m.OrderBook(depth=2**31),
        m.Trade(figi=5),  # type: ignore[arg-type]
        m.Trade(direction="TRADE_DIRECTION_BUY"),  # type: ignore[arg-type]
        m.Trade(quantity=True),
        m.OrderBook(bids=[m.Order()]),  # type: ignore[arg-type]
        m.Order(),  # not a top-level message
    ],
)
def test_values_without_a_wire_form_raise_encode_error(value: object) -> None:
    with pytest.raises(EncodeError):
        wire.encode(value)


def test_load_and_dump_convert_single_values() -> None:
    money = m.Money(Decimal("-3.5"), "RUB")
    data = wire.dump(m.PositionsMoney(available_value=money))
    assert data == {"availableValue": {"currency": "rub", "units": "-3", "nano": -500000000}}
    assert wire.load(m.PositionsMoney, data) == m.PositionsMoney(available_value=money)
    with pytest.raises(DecodeError):
        wire.load(m.PositionsMoney, {"availableValue": "lots"})


# --- endpoints ---------------------------------------------------------------------------------------


def test_endpoint_urls() -> None:
    path = "tinkoff.public.invest.api.contract.v1.OrdersStreamService/OrderStateStream"
    assert wire.endpoint_url("OrderStateStream") == "wss://invest-public-api.tinkoff.ru/ws/" + path
    assert wire.endpoint_url("OrderStateStream", "sandbox") == wire.SANDBOX_BASE_URL + path
    assert wire.endpoint_url("OrderStateStream", "ws://127.0.0.1:8765/ws") == "ws://127.0.0.1:8765/ws/" + path
    assert wire.Stream.PORTFOLIO.path.endswith("OperationsStreamService/PortfolioStream")
    with pytest.raises(ConfigurationError):
        wire.endpoint_url("OrderStateStream", "http://example.invalid/")
    with pytest.raises(ConfigurationError):
        wire.endpoint_url("Orders")


def test_int64_strings_are_interned_only_in_canonical_form(monkeypatch: pytest.MonkeyPatch) -> None:
    codec.clear_caches()
    assert md({"trade": {"quantity": "12"}}).quantity == 12
    assert md({"trade": {"quantity": "012"}}).quantity == 12  # int64 text proto3 parsers accept
    assert md({"trade": {"quantity": "-0"}}).quantity == 0
    assert set(codec._int64s) == {"12"}
    with pytest.raises(DecodeError):
        md({"trade": {"quantity": "12x"}})
    monkeypatch.setattr(codec, "CACHE_LIMIT", 4)
    for n in range(20):
        md({"trade": {"quantity": str(n)}})
    assert len(codec._int64s) <= 4


def test_generated_code_shows_in_tracebacks() -> None:
    """Generated converters are registered in linecache, so a traceback through one shows its lines."""
    import linecache

    convert = codec._CODE.converters[m.Trade]
    filename = convert.__code__.co_filename
    assert filename.startswith("<rxinvest.wire generated")
    assert linecache.getline(filename, 1).startswith("def _c_Trade(")
    decode = codec._RESPONSE_FUNCTIONS["MarketDataStream"]
    assert "def decode_MarketDataStream(" in linecache.getline(decode.__code__.co_filename, 1)
