"""Gap recovery when the client's clock and the server's differ, end to end over loopback.

The simulator's clock is set minutes off the wall clock (``start``); its pings carry its time, from
which the client estimates the server's clock, and its REST filters compare the gap with its own
times. A client clock ahead of the server's by more than the recovery's slack must still recover an
order placed and cancelled inside the gap (on the client's clock alone GetOrders' filter started
after it: the order was lost); a client clock behind must not widen the window to the orders before
the gap. The markers keep the client's clock. Every wait is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import rxinvest
from rxinvest import model as m
from rxinvest.derived import Gap, Recovered, Subscribed
from rxinvest.protocol.recovery import SLACK
from rxinvest.sim import Simulator, serve
from rxinvest.wire import Unary
from tests.streams.test_client import WAIT, Collector, watch
from tests.streams.test_recovery import (
    BUY,
    PING,
    connect,
    connections_of,
    stall_account_streams,
    streaming,
)

S = m.OrderExecutionReportStatus
OFF = timedelta(minutes=10)  # how far the server's clock is from the client's: well over the slack
CLIENT_AHEAD, CLIENT_BEHIND = -OFF, OFF  # the server's clock minus the client's


def simulator(offset: timedelta, *, step: float = 0.1) -> Iterator[Simulator]:
    start = datetime.now(UTC).replace(microsecond=0) + offset
    if start.date() != (start + timedelta(minutes=5)).date():
        pytest.skip("GetOrders' filters see only the server's today: too close to its midnight")
    with serve(seed=11, manual=True, trader=False, min_ping_delay=0.05, start=start, step=step) as sim:
        yield sim


@pytest.fixture
def sim_behind() -> Iterator[Simulator]:
    """A server whose clock is behind the client's (the client's clock is ahead)."""
    yield from simulator(CLIENT_AHEAD)


@pytest.fixture
def sim_ahead() -> Iterator[Simulator]:
    """A server whose clock is ahead of the client's; a market step is 30 simulated seconds."""
    yield from simulator(CLIENT_BEHIND, step=30.0)


def let_pings_arrive() -> None:
    """Give the server time to ping a few times (``PING`` apart) with its current clock (bounded)."""
    time.sleep(4 * PING)


def final_states(collector: Collector, order_id: str) -> list[m.OrderState]:
    return [
        e
        for e in collector.events
        if isinstance(e, m.OrderState)
        and e.order_id == order_id
        and e.execution_report_status is S.EXECUTION_REPORT_STATUS_CANCELLED
    ]


def offset_of(client: rxinvest.Client) -> timedelta | None:
    (connection,) = connections_of(client)
    offset: timedelta | None = connection.session.server_offset
    return offset


def test_a_client_clock_ahead_still_recovers_an_order_placed_and_cancelled_in_the_gap(
    sim_behind: Simulator,
) -> None:
    sim = sim_behind
    account = sim.accounts[0]
    with connect(sim) as client:
        states, _ = watch(client.orders.order_states(account).with_markers())
        states.wait_for(Subscribed)
        streaming(sim, account, 1)
        let_pings_arrive()

        stalled = stall_account_streams(sim)
        vanished = sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))
        sim.cancel_order(account, vanished.order_id)
        assert vanished.created_at is not None
        assert vanished.created_at < datetime.now(UTC) - SLACK  # on the client's clock: before the gap

        (done,) = states.wait_for(Recovered)
        assert all(c.id not in stalled for c in sim.connections())
        assert done.error == ""
        # The order lived and died inside the gap: only GetOrders' filters could tell it.
        assert len(final_states(states, vanished.order_id)) == 1
        offset = offset_of(client)
    assert not states.errors
    (gap,) = [e for e in states.events if isinstance(e, Gap)]
    # The markers keep the client's clock: the gap is now-ish on it, not on the server's.
    assert abs(gap.since - datetime.now(UTC)) < timedelta(seconds=WAIT * 3)
    assert (done.since, done.until) == (gap.since, gap.until)
    assert offset is not None and abs(offset - CLIENT_AHEAD) < timedelta(seconds=WAIT * 3)


def test_a_client_clock_behind_does_not_widen_the_window_beyond_the_gap(sim_ahead: Simulator) -> None:
    sim = sim_ahead
    account = sim.accounts[0]
    with connect(sim) as client:
        assert client._rest is not None
        answered: list[int] = []  # orders each filtered GetOrders answered
        call = client._rest.call

        def counting(method: Unary, request: Any) -> Any:
            response = call(method, request)
            if method is Unary.GET_ORDERS and request.advanced_filters is not None:
                answered.append(len(response.orders))
            return response

        client._rest.call = counting  # type: ignore[method-assign]
        states, _ = watch(client.orders.order_states(account).with_markers())
        states.wait_for(Subscribed)
        streaming(sim, account, 1)

        # Before the gap: orders placed and cancelled, delivered live.
        before = [sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00")) for _ in range(5)]
        for order in before:
            sim.cancel_order(account, order.order_id)
        states.wait(lambda c: all(final_states(c, o.order_id) for o in before))
        sim.advance(6)  # three simulated minutes: the orders before are well before the gap's slack
        let_pings_arrive()

        stall_account_streams(sim)
        during = sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))
        sim.cancel_order(account, during.order_id)

        (done,) = states.wait_for(Recovered)
        assert done.error == ""
        assert len(final_states(states, during.order_id)) == 1
        assert all(len(final_states(states, o.order_id)) == 1 for o in before)  # nothing twice
    # On the client's clock the filter began 10 minutes before the server's first order: it answered
    # all six. On the server's, only the one of the gap.
    assert answered == [1]
    assert not states.errors
