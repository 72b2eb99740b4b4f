"""Gap recovery end to end: a manual simulator, account sources with markers, their connections
stalled while orders are placed, filled and cancelled, then recovered over the simulator's REST
gateway. The broker's own records are the oracle: every order's last state and every fill reach the
subscriber exactly once, between a Gap and a Recovered marker, and the stream goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from reactivex.scheduler import ImmediateScheduler

import rxinvest
from rxinvest import model as m
from rxinvest import wire
from rxinvest.derived import Gap, GapCause, Recovered, Subscribed
from rxinvest.errors import ConnectionLostError
from rxinvest.protocol import AccountSession
from rxinvest.protocol.recovery import AccountRecovery
from rxinvest.sim import Faults, Simulator, serve
from rxinvest.streams.accounts import AccountConnection
from rxinvest.streams.delivery import Mailbox
from rxinvest.wire import Stream, Unary
from tests.streams.test_client import WAIT, Collector, watch

BUY, SELL = m.OrderDirection.ORDER_DIRECTION_BUY, m.OrderDirection.ORDER_DIRECTION_SELL
S = m.OrderExecutionReportStatus
FINAL = {
    S.EXECUTION_REPORT_STATUS_FILL,
    S.EXECUTION_REPORT_STATUS_CANCELLED,
    S.EXECUTION_REPORT_STATUS_REJECTED,
}
ACCOUNT_STREAMS = ("OrderStateStream", "TradesStream", "PositionsStream", "PortfolioStream")
PING = 0.3  # seconds: a stalled stream is seen dead after two silent intervals


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Manual: the market moves only when the test says. Its clock starts at the wall clock's now and
    # moves 0.1 s a step, so the operations' times stay close to the client's gap times.
    with serve(seed=11, manual=True, trader=False, min_ping_delay=0.05) as simulator:
        yield simulator


def connect(sim: Simulator) -> rxinvest.Client:
    """A client of the simulator whose account streams recover gaps from its REST gateway."""
    return rxinvest.connect(sim.token, target=sim.base_url, ping_delay=PING, rest_url=sim.rest_url)


def streaming(sim: Simulator, account: str, count: int) -> None:
    """Wait until ``count`` account connections stream ``account`` (the simulator took their requests:
    what the broker does from now on reaches them)."""
    sim.wait_for(
        lambda s: (
            len([c for c in s.connections() if c.stream.value in ACCOUNT_STREAMS and account in c.accounts])
            == count
        ),
        WAIT,
    )


def stall_account_streams(sim: Simulator) -> list[int]:
    """Make every open account connection go silent (it keeps the socket, sends nothing: whatever
    happens now is lost); the client sees it dead within two ping intervals and reconnects."""
    ids = [c.id for c in sim.connections() if c.stream.value in ACCOUNT_STREAMS]
    for connection_id in ids:
        sim.set_connection_faults(connection_id, Faults(stall_at=0.0))
    time.sleep(0.1)  # the stall is a task of the simulator's loop: let it run (bounded, not asserted)
    sim.connections()
    return ids


def fill(sim: Simulator, order_id: str, account: str, steps: int = 200) -> m.OrderState:
    """Move the market until the order is final (bounded); its final state."""
    for _ in range(steps):
        state = sim.broker.order(account, order_id)
        assert state is not None
        if state.execution_report_status in FINAL:
            return state
        sim.advance()
    raise AssertionError(f"order {order_id} did not fill within {steps} steps")


def markers(collector: Collector) -> list[Any]:
    return [e for e in collector.events if isinstance(e, Gap | Recovered)]


def recovered_in(collector: Collector) -> list[Any]:
    """The events between the Gap and the Recovered marker."""
    events = collector.events
    gap = next(i for i, e in enumerate(events) if isinstance(e, Gap))
    done = next(i for i, e in enumerate(events) if isinstance(e, Recovered))
    return events[gap + 1 : done]


def rank(state: m.OrderState) -> tuple[int, bool]:
    return (state.lots_executed, state.execution_report_status in FINAL)


def connections_of(client: rxinvest.Client) -> list[AccountConnection]:
    return list(client._accounts.values())


def test_a_gap_is_recovered_exactly_once_and_the_streams_go_on(sim: Simulator) -> None:
    account = sim.accounts[0]
    with connect(sim) as client:
        states, _ = watch(client.orders.order_states(account).with_markers())
        fills, _ = watch(client.orders.order_trades(account).with_markers())
        positions, _ = watch(
            client.operations.positions(account, with_initial_positions=False).with_markers()
        )
        portfolio, _ = watch(client.operations.portfolio(account).with_markers())
        for collector in (states, fills, positions, portfolio):
            collector.wait_for(Subscribed)
        streaming(sim, account, 4)

        # Before the gap: an order that rests (far below the market) and one that fills.
        resting = sim.place_order(account, "SBER_TQBR", BUY, 2, price=Decimal("1.00"))
        before = sim.place_order(account, "GAZP_TQBR", BUY, 1)
        fill(sim, before.order_id, account)
        states.wait(
            lambda c: any(
                isinstance(e, m.OrderState)
                and e.order_id == before.order_id
                and e.execution_report_status in FINAL
                for e in c.events
            )
        )
        fills.wait_for(m.OrderTrades)

        # The gap: everything the account does now is lost by the streams.
        stalled = stall_account_streams(sim)
        sim.cancel_order(account, resting.order_id)  # an order active at the gap ends in it
        during = sim.place_order(account, "SBER_TQBR", BUY, 3)  # placed and filled in the gap
        fill(sim, during.order_id, account)
        sold = sim.place_order(account, "GAZP_TQBR", SELL, 1)
        fill(sim, sold.order_id, account)
        # Placed and ended inside the gap without a fill: only GetOrders' filters know them.
        vanished = sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))
        sim.cancel_order(account, vanished.order_id)
        rejected = sim.place_order(account, "SBER_TQBR", BUY, 0, price=Decimal("1.00"))
        assert rejected.execution_report_status is S.EXECUTION_REPORT_STATUS_REJECTED
        gap_fills = {f.trade_id for f in sim.broker.fills(account)} - {
            t.trade_id for e in fills.events if isinstance(e, m.OrderTrades) for t in e.trades
        }
        assert gap_fills  # the stall did lose fills: there is something to recover

        for collector in (states, fills, positions, portfolio):
            collector.wait_for(Recovered)
        assert all(c.id not in stalled for c in sim.connections())
        # The snapshots recovered are the broker's state now (nothing moved since the reconnect).
        (recovered_positions,) = recovered_in(positions)
        assert recovered_positions == sim.broker.positions(account, sim.clock())
        # The portfolio stream sends a snapshot when it subscribes again: that live one, held, replaces
        # the recovered one, and it is the broker's state.
        assert recovered_in(portfolio) == []
        done = next(i for i, e in enumerate(portfolio.events) if isinstance(e, Recovered))
        portfolio.wait(lambda c: len(c.events) > done + 1)
        assert portfolio.events[done + 1] == sim.broker.portfolio(account, sim.market.quotes())

        # After it: the streams go on, live.
        after = sim.place_order(account, "SBER_TQBR", BUY, 1)
        fill(sim, after.order_id, account)
        states.wait(
            lambda c: any(
                isinstance(e, m.OrderState)
                and e.order_id == after.order_id
                and e.execution_report_status in FINAL
                for e in c.events
            )
        )
        fills.wait(
            lambda c: (
                {f.trade_id for f in sim.broker.fills(account)}
                <= {t.trade_id for e in c.events if isinstance(e, m.OrderTrades) for t in e.trades}
            )
        )
        counters = {
            c.stream: (c.recovered, c.recoveries, c.recoveries_failed) for c in connections_of(client)
        }
        assert client._rest is not None and client._rest.calls > 0
    assert sim.rest_calls()["GetOrders"] >= 1

    for collector in (states, fills, positions, portfolio):
        (gap, done) = markers(collector)
        assert isinstance(gap, Gap)
        assert gap.cause is GapCause.RECONNECT
        assert isinstance(done, Recovered)
        assert (done.target, done.since, done.until, done.error) == (account, gap.since, gap.until, "")
        assert done.events == len(recovered_in(collector))
        assert not collector.errors

    # Order states: every order's last state is the broker's, no state twice, none backwards.
    by_order: dict[str, list[m.OrderState]] = {}
    for event in states.events:
        if isinstance(event, m.OrderState):
            by_order.setdefault(event.order_id, []).append(event)
    truth = {s.order_id: s for s in sim.broker.orders(account)}
    assert set(by_order) == set(truth)
    for order_id, got in by_order.items():
        ranks = [rank(e) for e in got]
        assert ranks == sorted(set(ranks)), (order_id, ranks)
        assert (got[-1].execution_report_status, got[-1].lots_executed) == (
            truth[order_id].execution_report_status,
            truth[order_id].lots_executed,
        )
        # Fills inside states are in units, by trade id, as the broker made them.
        made = {f.trade_id: f.units for f in sim.broker.fills(account) if f.order_id == order_id}
        assert {t.trade_id: t.quantity for t in got[-1].trades} == made
    recovered_states = [e for e in recovered_in(states) if isinstance(e, m.OrderState)]
    assert {e.order_id for e in recovered_states} >= {resting.order_id, during.order_id, sold.order_id}

    # Fills: every fill of the broker exactly once, under its order, sized in units.
    got_fills = [
        (e.order_id, t.trade_id, t.quantity)
        for e in fills.events
        if isinstance(e, m.OrderTrades)
        for t in e.trades
    ]
    assert sorted(got_fills) == sorted((f.order_id, f.trade_id, f.units) for f in sim.broker.fills(account))
    recovered_fills = {t.trade_id for e in recovered_in(fills) for t in e.trades}
    assert recovered_fills == gap_fills

    assert counters["OrderStateStream"] == (len(recovered_states), 1, 0)
    assert counters["TradesStream"] == (len(recovered_in(fills)), 1, 0)
    assert counters["PositionsStream"] == (1, 1, 0)


def test_a_rest_failure_gives_recovered_with_an_error_and_the_stream_goes_on(sim: Simulator) -> None:
    account = sim.accounts[0]
    with connect(sim) as client:
        states, _ = watch(client.orders.order_states(account).with_markers())
        states.wait_for(Subscribed)
        streaming(sim, account, 1)
        first = sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))
        states.wait_for(m.OrderState)

        sim.fault_rest(50, status=503, code="70001")  # more than the recovery's calls and retries
        stall_account_streams(sim)
        sim.cancel_order(account, first.order_id)

        (done,) = states.wait_for(Recovered)
        assert "70001" in done.error
        assert sim.token not in done.error
        assert done.events == 0
        sim.fault_rest(0)
        after = sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))  # live again
        states.wait(
            lambda c: any(isinstance(e, m.OrderState) and e.order_id == after.order_id for e in c.events)
        )
        (connection,) = connections_of(client)
        assert (connection.recoveries, connection.recoveries_failed) == (1, 1)
        assert connection.recovering == ()
    gap, marker = markers(states)
    assert isinstance(gap, Gap)
    assert marker is done
    assert not states.errors


def test_closing_during_a_recovery_neither_hangs_nor_leaks_threads(sim: Simulator) -> None:
    account = sim.accounts[0]
    client = connect(sim)
    states, _ = watch(client.orders.order_states(account).with_markers())
    states.wait_for(Subscribed)
    streaming(sim, account, 1)
    sim.place_order(account, "SBER_TQBR", BUY, 1, price=Decimal("1.00"))
    states.wait_for(m.OrderState)
    sim.fault_rest(1000, status=503, code="70001")  # the recovery keeps retrying
    stall_account_streams(sim)
    states.wait_for(Gap)
    deadline = time.monotonic() + WAIT
    while sim.rest_calls().get("GetOrderState", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.rest_calls().get("GetOrderState", 0) > 0  # it is recovering now
    client.close()  # closes its REST client first: a retry pause ends at once
    assert states.completed.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while (
        any(t.name.startswith("rxinvest-recovery") for t in threading.enumerate())
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("rxinvest-recovery")]


# --- the connection alone, driven as its reader thread would: holds, a second gap, duplicates -------


class StillTransport:
    """A transport that never runs: the test calls the connection's Listener methods itself."""

    running = False
    is_open = True

    def start(self) -> None:
        pass

    def send(self, frames: list[str]) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass


