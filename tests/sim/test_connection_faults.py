"""Faults set on an open connection (``Simulator.set_connection_faults``) and burst mode as
subscriptions come: seen from a third-party client, then the decisions and the burst sans-I/O.

The rule under test: new faults act as if the connection had opened with them at the moment they
were set: counts and times from then, the old faults' pending time actions cancelled, a stall
lifted, a burst started or stopped.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import DecodeError
from rxinvest.sim import Faults, Simulator, serve
from rxinvest.sim.burst import Burst
from rxinvest.sim.fault_injection import FaultAction, FaultInjector
from tests.sim.wsclient import closed_with, events, first, frames, open_stream, send

MD = "MarketDataStream"
SUB = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
SBER = "e6123145-9665-43e0-8413-cd61b8aa9b13"
GAZP = "962e2a95-02a9-4171-abd7-aa198dbe643a"
Status = m.SubscriptionStatus


def subscribe_trades(ws: Any) -> None:
    ids = ("SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR")
    send(ws, m.SubscribeTradesRequest(
        subscription_action=SUB, instruments=tuple(m.TradeInstrument(instrument_id=i) for i in ids)
    ))  # fmt: skip
    first(ws, MD, lambda e: isinstance(e, m.SubscribeTradesResponse))


def subscribe_book(ws: Any, instrument_id: str = "SBER_TQBR", depth: int = 10) -> None:
    send(ws, m.SubscribeOrderBookRequest(
        subscription_action=SUB,
        instruments=(m.OrderBookInstrument(instrument_id=instrument_id, depth=depth),),
    ))  # fmt: skip


def the_connection(sim: Simulator) -> int:
    (connection,) = sim.connections()
    return connection.id


def drain(ws: Any, quiet: float = 0.3) -> list[str]:
    """Every frame until none comes for ``quiet`` seconds (at most 10 s of frames)."""
    received: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = list(frames(ws, timeout=quiet))
        if not batch:
            return received
        received += batch
    raise AssertionError("frames kept coming for 10 s")


# --- counts and times start when the faults are set ------------------------------------------------


def test_a_count_fault_counts_the_frames_sent_after_it_was_set() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        sim.advance(60)
        before = drain(ws)
        assert len(before) >= 5  # so that, counted from the opening, the drop would be due at once
        sim.set_connection_faults(the_connection(sim), Faults(drop_after=3))
        sim.advance(60)
        after = list(frames(ws, timeout=2))
        code, _ = closed_with(ws)
    assert len(after) == 3
    assert code is None  # dropped: no close frame


def test_a_time_fault_counts_from_when_it_was_set() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        time.sleep(0.6)  # the connection is older than the fault's time
        set_at = time.monotonic()
        sim.set_connection_faults(the_connection(sim), Faults(close_code=1011, close_at=0.5))
        code, _ = closed_with(ws)
        waited = time.monotonic() - set_at
    assert code == 1011
    assert 0.4 <= waited < 3


def test_the_old_faults_pending_time_actions_are_cancelled() -> None:
    with serve(seed=2, manual=True, faults=Faults(close_code=4008, close_at=0.4)) as sim:
        with open_stream(sim, MD) as replaced:
            sim.set_connection_faults(the_connection(sim), Faults(close_code=1011, close_at=0.8))
            assert closed_with(replaced)[0] == 1011
        with open_stream(sim, MD) as cleared:
            sim.set_connection_faults(the_connection(sim), Faults())
            time.sleep(0.8)  # past the server's default close_at
            send(cleared, m.PingRequest(time=None))
            assert isinstance(first(cleared, MD, lambda e: isinstance(e, m.Ping)), m.Ping)


def test_new_faults_lift_a_stall() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)
        sim.set_connection_faults(the_connection(sim), Faults(stall_at=0.0))
        time.sleep(0.2)
        sim.advance(40)
        assert list(frames(ws, timeout=0.5)) == []  # stalled
        sim.set_connection_faults(the_connection(sim), Faults())
        sim.advance(40)
        resumed = [wire.decode(f, stream=MD) for f in drain(ws)]
    assert any(isinstance(e, m.Trade) for e in resumed)


def test_a_close_fault_without_count_or_time_closes_an_open_connection_at_once() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws)
        first(ws, MD, lambda e: isinstance(e, m.SubscribeOrderBookResponse))
        sim.set_connection_faults(the_connection(sim), Faults(close_code=4004))
        assert closed_with(ws, timeout=2)[0] == 4004  # no request needed


def test_malformed_frames_count_from_when_they_were_set() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_trades(ws)  # one frame already sent
        sim.set_connection_faults(
            the_connection(sim), Faults(malformed_every=2, malformed_kinds=("invalid_json",))
        )
        sim.advance(40)
        received = drain(ws)
    valid = []
    for frame in received:
        try:
            wire.decode(frame, stream=MD)
            valid.append(True)
        except DecodeError:
            valid.append(False)
    # Before the 2nd, 4th ... real frame after the change: real, bad, real, real, bad, real ...
    expected = [True, *[flag for _ in range(len(received)) for flag in (False, True, True)]]
    assert len(received) >= 6
    assert valid == expected[: len(valid)]


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        (Faults(too_many_requests=True), Status.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS),
        (Faults(internal_errors=1.0), Status.SUBSCRIPTION_STATUS_INTERNAL_ERROR),
    ],
)
def test_subscription_faults_apply_to_the_next_requests(faults: Faults, status: Status) -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws, "SBER_TQBR")
        sbers = first(ws, MD, lambda e: isinstance(e, m.SubscribeOrderBookResponse))
        sim.set_connection_faults(the_connection(sim), faults)
        subscribe_book(ws, "GAZP_TQBR")
        gazps = first(ws, MD, lambda e: isinstance(e, m.SubscribeOrderBookResponse))
    assert sbers.order_book_subscriptions[0].subscription_status is Status.SUBSCRIPTION_STATUS_SUCCESS
    assert gazps.order_book_subscriptions[0].subscription_status is status


@pytest.mark.parametrize("fault", ["crossed_books", "inconsistent_books"])
def test_book_faults_apply_to_the_next_books(fault: str) -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws, depth=20)
        snapshot = first(ws, MD, lambda e: isinstance(e, m.OrderBook))
        sim.set_connection_faults(the_connection(sim), Faults(**{fault: 1.0}))
        sim.advance(20)
        books = [e for e in events(ws, MD, timeout=1) if isinstance(e, m.OrderBook)]
    assert snapshot.is_consistent
    assert books
    assert not any(book.is_consistent for book in books)


def test_a_burst_set_on_an_open_connection_starts_and_stops() -> None:
    with serve(seed=2, manual=True) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws, depth=1)
        drain(ws)  # the answer and the snapshot
        sim.set_connection_faults(the_connection(sim), Faults(burst=True, burst_frames=300))
        burst = drain(ws)
        assert len(burst) == 300  # burst_frames counted from the change
        assert all(isinstance(wire.decode(f, stream=MD), m.OrderBook) for f in burst)
        sim.set_connection_faults(the_connection(sim), Faults(burst=True))  # no limit now
        assert len(list(frames(ws, timeout=0.3))) > 300
        sim.set_connection_faults(the_connection(sim), Faults())
        drain(ws)  # what was on its way
        assert list(frames(ws, timeout=0.3)) == []  # the burst stopped
        sim.advance(5)  # and the market's own books flow again
        books = [wire.decode(f, stream=MD) for f in drain(ws)]
    assert books
    assert all(isinstance(book, m.OrderBook) for book in books)


# --- burst mode serves subscriptions made after it began ------------------------------------------


def test_a_burst_takes_in_subscriptions_made_while_it_runs() -> None:
    # No limit: a burst that ended could not be what sends the new subscription's book.
    with serve(seed=2, manual=True, faults=Faults(burst=True)) as sim, open_stream(sim, MD) as ws:
        subscribe_book(ws, "SBER_TQBR", depth=1)
        early = [wire.decode(f, stream=MD) for f in (ws.recv(timeout=5) for _ in range(500))]
        subscribe_book(ws, "GAZP_TQBR", depth=1)
        answer, later = None, []
        deadline = time.monotonic() + 10
        while len(later) < 500 and time.monotonic() < deadline:  # the burst before GAZP, then 500
            event = wire.decode(ws.recv(timeout=5), stream=MD)
            if isinstance(event, m.SubscribeOrderBookResponse):
                answer = event  # answers go out during a burst
            elif later or event.instrument_uid == GAZP:
                later.append(event)
        sim.set_connection_faults(the_connection(sim), Faults())  # the end of the burst
        drain(ws)  # the test client's close waits for every frame sent before it to be read
    assert {e.instrument_uid for e in early if isinstance(e, m.OrderBook)} == {SBER}
    assert answer is not None
    assert answer.order_book_subscriptions[0].subscription_status is Status.SUBSCRIPTION_STATUS_SUCCESS
    assert {e.instrument_uid for e in later if isinstance(e, m.OrderBook)} == {SBER, GAZP}


# --- sans-I/O: the injector's counts and the burst's frames ----------------------------------------


@given(before=st.integers(0, 50), after=st.integers(1, 20), every=st.integers(1, 7))
def test_replaced_faults_count_from_zero(before: int, after: int, every: int) -> None:
    frame = wire.encode(m.Trade(figi="F", quantity=1), include_defaults=True)
    injector = FaultInjector(Faults(stall_after=1), random.Random(1))
    for _ in range(before):
        injector.sent()
    injector.stalled = before > 0  # as the shell would have done
    injector.replace(Faults(drop_after=after, malformed_every=every))
    assert not injector.stalled
    malformed, actions = [], []
    for _ in range(after):
        malformed.append(injector.malformed_before(frame) is not None)
        actions.append(injector.sent())
    assert actions == [None] * (after - 1) + [FaultAction.DROP]
    assert malformed == [(n % every == 0) for n in range(1, after + 1)]
    assert injector.frames_sent == before + after


class _Socket:
    """Stands in for a websockets connection: records what is sent, and lets a test act at a count."""

    def __init__(self, at: int = -1, then: Any = None) -> None:
        self.sent: list[str] = []
        self._at, self._then = at, then

    async def send(self, frame: str) -> None:
        self.sent.append(frame)
        if len(self.sent) == self._at:
            self._then()
        await asyncio.sleep(0)


def _burst(socket: _Socket, frames: list[str], limit: int | None) -> Burst:
    return Burst(socket, frames, limit=limit, rate=None, dialect="json", emit_defaults=True)  # type: ignore[arg-type]


@given(limit=st.integers(1, 40), switch=st.integers(1, 40))
def test_a_retargeted_burst_goes_on_with_the_new_frames_and_the_same_count(limit: int, switch: int) -> None:
    old, new = ["a1", "a2", "a3"], ["b1", "b2"]
    socket = _Socket(at=switch, then=lambda: burst.retarget(new))
    burst = _burst(socket, old, limit)
    asyncio.run(burst.run())
    sent_before = min(switch, limit)
    assert socket.sent == [old[i % 3] for i in range(sent_before)] + [
        new[i % 2] for i in range(limit - sent_before)
    ]
    assert not burst.running


def test_a_stopped_burst_sends_nothing_more() -> None:
    socket = _Socket(at=7, then=lambda: burst.stop())
    burst = _burst(socket, ["a"], None)
    asyncio.run(asyncio.wait_for(burst.run(), timeout=5))
    assert len(socket.sent) == 7
    assert not burst.running
