"""The simulator speaks the proxy's protocol: paths, auth, dialects, subscriptions, pings, idle close.

Driven with a third-party client (websockets) over 127.0.0.1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from rxinvest import model as m
from rxinvest.model.kinds import Kind
from rxinvest.sim import Simulator, serve
from tests.sim.wsclient import closed_with, events, first, frames, open_stream, raw, send

MD = "MarketDataStream"
SUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
UNSUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
Status = m.SubscriptionStatus


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with serve(seed=11, manual=True, min_ping_delay=0.05) as simulator:
        yield simulator


def books(*items: tuple[str, int], action: m.SubscriptionAction = SUB) -> m.SubscribeOrderBookRequest:
    return m.SubscribeOrderBookRequest(
        subscription_action=action,
        instruments=tuple(m.OrderBookInstrument(instrument_id=i, depth=d) for i, d in items),
    )


def response(ws, kind: type) -> object:
    return first(ws, MD, lambda e: isinstance(e, kind))


# --- handshake and auth -------------------------------------------------------------------------------


def test_unknown_paths_get_http_404(sim: Simulator) -> None:
    from websockets.sync.client import connect

    for path in ("", "tinkoff.public.invest.api.contract.v1.MarketDataStreamService/Nope"):
        with pytest.raises(InvalidStatus) as caught:
            connect(
                sim.base_url + path,
                additional_headers={"Authorization": f"Bearer {sim.token}"},
                open_timeout=5,
            )
        assert caught.value.response.status_code == 404


@pytest.mark.parametrize("header", [True, False], ids=["authorization-header", "subprotocol-token"])
def test_both_token_placements_are_accepted(sim: Simulator, header: bool) -> None:
    with open_stream(sim, MD, header=header) as ws:
        assert ws.subprotocol == "json"
        send(ws, books(("SBER_TQBR", 1)))
        assert response(ws, m.SubscribeOrderBookResponse)


@pytest.mark.parametrize("token", [None, "t.not-a-known-token"])
def test_missing_or_unknown_tokens_are_closed_with_4016(sim: Simulator, token: str | None) -> None:
    with open_stream(sim, MD, token=token) as ws:
        code, reason = closed_with(ws)
    assert code == 4016
    assert "40003" in reason


def test_a_token_that_is_not_ascii_is_unknown_not_an_error_of_the_server(sim: Simulator) -> None:
    with open_stream(sim, MD, token="t.café") as ws:  # the header travels as ISO-8859-1
        code, reason = closed_with(ws)
    assert (code, "40003" in reason) == (4016, True)  # not 1011, as when the handler crashed on it


def test_a_simulator_restarted_with_the_same_token_and_port_takes_back_a_running_client() -> None:
    import threading

    import rxinvest

    prices: list[m.LastPrice] = []
    errors: list[Exception] = []
    arrived = threading.Condition()

    def take(price: m.LastPrice) -> None:
        with arrived:
            prices.append(price)
            arrived.notify_all()

    def wait_for(count: int) -> None:
        with arrived:
            assert arrived.wait_for(lambda: len(prices) >= count or bool(errors), timeout=15), len(prices)
        assert not errors, errors

    with serve(seed=3, speed=5.0, token="t.kept", readonly_token="t.kept-ro") as before:
        port = before.port
        client = rxinvest.connect("t.kept", target=before.base_url)
        client.market_data.last_prices("SBER_TQBR").subscribe(take, errors.append)
        wait_for(2)
    try:
        seen = len(prices)
        with serve(seed=3, speed=5.0, port=port, token="t.kept", readonly_token="t.kept-ro") as after:
            wait_for(seen + 2)  # the client came back: same address, same token, subscribed again
            (connection,) = after.connections()
            assert connection.subscriptions == ((Kind.LAST_PRICES, (prices[-1].instrument_uid,)),)
    finally:
        client.close()


def test_json_proto_dialect_uses_proto_names(sim: Simulator) -> None:
    with open_stream(sim, MD, dialect="json-proto") as ws:
        assert ws.subprotocol == "json-proto"
        send(ws, books(("SBER_TQBR", 1)), dialect="json-proto")
        frame = raw(next(frames(ws)))
    entry = frame["subscribe_order_book_response"]["order_book_subscriptions"][0]
    assert entry["subscription_status"] == "SUBSCRIPTION_STATUS_SUCCESS"
    assert entry["instrument_uid"] == "e6123145-9665-43e0-8413-cd61b8aa9b13"


# --- subscriptions ------------------------------------------------------------------------------------


def test_each_instrument_gets_its_own_status(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 10), ("NOT_AN_INSTRUMENT", 10), ("GAZP_TQBR", 7), ("BBG004731032", 50)))
        answer = response(ws, m.SubscribeOrderBookResponse)
        statuses = [e.subscription_status for e in answer.order_book_subscriptions]
        assert statuses == [
            Status.SUBSCRIPTION_STATUS_SUCCESS,
            Status.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND,
            Status.SUBSCRIPTION_STATUS_DEPTH_IS_INVALID,
            Status.SUBSCRIPTION_STATUS_SUCCESS,
        ]
        sber = answer.order_book_subscriptions[0]
        assert (sber.ticker, sber.class_code, sber.figi, sber.depth) == ("SBER", "TQBR", "BBG004730N88", 10)
        assert sber.subscription_id and sber.stream_id and answer.tracking_id
        assert sber.order_book_type is m.OrderBookType.ORDERBOOK_TYPE_ALL  # the API's default

        send(
            ws,
            m.SubscribeCandlesRequest(
                subscription_action=SUB,
                instruments=(m.CandleInstrument(instrument_id="SBER_TQBR"),),  # no interval
            ),
        )
        candles = response(ws, m.SubscribeCandlesResponse)
        assert (
            candles.candles_subscriptions[0].subscription_status
            is Status.SUBSCRIPTION_STATUS_INTERVAL_IS_INVALID
        )

        send(ws, books(("ROSN_TQBR", 10), action=UNSUB))
        missing = response(ws, m.SubscribeOrderBookResponse)
        assert (
            missing.order_book_subscriptions[0].subscription_status
            is Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_NOT_FOUND
        )

        send(ws, books(("ROSN_TQBR", 10), action=m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSPECIFIED))
        invalid = response(ws, m.SubscribeOrderBookResponse)
        assert (
            invalid.order_book_subscriptions[0].subscription_status
            is Status.SUBSCRIPTION_STATUS_SUBSCRIPTION_ACTION_IS_INVALID
        )


def test_subscribing_twice_is_idempotent_and_unsubscribe_removes(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 20)))
        one = response(ws, m.SubscribeOrderBookResponse).order_book_subscriptions[0]
        send(ws, books(("SBER_TQBR", 20)))
        two = response(ws, m.SubscribeOrderBookResponse).order_book_subscriptions[0]
        assert one.subscription_id == two.subscription_id
        send(ws, books(("SBER_TQBR", 20), action=UNSUB))
        gone = response(ws, m.SubscribeOrderBookResponse).order_book_subscriptions[0]
        assert gone.subscription_status is Status.SUBSCRIPTION_STATUS_SUCCESS
        assert gone.subscription_action is UNSUB
        send(ws, m.GetMySubscriptions())
        assert next(events(ws, MD, timeout=0.3), None) is None  # nothing is active: no answer


def test_get_my_subscriptions_lists_each_active_kind(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 1), ("GAZP_TQBR", 1)))
        send(
            ws,
            m.SubscribeInfoRequest(
                subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id="SBER_TQBR"),)
            ),
        )
        send(ws, m.GetMySubscriptions())
        listed = {}
        for event in events(ws, MD, timeout=0.5):
            if isinstance(event, m.SubscribeOrderBookResponse | m.SubscribeInfoResponse):
                listed[type(event)] = event  # the last of each kind is the getMySubscriptions answer
    assert {e.instrument_uid for e in listed[m.SubscribeOrderBookResponse].order_book_subscriptions} == {
        "e6123145-9665-43e0-8413-cd61b8aa9b13",
        "962e2a95-02a9-4171-abd7-aa198dbe643a",
    }
    assert len(listed[m.SubscribeInfoResponse].info_subscriptions) == 1


def test_the_subscription_limit_counts_candles_books_and_trades() -> None:
    with serve(seed=1, manual=True, max_subscriptions=3) as sim, open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 1), ("GAZP_TQBR", 1)))
        send(
            ws,
            m.SubscribeInfoRequest(
                subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id="LKOH_TQBR"),)
            ),
        )
        send(ws, m.SubscribeTradesRequest(subscription_action=SUB, instruments=tuple(
            m.TradeInstrument(instrument_id=i) for i in ("VTBR_TQBR", "ROSN_TQBR"))))  # fmt: skip
        trades = response(ws, m.SubscribeTradesResponse)
    assert [e.subscription_status for e in trades.trade_subscriptions] == [
        Status.SUBSCRIPTION_STATUS_SUCCESS,
        Status.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED,
    ]


def test_too_many_requests_refuses_every_entry() -> None:
    with serve(seed=1, manual=True, max_requests_per_minute=2) as sim, open_stream(sim, MD) as ws:
        for _ in range(2):
            send(ws, books(("SBER_TQBR", 1)))
            assert response(ws, m.SubscribeOrderBookResponse).order_book_subscriptions[
                0
            ].subscription_status is (Status.SUBSCRIPTION_STATUS_SUCCESS)
        send(ws, books(("SBER_TQBR", 1), ("GAZP_TQBR", 1)))
        refused = response(ws, m.SubscribeOrderBookResponse)
    assert {e.subscription_status for e in refused.order_book_subscriptions} == {
        Status.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS
    }


def test_market_data_flows_only_for_subscriptions(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        send(
            ws,
            m.SubscribeTradesRequest(
                subscription_action=SUB, instruments=(m.TradeInstrument(instrument_id="SBER_TQBR"),)
            ),
        )
        send(
            ws,
            m.SubscribeLastPriceRequest(
                subscription_action=SUB, instruments=(m.LastPriceInstrument(instrument_id="SBER_TQBR"),)
            ),
        )
        send(
            ws,
            m.SubscribeInfoRequest(
                subscription_action=SUB, instruments=(m.InfoInstrument(instrument_id="SBER_TQBR"),)
            ),
        )
        status = response(ws, m.TradingStatus)  # the current status comes at once
        assert status.trading_status is m.SecurityTradingStatus.SECURITY_TRADING_STATUS_NORMAL_TRADING
        sim.advance(100)
        seen = list(events(ws, MD, timeout=0.5))
    kinds = {type(e) for e in seen}
    assert {m.Trade, m.LastPrice} <= kinds
    assert {e.instrument_uid for e in seen if isinstance(e, m.Trade | m.LastPrice)} == {
        "e6123145-9665-43e0-8413-cd61b8aa9b13"
    }
    assert m.OrderBook not in kinds and m.Candle not in kinds


def test_malformed_client_requests_close_with_4003(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        ws.send('{"subscribeOrderBookRequest": {"instruments": "everything"}}')
        code, reason = closed_with(ws)
    assert code == 4003
    assert "invalid request" in reason


# --- pings and idle streams ---------------------------------------------------------------------------


def test_ping_settings_set_the_server_ping_interval(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 1)))
        send(ws, m.PingDelaySettings(ping_delay_ms=100))
        arrivals = []
        deadline = time.monotonic() + 3
        for event in events(ws, MD, timeout=1):
            if isinstance(event, m.Ping):
                arrivals.append(time.monotonic())
                assert event.stream_id
            if len(arrivals) == 5 or time.monotonic() > deadline:
                break
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert len(arrivals) == 5
    assert 0.05 <= gaps[len(gaps) // 2] <= 1.0  # median gap near 100 ms, even on a loaded machine


def test_a_ping_delay_out_of_range_is_refused() -> None:
    with serve(seed=1, manual=True) as sim, open_stream(sim, MD) as ws:
        send(ws, m.PingDelaySettings(ping_delay_ms=1000))
        code, reason = closed_with(ws)
    assert code == 4003
    assert "5000" in reason


def test_client_pings_are_answered_with_their_time(sim: Simulator) -> None:
    from datetime import UTC, datetime

    sent = datetime(2025, 11, 21, 10, 0, 0, 123456, tzinfo=UTC)
    with open_stream(sim, MD) as ws:
        send(ws, m.PingRequest(time=sent))
        ping = first(ws, MD, lambda e: isinstance(e, m.Ping))
    assert ping.ping_request_time == sent


def test_account_streams_take_their_flat_ping_fields() -> None:
    with serve(seed=1, manual=True, min_ping_delay=0.05) as sim, open_stream(sim, "OrderStateStream") as ws:
        send(ws, m.OrderStateStreamRequest(accounts=sim.accounts, ping_delay_millis=100))
        pings = [e for e in events(ws, "OrderStateStream", timeout=0.6) if isinstance(e, m.Ping)]
    assert len(pings) >= 2


def test_a_stream_left_without_subscriptions_is_closed_with_80004() -> None:
    with serve(seed=1, manual=False, idle_timeout=0.3) as sim, open_stream(sim, MD) as ws:
        started = time.monotonic()
        code, reason = closed_with(ws)
    assert code == 4008
    assert "80004" in reason
    assert time.monotonic() - started >= 0.25


def test_dealer_sources_are_invalid_on_an_exchange_only_market(sim: Simulator) -> None:
    with open_stream(sim, MD) as ws:
        dealer = m.OrderBookType.ORDERBOOK_TYPE_DEALER
        item = m.OrderBookInstrument(instrument_id="SBER_TQBR", depth=10, order_book_type=dealer)
        send(ws, m.SubscribeOrderBookRequest(subscription_action=SUB, instruments=(item,)))
        book = response(ws, m.SubscribeOrderBookResponse).order_book_subscriptions[0]
        send(ws, m.SubscribeTradesRequest(
            subscription_action=SUB, instruments=(m.TradeInstrument(instrument_id="SBER_TQBR"),),
            trade_source=m.TradeSourceType.TRADE_SOURCE_DEALER,
        ))  # fmt: skip
        trade = response(ws, m.SubscribeTradesResponse).trade_subscriptions[0]
    assert book.subscription_status is Status.SUBSCRIPTION_STATUS_SOURCE_IS_INVALID
    assert trade.subscription_status is Status.SUBSCRIPTION_STATUS_SOURCE_IS_INVALID


def test_internal_errors_on_demand() -> None:
    from rxinvest.sim import Faults

    with serve(seed=1, manual=True, faults=Faults(internal_errors=1.0)) as sim, open_stream(sim, MD) as ws:
        send(ws, books(("SBER_TQBR", 1), ("GAZP_TQBR", 1)))
        answer = response(ws, m.SubscribeOrderBookResponse)
    assert {e.subscription_status for e in answer.order_book_subscriptions} == {
        Status.SUBSCRIPTION_STATUS_INTERNAL_ERROR
    }