class GatedApi:
    """Answers from a table; the first call waits for :attr:`gate` (a recovery under way)."""

    def __init__(self, answers: dict[tuple[Unary, str], Any]) -> None:
        self.answers = answers
        self.gate = threading.Event()
        self.calls: list[tuple[Unary, str]] = []
        self.called = threading.Event()

    def __call__(self, method: Unary, request: Any) -> Any:
        self.calls.append((method, getattr(request, "order_id", "")))
        self.called.set()
        assert self.gate.wait(WAIT)
        answer = self.answers[(method, getattr(request, "order_id", ""))]
        if isinstance(answer, Exception):
            raise answer
        return answer


ACCOUNT = "2000000001"


def state(order_id: str, status: m.OrderExecutionReportStatus, executed: int) -> m.OrderState:
    return m.OrderState(
        order_id=order_id, execution_report_status=status, lots_requested=2, lots_executed=executed,
        lot_size=1, account_id=ACCOUNT, instrument_uid="uid",
    )  # fmt: skip


def answer_of(order_id: str, status: m.OrderExecutionReportStatus, executed: int) -> m.OrderSnapshot:
    return m.OrderSnapshot(
        order_id=order_id, execution_report_status=status, lots_requested=2, lots_executed=executed,
        instrument_uid="uid", order_date=datetime(2025, 11, 21, tzinfo=UTC),
    )  # fmt: skip


