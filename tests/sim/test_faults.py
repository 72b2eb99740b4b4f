"""Every fault the simulator can inject, seen from a third-party client."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import DecodeError
from rxinvest.sim import Faults, serve
from rxinvest.sim.faults import MALFORMED_KINDS, malformed_frame
from tests.sim.wsclient import closed_with, events, first, frames, open_stream, send

MD = "MarketDataStream"
SUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE


def subscribe_book(ws, depth: int = 10) -> None:
    send(
        ws,
        m.SubscribeOrderBookRequest(
            subscription_action=SUB,
            instruments=(m.OrderBookInstrument(instrument_id="SBER_TQBR", depth=depth),),
        ),
    )


def subscribed_book(ws, depth: int) -> None:
    """Subscribe and wait for the answer, so that market steps after this reach the subscription."""
    subscribe_book(ws, depth)
    first(ws, MD, lambda e: isinstance(e, m.SubscribeOrderBookResponse))


def subscribe_trades(ws) -> None:
    ids = ("SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR")
    send(
        ws,
        m.SubscribeTradesRequest(
            subscription_action=SUB, instruments=tuple(m.TradeInstrument(instrument_id=i) for i in ids)
        ),
    )


def test_drop_after_n_frames_cuts_the_connection_without_a_close_frame() -> None:
    with serve(seed=2, faults=Faults(drop_after=5)) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        received = list(frames(ws, timeout=3))
        code, _ = closed_with(ws)
    assert len(received) == 5
    assert code is None  # abnormal closure: no close frame


def test_drop_at_a_time() -> None:
    with serve(seed=2, faults=Faults(drop_at=0.3)) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        started = time.monotonic()
        code, _ = closed_with(ws)
    assert code is None
    assert 0.2 <= time.monotonic() - started < 3


def test_stall_sends_nothing_not_even_pings_but_keeps_the_socket_open() -> None:
    with serve(seed=2, faults=Faults(stall_after=3), min_ping_delay=0.05) as sim, open_stream(sim, MD) as ws:
        send(ws, m.PingDelaySettings(ping_delay_ms=50))
        subscribe_trades(ws)
        assert len(list(frames(ws, timeout=1.0))) == 3
        assert list(frames(ws, timeout=0.5)) == []
        assert sim.connections()[0].open


def test_stall_at_a_time() -> None:
    with serve(seed=2, faults=Faults(stall_at=0.3)) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        assert list(frames(ws, timeout=0.8))  # data before the stall
        assert list(frames(ws, timeout=0.5)) == []


@pytest.mark.parametrize("code", [4003, 4004, 4008, 4016, 1011])
def test_close_with_each_code(code: int) -> None:
    with serve(seed=2, manual=True, faults=Faults(close_code=code)) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws)
        assert closed_with(ws)[0] == code


def test_close_after_n_frames_and_at_a_time() -> None:
    with serve(seed=2, faults=Faults(close_code=4008, close_after=4)) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        assert len(list(frames(ws, timeout=3))) == 4
        assert closed_with(ws)[0] == 4008
    with serve(seed=2, faults=Faults(close_code=1011, close_at=0.2)) as sim, open_stream(sim, MD) as ws:
        assert closed_with(ws)[0] == 1011


def test_malformed_frames_are_inserted_without_replacing_real_ones() -> None:
    faults = Faults(malformed_every=2, malformed_kinds=("invalid_json", "wrong_types", "unknown_payload"))
    with serve(seed=2, faults=faults) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        received = list(frames(ws, timeout=1.5))
    good, bad = [], 0
    for frame in received:
        try:
            good.append(wire.decode(frame, stream=MD))
        except DecodeError:
            bad += 1
    assert bad >= 3
    assert sum(isinstance(e, m.Trade) for e in good) >= 3
    assert isinstance(good[0], m.SubscribeTradesResponse)  # the real first frame still arrived


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind(kind: str) -> None:
    import random

    sample = wire.encode(
        m.Trade(figi="F", direction=m.TradeDirection.TRADE_DIRECTION_BUY, quantity=1), include_defaults=True
    )
    frame = malformed_frame(kind, sample, random.Random(1))
    if kind in ("unknown_enum", "extra_fields"):  # valid for a tolerant decoder
        event = wire.decode(frame, stream=MD)
        assert isinstance(event, m.Trade)
        if kind == "unknown_enum":
            assert event.direction is m.TradeDirection.TRADE_DIRECTION_UNSPECIFIED
            assert "SOMETHING_NEW" in frame
        else:
            assert "fieldFromTheFuture" in json.loads(frame)["trade"]
    else:
        with pytest.raises(DecodeError):
            wire.decode(frame, stream=MD)


def test_too_many_requests_refuses_all_subscriptions() -> None:
    with serve(seed=2, manual=True, faults=Faults(too_many_requests=True)) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws)
        answer = next(events(ws, MD, timeout=2))
    assert (
        answer.order_book_subscriptions[0].subscription_status
        is m.SubscriptionStatus.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS
    )


@pytest.mark.parametrize("fault", ["crossed_books", "inconsistent_books"])
def test_bad_books_only_with_the_fault(fault: str) -> None:
    with serve(seed=2, manual=True, faults=Faults(**{fault: 1.0})) as sim, open_stream(sim, MD) as ws:
        subscribed_book(ws, depth=20)
        sim.advance(20)
        books = [e for e in events(ws, MD, timeout=1) if isinstance(e, m.OrderBook)]
    assert books
    for book in books:
        assert not book.is_consistent
        if fault == "crossed_books":
            assert book.bids[0].price >= book.asks[0].price
        else:
            assert len(book.bids) < 20


def test_books_are_never_crossed_without_the_fault() -> None:
    with serve(seed=5, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribed_book(ws, depth=50)
        sim.advance(200)
        books = [e for e in events(ws, MD, timeout=1) if isinstance(e, m.OrderBook)]
    assert len(books) > 20
    assert all(b.is_consistent and b.bids[0].price < b.asks[0].price for b in books)


def test_burst_mode_sends_as_fast_as_it_can() -> None:
    with (
        serve(seed=2, manual=True, faults=Faults(burst=True, burst_frames=2000)) as sim,
        open_stream(sim, MD) as ws,
    ):
        subscribed_book(ws, depth=20)
        # the snapshot every new subscription gets, then the burst
        books = [wire.decode(ws.recv(timeout=5), stream=MD) for _ in range(1 + 2000)]
        assert list(frames(ws, timeout=0.3)) == []  # burst_frames caps the burst
    assert all(isinstance(b, m.OrderBook) and b.depth == 20 for b in books)
    assert len({b.time for b in books}) > 100  # frames of many steps of the market, not one repeated


def test_faults_per_connection_and_for_the_next_connection_only() -> None:
    with serve(seed=2, manual=True) as sim:
        sim.fault_next(Faults(close_code=4003))
        with open_stream(sim, MD) as first:
            subscribe_book(first)
            assert closed_with(first)[0] == 4003
        with open_stream(sim, MD) as second:  # the default again: no fault
            subscribe_book(second)
            assert isinstance(next(events(second, MD, timeout=2)), m.SubscribeOrderBookResponse)
            (connection,) = sim.connections()
            sim.set_connection_faults(connection.id, Faults(close_code=4008, close_at=0.0))
            assert closed_with(second)[0] == 4008


def test_faults_parse_from_the_command_line_form() -> None:
    faults = Faults.parse(
        ["drop_after=100", "close-code=4008", "malformed_kinds=invalid_json+unknown_enum", "burst=yes"]
    )
    assert faults == Faults(
        drop_after=100, close_code=4008, malformed_kinds=("invalid_json", "unknown_enum"), burst=True
    )
    with pytest.raises(ValueError, match="close_code"):
        Faults.parse(["close_code=4999"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        Faults.parse(["explode"])


# --- the decisions, sans-I/O ----------------------------------------------------------------------


def test_after_n_frames_drop_comes_before_stall_and_stall_before_close() -> None:
    from rxinvest.sim.fault_injection import FaultAction, after_frames

    faults = Faults(drop_after=5, stall_after=3, close_code=4008, close_after=1)
    assert [after_frames(faults, sent) for sent in range(7)] == [
        None,
        FaultAction.CLOSE,
        FaultAction.CLOSE,
        FaultAction.STALL,
        FaultAction.STALL,
        FaultAction.DROP,
        FaultAction.DROP,
    ]
    assert after_frames(Faults(close_after=1), 10) is None  # no close code: no close
    assert after_frames(Faults(), 10**6) is None


def test_the_timetable_lists_time_faults_earliest_first() -> None:
    from rxinvest.sim.fault_injection import FaultAction, timetable

    faults = Faults(drop_at=2.0, stall_at=0.5, close_code=1011, close_at=2.0)
    assert timetable(faults) == [(0.5, FaultAction.STALL), (2.0, FaultAction.CLOSE), (2.0, FaultAction.DROP)]
    assert timetable(Faults(close_at=1.0)) == []  # no close code: no close
    assert timetable(Faults()) == []


def test_a_close_code_without_count_or_time_closes_on_the_first_request() -> None:
    from rxinvest.sim.fault_injection import close_on_request

    assert close_on_request(Faults(close_code=4004)) == 4004
    assert close_on_request(Faults(close_code=4004, close_after=3)) is None
    assert close_on_request(Faults(close_code=4004, close_at=1.0)) is None
    assert close_on_request(Faults()) is None


def test_the_injector_counts_real_frames_and_inserts_every_nth_a_malformed_one() -> None:
    import random

    from rxinvest.sim.fault_injection import FaultAction, FaultInjector

    frame = wire.encode(m.Trade(figi="F", quantity=1), include_defaults=True)
    injector = FaultInjector(Faults(malformed_every=3, drop_after=7), random.Random(1))
    extra = []
    actions = []
    for _ in range(7):
        extra.append(injector.malformed_before(frame) is not None)
        actions.append(injector.sent())
    assert extra == [False, False, True, False, False, True, False]  # before the 3rd and the 6th
    assert actions == [None] * 6 + [FaultAction.DROP]
    assert injector.frames_sent == 7


def test_book_distortion_needs_its_fault() -> None:
    import random

    from rxinvest.sim.fault_injection import distort_book

    bids = tuple(m.Order(price=Decimal(100 - i), quantity=1) for i in range(5))
    asks = tuple(m.Order(price=Decimal(101 + i), quantity=1) for i in range(5))
    book = m.OrderBook(depth=5, bids=bids, asks=asks, is_consistent=True)
    rng = random.Random(1)
    assert distort_book(book, Faults(), rng) is book
    crossed = distort_book(book, Faults(crossed_books=1.0), rng)
    assert crossed.bids == (m.Order(price=Decimal(106), quantity=1), *bids[:4])  # above the worst ask
    assert not crossed.is_consistent
    thinned = distort_book(book, Faults(inconsistent_books=1.0), rng)
    assert thinned.bids == (bids[0], bids[2], bids[4])
    assert not thinned.is_consistent
