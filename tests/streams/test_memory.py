"""The client over the in-memory transport: the test plays the server, frame by frame, no sockets."""

from __future__ import annotations

import json
import threading
from typing import Any

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import AuthenticationError, SubscriptionRejectedError
from rxinvest.streams import Client
from rxinvest.transport import MemoryTransport

UID = "e6123145-9665-43e0-8413-cd61b8aa9b13"
OK = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS


def book_answer(*statuses: m.SubscriptionStatus) -> str:
    entries = tuple(
        m.OrderBookSubscription(
            instrument_uid=UID if s is OK else "", depth=10, subscription_status=s, subscription_id="s"
        )
        for s in statuses
    )
    return wire.encode(m.SubscribeOrderBookResponse(tracking_id="trk", order_book_subscriptions=entries))


def test_subscribe_route_and_release(wired: tuple[Client, dict[str, MemoryTransport]]) -> None:
    client, transports = wired
    got: list[Any] = []
    first = client.market_data.order_books("SBER_TQBR", depth=10).subscribe(got.append)
    second = client.market_data.order_books("SBER_TQBR", depth=10).subscribe(got.append)
    server = transports["MarketDataStream"]
    server.wait_idle()
    assert [next(iter(json.loads(f))) for f in server.sent] == ["subscribeOrderBookRequest"]  # shared

    book = m.OrderBook(instrument_uid=UID, depth=10, bids=(m.Order(price=None, quantity=1),))
    server.push(
        book_answer(OK), wire.encode(book), wire.encode(m.OrderBook(instrument_uid="other", depth=10))
    )
    server.wait_idle()
    assert got == [book, book]  # both subscribers, and nothing of the unsubscribed instrument

    first.dispose()
    assert len(server.sent) == 1
    second.dispose()
    (unsubscribe,) = [json.loads(f) for f in server.sent[1:]]
    assert unsubscribe["subscribeOrderBookRequest"]["subscriptionAction"] == "SUBSCRIPTION_ACTION_UNSUBSCRIBE"


def test_a_rejection_reaches_the_subscriber(wired: tuple[Client, dict[str, MemoryTransport]]) -> None:
    client, transports = wired
    errors: list[Exception] = []
    client.market_data.order_books("NOPE_TQBR", depth=10).subscribe(on_error=errors.append)
    transports["MarketDataStream"].push(
        book_answer(m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND)
    )
    transports["MarketDataStream"].wait_idle()
    (error,) = errors
    assert isinstance(error, SubscriptionRejectedError)
    assert (error.target, error.tracking_id) == ("NOPE_TQBR", "trk")


def test_a_final_close_fails_every_subscriber(wired: tuple[Client, dict[str, MemoryTransport]]) -> None:
    client, transports = wired
    failed = threading.Event()
    errors: list[Exception] = []

    def on_error(error: Exception) -> None:
        errors.append(error)
        failed.set()

    client.market_data.last_prices("SBER_TQBR").subscribe(on_error=on_error)
    transports["MarketDataStream"].close_from_server(4016, "40003")
    assert failed.wait(5)
    assert isinstance(errors[0], AuthenticationError)
    assert errors[0].code == "40003"


def test_account_events_are_delivered_in_order(wired: tuple[Client, dict[str, MemoryTransport]]) -> None:
    client, transports = wired
    got: list[Any] = []
    client.orders.order_states("2000000001").subscribe(got.append)
    server = transports["OrderStateStream"]
    server.wait_idle()
    assert json.loads(server.sent[0]) == {"accounts": ["2000000001"]}
    states = [m.OrderState(order_id=str(i), account_id="2000000001") for i in range(50)]
    server.push(*(wire.encode(s) for s in states))
    server.wait_idle()
    assert got == states