def connection_with(api: Any) -> tuple[AccountConnection, Collector]:
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    connection = AccountConnection(
        lambda listener: StillTransport(), lambda status: None, session, lambda c: None,
        recovery=AccountRecovery(api, Stream.ORDER_STATE),
    )  # fmt: skip
    collector = Collector()
    box = Mailbox(collector, ImmediateScheduler(), markers=True, name="test")
    connection.add(box)
    return connection, collector


def serve_frames(connection: AccountConnection, *events: Any) -> None:
    for event in events:
        connection.frame(wire.encode(event).encode(), datetime.now(UTC))
    connection.flush()


def reconnect(connection: AccountConnection) -> None:
    connection.lost(ConnectionLostError("cut"), True)
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=(ACCOUNT,)))


NEW_, PARTIAL_, FILL_ = (
    S.EXECUTION_REPORT_STATUS_NEW,
    S.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
    S.EXECUTION_REPORT_STATUS_FILL,
)


def test_live_events_wait_for_the_recovery_and_a_second_gap_waits_its_turn() -> None:
    nothing = m.GetOperationsByCursorResponse()
    api = GatedApi({
        (Unary.GET_ORDER_STATE, "o1"): answer_of("o1", FILL_, 2),
        (Unary.GET_ORDER_STATE, "o2"): answer_of("o2", PARTIAL_, 1),
        (Unary.GET_ORDERS, ""): m.GetOrdersResponse(),
        (Unary.GET_OPERATIONS_BY_CURSOR, ""): nothing,
    })  # fmt: skip
    connection, got = connection_with(api)
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=(ACCOUNT,)), state("o1", NEW_, 0))
    reconnect(connection)  # the first gap: its recovery waits at the gate
    assert api.called.wait(WAIT)
    serve_frames(connection, state("o2", NEW_, 0))  # held
    reconnect(connection)  # a second gap while the first recovers
    serve_frames(connection, state("o3", NEW_, 0))  # held behind the second gap
    assert connection.recovering == (ACCOUNT,)
    assert [type(e).__name__ for e in got.events] == ["Subscribed", "OrderState", "Gap"]  # the rest waits
    api.gate.set()
    got.wait(lambda c: sum(isinstance(e, Recovered) for e in c.events) == 2)
    deadline = time.monotonic() + WAIT
    while connection.recovering and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connection.recovering == ()
    serve_frames(connection, state("o2", PARTIAL_, 1), state("o2", FILL_, 2))  # the first repeats recovery's
    got.wait(
        lambda c: (
            isinstance(c.events[-1], m.OrderState)
            and c.events[-1].lots_executed == 2
            and c.events[-1].order_id == "o2"
        )
    )

    def show(event: Any) -> Any:
        if isinstance(event, m.OrderState):
            return (event.order_id, event.execution_report_status.name[24:], event.lots_executed)
        if isinstance(event, Recovered):
            return ("Recovered", event.events, event.error)
        return type(event).__name__

    assert [show(e) for e in got.events] == [
        "Subscribed",
        ("o1", "NEW", 0),
        "Gap",
        ("o1", "FILL", 2),  # recovered: it ended in the gap
        ("Recovered", 1, ""),
        ("o2", "NEW", 0),  # held during the first recovery
        "Gap",  # the second gap, where it happened
        ("o2", "PARTIALLYFILL", 1),  # recovered: o2 was active at the second gap
        ("Recovered", 1, ""),
        ("o3", "NEW", 0),  # held during the second
        ("o2", "FILL", 2),  # live again; its PARTIALLYFILL, which recovery had sent, dropped
    ]
    first, second = (e for e in got.events if isinstance(e, Gap))
    assert first.until <= second.since
    assert [c for c in api.calls if c[0] is Unary.GET_ORDER_STATE] == [
        (Unary.GET_ORDER_STATE, "o1"),
        (Unary.GET_ORDER_STATE, "o2"),  # the second plan knew what the first delivered
    ]
    assert (connection.recovered, connection.recoveries, connection.recoveries_failed) == (2, 2, 0)
    connection.close()


def test_a_bug_in_the_caller_is_an_error_marker_and_the_events_flow_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(method: Unary, request: Any) -> Any:
        raise KeyError("a bug")

    connection, got = connection_with(broken)
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=(ACCOUNT,)), state("o1", NEW_, 0))
    reconnect(connection)
    serve_frames(connection, state("o1", FILL_, 2))
    got.wait(lambda c: any(isinstance(e, m.OrderState) and e.lots_executed == 2 for e in c.events))
    (marker,) = [e for e in got.events if isinstance(e, Recovered)]
    assert "internal error" in marker.error
    assert "KeyError" in marker.error
    assert [type(e).__name__ for e in got.events][-2:] == ["Recovered", "OrderState"]
    assert any("recovery of account" in r.getMessage() for r in caplog.records)
    assert (connection.recoveries, connection.recoveries_failed) == (1, 1)
    connection.close()


def test_without_a_recovery_a_gap_is_only_marked() -> None:
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    connection = AccountConnection(
        lambda listener: StillTransport(), lambda status: None, session, lambda c: None
    )
    got = Collector()
    connection.add(Mailbox(got, ImmediateScheduler(), markers=True))
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=(ACCOUNT,)), state("o1", NEW_, 0))
    reconnect(connection)
    serve_frames(connection, state("o1", NEW_, 0))
    assert [type(e).__name__ for e in got.events] == ["Subscribed", "OrderState", "Gap", "OrderState"]
    assert connection.recoveries == 0


def test_a_bug_while_releasing_still_lets_the_held_events_go(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import rxinvest.streams.accounts as accounts_module

    def broken_marker(**fields: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(accounts_module, "Recovered", broken_marker)
    api = GatedApi({
        (Unary.GET_ORDER_STATE, "o1"): answer_of("o1", NEW_, 0),
        (Unary.GET_ORDERS, ""): m.GetOrdersResponse(),
        (Unary.GET_OPERATIONS_BY_CURSOR, ""): m.GetOperationsByCursorResponse(),
    })  # fmt: skip
    connection, got = connection_with(api)
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=(ACCOUNT,)), state("o1", NEW_, 0))
    reconnect(connection)
    assert api.called.wait(WAIT)
    serve_frames(connection, state("o2", NEW_, 0))  # held
    api.gate.set()
    got.wait(lambda c: any(isinstance(e, m.OrderState) and e.order_id == "o2" for e in c.events))
    assert any("releasing" in r.getMessage() for r in caplog.records)
    serve_frames(connection, state("o3", NEW_, 0))  # and live again
    got.wait(lambda c: any(isinstance(e, m.OrderState) and e.order_id == "o3" for e in c.events))
    assert connection.recovering == ()
    connection.close()
