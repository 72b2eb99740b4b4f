"""Gap recovery, sans-I/O: plans, conversions, de-duplication; and, with hypothesis, that what the
stream delivered plus what recovery emitted covers the truth exactly once and never regresses,
whatever the stream lost and however the REST answers and the live events interleave."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest.errors import ApiError, ConnectionLostError, PermissionDeniedError
from rxinvest.protocol.recovery import (
    AccountRecovery,
    Call,
    Known,
    Plan,
    Seen,
    execute,
    order_state,
    order_trades,
    reconcile,
)
from rxinvest.wire import Stream, Unary

ACCOUNT = "2000000001"
T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
GAP = (T0 + timedelta(minutes=5), T0 + timedelta(minutes=6))
S = m.OrderExecutionReportStatus
NEW, PARTIAL, FILL = (
    S.EXECUTION_REPORT_STATUS_NEW,
    S.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
    S.EXECUTION_REPORT_STATUS_FILL,
)
CANCELLED, REJECTED = S.EXECUTION_REPORT_STATUS_CANCELLED, S.EXECUTION_REPORT_STATUS_REJECTED
FINAL_STATUSES = {FILL, CANCELLED, REJECTED}
BUY = m.OrderDirection.ORDER_DIRECTION_BUY
SBER = "e6123145-9665-43e0-8413-cd61b8aa9b13"


def rub(amount: str | int) -> m.Money:
    return m.Money(Decimal(amount), "rub")


def stream_state(
    order_id: str, status: m.OrderExecutionReportStatus, executed: int, **fields: Any
) -> m.OrderState:
    return m.OrderState(
        order_id=order_id,
        execution_report_status=status,
        lots_requested=fields.pop("requested", 5),
        lots_executed=executed,
        account_id=ACCOUNT,
        instrument_uid=fields.pop("uid", SBER),
        lot_size=fields.pop("lot", 10),
        **fields,
    )


def not_found(order_id: str) -> ApiError:
    return ApiError(f"GetOrderState failed with HTTP 404: order {order_id} not found", code="50005")


class FakeApi:
    """Answers calls from a table: method -> function(request) -> answer (or raises)."""

    def __init__(self, **answers: Callable[[Any], Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[Unary, Any]] = []

    def __call__(self, method: Unary, request: Any) -> Any:
        self.calls.append((method, request))
        return self.answers[method.name](request)


# --- plans -----------------------------------------------------------------------------------------


def test_an_order_stream_plan_asks_for_known_orders_the_list_and_operations_then_the_unknown() -> None:
    known = Known(
        active=(stream_state("o1", NEW, 0), stream_state("o2", PARTIAL, 1)), final=frozenset({"o0"})
    )
    plan = Plan(Stream.ORDER_STATE, ACCOUNT, GAP, known)
    first = plan.calls()
    assert [c.method for c in first] == [
        Unary.GET_ORDER_STATE,
        Unary.GET_ORDER_STATE,
        Unary.GET_ORDERS,
        Unary.GET_ORDERS,
        Unary.GET_OPERATIONS_BY_CURSOR,
    ]
    assert [c.request.order_id for c in first[:2]] == ["o1", "o2"]
    assert first[2].request == m.GetOrdersRequest(account_id=ACCOUNT)  # the active ones
    created_since = first[3].request.advanced_filters  # and every order created since the gap began
    assert created_since.from_ == GAP[0] - timedelta(minutes=1)
    assert created_since.to is None
    assert set(created_since.execution_status) == set(S) - {S.EXECUTION_REPORT_STATUS_UNSPECIFIED}
    page = first[4].request
    assert page.account_id == ACCOUNT
    assert page.from_ == GAP[0] - timedelta(minutes=1)  # the slack for clock skew
    assert page.to is None
    assert (page.cursor, page.limit) == ("", 1000)
    assert plan.calls() == []  # each call is given once
    assert not plan.done

    plan.answer(first[0], snapshot("o1", FILL, 5, 5, stages=[(5, "t1")]))
    plan.answer(first[1], snapshot("o2", PARTIAL, 5, 1, stages=[(1, "t2")]))
    plan.answer(first[2], m.GetOrdersResponse(orders=(snapshot("o2", PARTIAL, 5, 1, stages=[(1, "t2")]),)))
    # o5 was placed and cancelled inside the gap, unfilled: only the filtered list knows it
    plan.answer(first[3], m.GetOrdersResponse(orders=(snapshot("o5", CANCELLED, 5, 0),)))
    plan.answer(
        first[4], operations_page([fill_item("o3", "t3", 10), fill_item("o0", "t0", 10)], next_cursor="c2")
    )
    (second_page,) = plan.calls()  # the next page, before anything else
    assert second_page.request.cursor == "c2"
    plan.answer(second_page, operations_page([fill_item("o4", "t4", 20), fill_item("o1", "t1", 50)]))
    asked = plan.calls()  # orders only operations named; o0 was delivered final, o1 answered already
    assert [(c.method, c.request.order_id) for c in asked] == [
        (Unary.GET_ORDER_STATE, "o3"),
        (Unary.GET_ORDER_STATE, "o4"),
    ]
    plan.answer(asked[0], snapshot("o3", FILL, 1, 1, stages=[(1, "t3")]))
    plan.failed(asked[1], not_found("o4"))  # the API's link is best effort: skipped, not an error
    assert plan.done
    assert plan.error == ""
    events = plan.events()
    assert sorted(e.order_id for e in events) == ["o1", "o2", "o3", "o5"]
    assert all(isinstance(e, m.OrderState) and e.account_id == ACCOUNT for e in events)


def test_a_trades_plan_pages_to_the_end_and_makes_one_event_per_operation() -> None:
    pages = {
        "": operations_page([fill_item("o2", "t3", 7, minutes=3), fill_item("o1", "t1", 2, minutes=1)], "c2"),
        "c2": operations_page([money_item("M1"), fill_item("o1", "t2", 3, minutes=2)], "c3"),
        "c3": operations_page([]),
    }
    api = FakeApi(GET_OPERATIONS_BY_CURSOR=lambda request: pages[request.cursor])
    plan = execute(Plan(Stream.TRADES, ACCOUNT, GAP), api)
    assert plan.done
    assert plan.error == ""
    assert [request.cursor for _, request in api.calls] == ["", "c2", "c3"]
    events = plan.events()
    assert [(e.order_id, [t.trade_id for t in e.trades]) for e in events] == [
        ("o1", ["t1"]),
        ("o1", ["t2"]),
        ("o2", ["t3"]),
    ]  # oldest first; the money movement has no trades and is no fill
    assert events[2] == m.OrderTrades(
        order_id="o2",
        created_at=T0 + timedelta(minutes=3),
        direction=BUY,
        figi="BBG004730N88",
        trades=(
            m.OrderTrade(
                date_time=T0 + timedelta(minutes=3), price=Decimal("250.5"), quantity=7, trade_id="t3"
            ),
        ),
        account_id=ACCOUNT,
        instrument_uid=SBER,
    )


def test_position_and_portfolio_plans_take_one_snapshot_with_the_account_set() -> None:
    positions = m.PositionsResponse(money=(rub(100),))
    api = FakeApi(
        GET_POSITIONS=lambda request: positions, GET_PORTFOLIO=lambda request: m.PortfolioResponse()
    )
    assert execute(Plan(Stream.POSITIONS, ACCOUNT, GAP), api).events() == [
        attrs.evolve(positions, account_id=ACCOUNT)
    ]
    assert execute(Plan(Stream.PORTFOLIO, ACCOUNT, GAP), api).events() == [
        m.PortfolioResponse(account_id=ACCOUNT)
    ]
    assert [(method, request.account_id) for method, request in api.calls] == [
        (Unary.GET_POSITIONS, ACCOUNT),
        (Unary.GET_PORTFOLIO, ACCOUNT),
    ]


def test_a_failed_call_stops_the_plan_and_keeps_what_came() -> None:
    known = Known(active=(stream_state("o1", NEW, 0),))

    def orders(request: Any) -> Any:
        raise ConnectionLostError("GetOrders: no answer from http://127.0.0.1:1/rest/ in 10 s")

    api = FakeApi(
        GET_ORDER_STATE=lambda request: snapshot("o1", FILL, 5, 5, stages=[(5, "t1")]),
        GET_ORDERS=orders,
        GET_OPERATIONS_BY_CURSOR=lambda request: operations_page([]),
    )
    plan = execute(Plan(Stream.ORDER_STATE, ACCOUNT, GAP, known), api)
    assert plan.done
    assert "no answer" in plan.error
    assert [e.order_id for e in plan.events()] == ["o1"]  # partial: the marker will say so
    assert len(api.calls) == 2  # nothing asked after the failure


def test_an_order_active_at_the_gap_that_the_api_does_not_know_is_an_error() -> None:
    known = Known(active=(stream_state("o1", NEW, 0),))

    def missing(request: Any) -> Any:
        raise not_found(request.order_id)

    api = FakeApi(GET_ORDER_STATE=missing)
    plan = execute(Plan(Stream.ORDER_STATE, ACCOUNT, GAP, known), api)
    assert "o1" in plan.error  # its state is unknown: the gap stays open


def test_a_refusal_of_rights_is_an_error_even_for_an_order_an_operation_named() -> None:
    def refused(request: Any) -> Any:
        raise PermissionDeniedError("GetOrderState failed with HTTP 403", code="40002")

    api = FakeApi(
        GET_ORDERS=lambda request: m.GetOrdersResponse(),
        GET_OPERATIONS_BY_CURSOR=lambda request: operations_page([fill_item("o9", "t9", 1)]),
        GET_ORDER_STATE=refused,
    )
    plan = execute(Plan(Stream.ORDER_STATE, ACCOUNT, GAP), api)
    assert "40002" in plan.error


def test_plans_are_bounded_in_pages_and_orders() -> None:
    endless = FakeApi(
        GET_OPERATIONS_BY_CURSOR=lambda request: operations_page([], next_cursor=request.cursor + "x")
    )
    plan = execute(Plan(Stream.TRADES, ACCOUNT, GAP, max_pages=3), endless)
    assert len(endless.calls) == 3
    assert "pages" in plan.error
    many = Known(active=tuple(stream_state(f"o{i}", NEW, 0) for i in range(5)))
    api = FakeApi(
        GET_ORDER_STATE=lambda request: snapshot(request.order_id, NEW, 5, 0),
        GET_ORDERS=lambda request: m.GetOrdersResponse(),
        GET_OPERATIONS_BY_CURSOR=lambda request: operations_page([]),
    )
    plan = execute(Plan(Stream.ORDER_STATE, ACCOUNT, GAP, many, max_order_calls=3), api)
    assert "orders" in plan.error
    assert sum(method is Unary.GET_ORDER_STATE for method, _ in api.calls) <= 3


def test_execute_stops_when_told_why() -> None:
    api = FakeApi(GET_POSITIONS=lambda request: m.PositionsResponse())
    plan = execute(Plan(Stream.POSITIONS, ACCOUNT, GAP), api, stop=lambda: "the connection closed")
    assert plan.done
    assert plan.error == "the connection closed"
    assert api.calls == []
    reasons = iter(["", "", "time is up"])
    pages = FakeApi(
        GET_OPERATIONS_BY_CURSOR=lambda request: operations_page([], next_cursor=request.cursor + "x")
    )
    plan = execute(Plan(Stream.TRADES, ACCOUNT, GAP), pages, stop=lambda: next(reasons))
    assert plan.error == "time is up"
    assert len(pages.calls) == 2


def test_an_answer_of_the_wrong_type_is_an_error_not_a_crash() -> None:
    plan = Plan(Stream.POSITIONS, ACCOUNT, GAP)
    (call,) = plan.calls()
    plan.answer(call, m.PortfolioResponse())
    assert "PortfolioResponse" in plan.error
    assert plan.events() == []


# --- conversions -----------------------------------------------------------------------------------


def test_an_order_snapshot_becomes_a_stream_order_state() -> None:
    known = stream_state(
        "o1", PARTIAL, 1, lot=10, ticker="SBER", class_code="TQBR", client_code="C1", exchange="MOEX",
        time_in_force=m.TimeInForceType.TIME_IN_FORCE_DAY, requested=3,
    )  # fmt: skip
    answer = m.OrderSnapshot(
        order_id="o1",
        execution_report_status=FILL,
        lots_requested=3,
        lots_executed=3,
        initial_order_price=rub(7500),
        executed_order_price=rub(7480),
        initial_security_price=rub(250),
        direction=BUY,
        currency="rub",
        order_type=m.OrderType.ORDER_TYPE_LIMIT,
        order_date=T0,
        instrument_uid=SBER,
        order_request_id="r1",
        stages=(
            m.OrderStage(price=rub(250), quantity=1, trade_id="t1", execution_time=T0 + timedelta(seconds=1)),
            m.OrderStage(
                price=rub("249"), quantity=2, trade_id="t2", execution_time=T0 + timedelta(seconds=9)
            ),
        ),
    )
    assert order_state(answer, ACCOUNT, known=known) == m.OrderState(
        order_id="o1",
        order_request_id="r1",
        client_code="C1",
        created_at=T0,
        execution_report_status=FILL,
        ticker="SBER",
        class_code="TQBR",
        lot_size=10,
        direction=BUY,
        time_in_force=m.TimeInForceType.TIME_IN_FORCE_DAY,
        order_type=m.OrderType.ORDER_TYPE_LIMIT,
        account_id=ACCOUNT,
        initial_order_price=rub(7500),
        order_price=rub(250),
        amount=rub(7500),
        executed_order_price=rub(7480),
        currency="rub",
        lots_requested=3,
        lots_executed=3,
        lots_left=0,
        lots_cancelled=0,
        trades=(
            m.OrderTrade(date_time=T0 + timedelta(seconds=1), price=Decimal(250), quantity=10, trade_id="t1"),
            m.OrderTrade(date_time=T0 + timedelta(seconds=9), price=Decimal(249), quantity=20, trade_id="t2"),
        ),
        completion_time=T0 + timedelta(seconds=9),
        exchange="MOEX",
        instrument_uid=SBER,
    )


def test_fill_sizes_come_from_operations_or_the_instruments_lot_or_are_left_out() -> None:
    answer = snapshot("o1", CANCELLED, 5, 3, stages=[(1, "t1"), (2, "t2")])
    by_instrument = order_state(answer, ACCOUNT, lots={SBER: 100})
    assert [(t.trade_id, t.quantity) for t in by_instrument.trades] == [("t1", 100), ("t2", 200)]
    assert by_instrument.lot_size == 100
    assert (by_instrument.lots_left, by_instrument.lots_cancelled) == (0, 2)
    assert by_instrument.completion_time is None  # a cancel's time is not in the answer
    by_operations = order_state(answer, ACCOUNT, units={"t2": 20})
    assert [(t.trade_id, t.quantity) for t in by_operations.trades] == [("t1", 10), ("t2", 20)]
    assert by_operations.lot_size == 10  # 20 units over 2 lots
    unknown = order_state(answer, ACCOUNT)
    assert unknown.trades == ()
    assert unknown.lot_size == 0
    assert unknown.lots_executed == 3  # the state still says how much executed
    active = order_state(snapshot("o2", PARTIAL, 5, 3), ACCOUNT)
    assert (active.lots_left, active.lots_cancelled) == (2, 0)


def test_an_operation_becomes_order_trades_with_its_direction() -> None:
    sell = attrs.evolve(fill_item("o5", "t5", 30), type=m.OperationType.OPERATION_TYPE_SELL)
    event = order_trades(sell, ACCOUNT)
    assert event.direction is m.OrderDirection.ORDER_DIRECTION_SELL
    assert event.trades == (m.OrderTrade(date_time=T0, price=Decimal("250.5"), quantity=30, trade_id="t5"),)
    odd = attrs.evolve(sell, type=m.OperationType.OPERATION_TYPE_DIVIDEND)
    assert order_trades(odd, ACCOUNT).direction is m.OrderDirection.ORDER_DIRECTION_UNSPECIFIED


# --- de-duplication --------------------------------------------------------------------------------


def test_reconcile_drops_what_was_delivered_or_waits_and_never_moves_an_order_back() -> None:
    seen = Seen()
    seen.delivered(stream_state("same", PARTIAL, 2))
    seen.delivered(stream_state("ahead", PARTIAL, 3))
    seen.delivered(stream_state("behind", PARTIAL, 1))
    seen.delivered(stream_state("done", FILL, 5))
    recovered = [
        stream_state("same", PARTIAL, 2),  # delivered already
        stream_state("ahead", PARTIAL, 2),  # older than delivered: would move it back
        stream_state("behind", FILL, 5),  # later: kept
        stream_state("done", FILL, 5),  # delivered final
        stream_state("waiting", PARTIAL, 1),  # a live event of it waits: that one is later
        stream_state("new", NEW, 0),  # placed in the gap: kept
    ]
    held = [stream_state("waiting", PARTIAL, 2)]
    assert [e.order_id for e in reconcile(seen, recovered, held)] == ["behind", "new"]
    assert seen.rank_of("behind") == (5, 1)
    assert seen.rank_of("new") == (0, 0)


def test_reconcile_drops_fills_delivered_or_waiting_and_snapshots_a_live_one_replaces() -> None:
    seen = Seen()
    seen.delivered(m.OrderTrades(order_id="o1", trades=(m.OrderTrade(trade_id="t1"),)))
    recovered = [
        m.OrderTrades(order_id="o1", trades=(m.OrderTrade(trade_id="t1"), m.OrderTrade(trade_id="t2"))),
        m.OrderTrades(order_id="o2", trades=(m.OrderTrade(trade_id="t3"),)),
        m.OrderTrades(order_id="o3", trades=(m.OrderTrade(trade_id="t4"),)),
    ]
    held = [m.OrderTrades(order_id="o3", trades=(m.OrderTrade(trade_id="t4"),))]
    kept = reconcile(seen, recovered, held)
    assert [(e.order_id, [t.trade_id for t in e.trades]) for e in kept] == [("o1", ["t2"]), ("o2", ["t3"])]
    positions = m.PositionsResponse(account_id=ACCOUNT, money=(rub(1),))
    assert reconcile(Seen(), [positions], []) == [positions]
    assert reconcile(Seen(), [positions], [attrs.evolve(positions, money=(rub(2),))]) == []
    assert reconcile(Seen(), [positions], [m.PositionData(account_id=ACCOUNT)]) == [positions]


def test_after_a_recovery_live_repeats_of_what_it_emitted_are_dropped() -> None:
    seen = Seen()
    reconcile(
        seen,
        [stream_state("o1", PARTIAL, 3), m.OrderTrades(order_id="o1", trades=(m.OrderTrade(trade_id="t1"),))],
        [],
    )
    assert seen.admit(stream_state("o1", PARTIAL, 2)) is None  # older than what recovery emitted
    assert seen.admit(stream_state("o1", PARTIAL, 3)) is None  # the same
    later = stream_state("o1", FILL, 5)
    assert seen.admit(later) is later
    assert seen.admit(stream_state("o1", PARTIAL, 3)) is not None  # the stream is past it: no more checks
    fills = m.OrderTrades(order_id="o1", trades=(m.OrderTrade(trade_id="t1"), m.OrderTrade(trade_id="t2")))
    admitted = seen.admit(fills)
    assert isinstance(admitted, m.OrderTrades)
    assert [t.trade_id for t in admitted.trades] == ["t2"]
    assert seen.admit(m.OrderTrades(trades=(m.OrderTrade(trade_id="t1"),))) is None
    plain = stream_state("o2", NEW, 0)
    assert seen.admit(plain) is plain  # orders recovery never emitted pass as they are


def test_seen_is_bounded_and_forgets_final_orders_from_the_active_ones() -> None:
    seen = Seen(limit=50)
    for i in range(500):
        seen.delivered(stream_state(f"o{i}", NEW, 0, trades=(m.OrderTrade(trade_id=f"t{i}"),)))
        seen.delivered(stream_state(f"o{i}", FILL, 5))
        seen.delivered(m.OrderTrades(trades=(m.OrderTrade(trade_id=f"x{i}"),)))
    known = seen.known()
    assert known.active == ()
    assert len(known.final) == 50
    assert "o499" in known.final
    assert not seen.has_trade("x0")
    assert seen.has_trade("x499")
    for memory in vars(seen).values():
        assert len(memory) <= 50
    with pytest.raises(ValueError, match="limit"):
        Seen(limit=0)


def test_account_recovery_keeps_one_seen_per_account() -> None:
    recovery = AccountRecovery(FakeApi(), Stream.ORDER_STATE)
    recovery.seen("a").delivered(stream_state("o1", NEW, 0))
    assert [s.order_id for s in recovery.plan("a", GAP).known.active] == ["o1"]
    assert recovery.plan("b", GAP).known.active == ()
    with pytest.raises(ValueError, match="account stream"):
        AccountRecovery(FakeApi(), Stream.MARKET_DATA)


# --- the property: streamed + recovered = the truth, once, in order ---------------------------------


@attrs.frozen
class Order:
    """One order of the generated truth: its lot, lots requested, fills (lots each) and its end."""

    order_id: str
    lot: int
    requested: int
    fills: tuple[int, ...]
    cancelled: bool

    def trade_id(self, i: int) -> str:
        return f"{self.order_id}-t{i}"


@attrs.frozen
class Step:
    """One change of one order, at ``time``: the state after it, and the fill it made (if any)."""

    order: Order
    index: int  # the order's own step number: 0 is NEW
    time: datetime

    @property
    def fills_done(self) -> int:
        """Fills made by the end of this step."""
        return min(self.index, len(self.order.fills))

    @property
    def executed(self) -> int:
        return sum(self.order.fills[: self.fills_done])

    @property
    def status(self) -> m.OrderExecutionReportStatus:
        order = self.order
        if self.index > len(order.fills):
            return CANCELLED
        if self.executed == order.requested:
            return FILL
        return PARTIAL if self.executed else NEW


@st.composite
def orders(draw: st.DrawFn, order_id: str) -> Order:
    requested = draw(st.integers(1, 5))
    fills: list[int] = []
    while sum(fills) < requested and draw(st.booleans()):
        fills.append(draw(st.integers(1, requested - sum(fills))))
    cancelled = sum(fills) < requested and draw(st.booleans())
    return Order(order_id, draw(st.sampled_from([1, 10, 100])), requested, tuple(fills), cancelled)


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    """A truth (orders and the order their steps happened in), what the stream lost before the
    reconnect ``b``, when REST read the state (``r``) and when the recovery released (``c``)."""
    truth = [draw(orders(f"o{i}")) for i in range(draw(st.integers(1, 6)))]
    lanes = [i for i, order in enumerate(truth) for _ in range(1 + len(order.fills) + order.cancelled)]
    sequence = draw(st.permutations(lanes))
    counters = [0] * len(truth)
    steps: list[Step] = []
    for k, lane in enumerate(sequence):
        steps.append(Step(truth[lane], counters[lane], T0 + timedelta(seconds=k)))
        counters[lane] += 1
    n = len(steps)
    b = draw(st.integers(0, n))
    lost = draw(st.sets(st.integers(0, b - 1))) if b else set()
    r = draw(st.integers(b, n))  # REST reads after the reconnect
    c = draw(st.integers(b, n))  # ... and the release comes before or after the stream got that far
    return {"truth": truth, "steps": steps, "b": b, "lost": lost, "r": r, "c": c}


def state_event(step: Step) -> m.OrderState:
    """The OrderStateStream event of a step (trades cumulative, in units, as the simulator sends)."""
    order = step.order
    return m.OrderState(
        order_id=order.order_id,
        execution_report_status=step.status,
        lots_requested=order.requested,
        lots_executed=step.executed,
        lot_size=order.lot,
        account_id=ACCOUNT,
        instrument_uid=f"uid-{order.order_id}",
        trades=tuple(
            m.OrderTrade(trade_id=order.trade_id(i), quantity=lots * order.lot)
            for i, lots in enumerate(order.fills[: step.fills_done])
        ),
    )


def trades_event(step: Step) -> m.OrderTrades | None:
    """The TradesStream event of a step that made a fill."""
    order = step.order
    if step.index == 0 or step.index > len(order.fills):
        return None
    i = step.index - 1
    trade = m.OrderTrade(date_time=step.time, quantity=order.fills[i] * order.lot, trade_id=order.trade_id(i))
    return m.OrderTrades(order_id=order.order_id, trades=(trade,), account_id=ACCOUNT)


class TruthApi:
    """The unary API as it stood after the first ``r`` steps."""

    def __init__(self, steps: list[Step], r: int) -> None:
        self.last: dict[str, Step] = {}
        self.created: dict[str, datetime] = {}
        for step in steps[:r]:
            self.last[step.order.order_id] = step
            self.created.setdefault(step.order.order_id, step.time)
        self.fills = [s for s in steps[:r] if trades_event(s) is not None]

    def __call__(self, method: Unary, request: Any) -> Any:
        if method is Unary.GET_ORDERS:
            filters = request.advanced_filters
            if filters is None:
                chosen = [s for s in self.last.values() if s.status not in FINAL_STATUSES]
            else:  # the orders created since ``from``, in the statuses asked for
                assert filters.to is None and filters.from_ is not None
                chosen = [
                    s
                    for s in self.last.values()
                    if self.created[s.order.order_id] >= filters.from_
                    and s.status in filters.execution_status
                ]
            return m.GetOrdersResponse(orders=tuple(self._snapshot(s) for s in chosen))
        if method is Unary.GET_ORDER_STATE:
            step = self.last.get(request.order_id)
            if step is None:
                raise not_found(request.order_id)
            return self._snapshot(step)
        assert method is Unary.GET_OPERATIONS_BY_CURSOR
        start = int(request.cursor or 0)
        page = self.fills[::-1][start : start + 2]  # newest first, two a page: paging is exercised
        more = start + 2 < len(self.fills)
        return m.GetOperationsByCursorResponse(
            has_next=more,
            next_cursor=str(start + 2) if more else "",
            items=tuple(self._item(s) for s in page),
        )

    @staticmethod
    def _snapshot(step: Step) -> m.OrderSnapshot:
        order = step.order
        return m.OrderSnapshot(
            order_id=order.order_id,
            execution_report_status=step.status,
            lots_requested=order.requested,
            lots_executed=step.executed,
            instrument_uid=f"uid-{order.order_id}",
            stages=tuple(
                m.OrderStage(quantity=lots, trade_id=order.trade_id(i))
                for i, lots in enumerate(order.fills[: step.fills_done])
            ),
        )

    @staticmethod
    def _item(step: Step) -> m.OperationItem:
        order, i = step.order, step.index - 1
        trade = m.OperationItemTrade(
            num=order.trade_id(i), date=step.time, quantity=order.fills[i] * order.lot
        )
        return m.OperationItem(
            id=order.order_id,
            cursor=order.trade_id(i),
            date=step.time,
            type=m.OperationType.OPERATION_TYPE_BUY,
            trades_info=m.OperationItemTrades(trades=(trade,)),
        )


def run_stream(scenario: dict[str, Any], stream: Stream, event_of: Callable[[Step], Any]) -> list[Any]:
    """What a subscriber gets, done as the connection does it: delivered events update Seen; at the
    gap a plan runs against the API as it stood at ``r``; its events are reconciled with the live
    events that came before the release ``c`` (held), then those, then the rest, through ``admit``."""
    steps, b, lost, r, c = (scenario[k] for k in ("steps", "b", "lost", "r", "c"))
    recovery = AccountRecovery(TruthApi(steps, r), stream)
    seen = recovery.seen(ACCOUNT)
    out: list[Any] = []

    def live(step: Step) -> None:
        event = event_of(step)
        if event is not None and (event := seen.admit(event)) is not None:
            seen.delivered(event)
            out.append(event)

    for k in range(b):
        if k not in lost:
            live(steps[k])
    # The gap began when the stream lost its first event (the slack reaches a minute further back).
    end = T0 + timedelta(seconds=len(steps))
    gap = (steps[min(lost)].time if lost else end, end)
    plan = execute(recovery.plan(ACCOUNT, gap), recovery.call)
    assert plan.error == ""
    held = [e for s in steps[b:c] if (e := event_of(s)) is not None]
    out += reconcile(seen, plan.events(), held)
    for event in held:
        seen.delivered(event)
    out += held
    for step in steps[c:]:
        live(step)
    return out


def rank_of(state: m.OrderState) -> tuple[int, bool]:
    return (state.lots_executed, state.execution_report_status in FINAL_STATUSES)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_order_states_cover_every_order_exactly_once_per_state_and_never_regress(
    scenario: dict[str, Any],
) -> None:
    out = run_stream(scenario, Stream.ORDER_STATE, state_event)
    steps = scenario["steps"]
    by_order: dict[str, list[m.OrderState]] = {}
    for event in out:
        by_order.setdefault(event.order_id, []).append(event)
    for order in scenario["truth"]:
        got = by_order.get(order.order_id, [])
        ranks = [rank_of(e) for e in got]
        assert ranks == sorted(set(ranks)), f"{order.order_id}: repeated or backwards: {ranks}"
        final = [s for s in steps if s.order is order][-1]
        assert got, f"{order.order_id} is missing"
        assert rank_of(got[-1]) == (final.executed, final.status in FINAL_STATUSES)
        assert got[-1].execution_report_status is final.status
        for event in got:  # every state's fills are the order's first ones, sized in units
            fills = [
                (order.trade_id(i), lots * order.lot)
                for i, lots in enumerate(order.fills)
                if sum(order.fills[: i + 1]) <= event.lots_executed
            ]
            assert [(t.trade_id, t.quantity) for t in event.trades] == fills


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_fills_arrive_exactly_once_whatever_the_stream_lost(scenario: dict[str, Any]) -> None:
    out = run_stream(scenario, Stream.TRADES, trades_event)
    got = [(e.order_id, t.trade_id, t.quantity) for e in out for t in e.trades]
    truth = [
        (order.order_id, order.trade_id(i), lots * order.lot)
        for order in scenario["truth"]
        for i, lots in enumerate(order.fills)
    ]
    assert sorted(got) == sorted(truth)  # every fill, exactly once, right order id and size


# --- helpers ---------------------------------------------------------------------------------------


def snapshot(
    order_id: str,
    status: m.OrderExecutionReportStatus,
    requested: int,
    executed: int,
    *,
    stages: list[tuple[int, str]] | None = None,
) -> m.OrderSnapshot:
    return m.OrderSnapshot(
        order_id=order_id,
        execution_report_status=status,
        lots_requested=requested,
        lots_executed=executed,
        instrument_uid=SBER,
        direction=BUY,
        order_date=T0,
        stages=tuple(
            m.OrderStage(price=rub(250), quantity=lots, trade_id=tid, execution_time=T0)
            for lots, tid in stages or []
        ),
    )


def fill_item(order_id: str, trade_id: str, units: int, *, minutes: int = 0) -> m.OperationItem:
    when = T0 + timedelta(minutes=minutes)
    return m.OperationItem(
        id=order_id,
        cursor=trade_id,
        date=when,
        type=m.OperationType.OPERATION_TYPE_BUY,
        state=m.OperationState.OPERATION_STATE_EXECUTED,
        instrument_uid=SBER,
        figi="BBG004730N88",
        trades_info=m.OperationItemTrades(
            trades=(m.OperationItemTrade(num=trade_id, date=when, quantity=units, price=rub("250.5")),)
        ),
    )


def money_item(cursor: str) -> m.OperationItem:
    return m.OperationItem(
        id=cursor, cursor=cursor, date=T0, type=m.OperationType.OPERATION_TYPE_INPUT, payment=rub(10)
    )


def operations_page(items: list[m.OperationItem], next_cursor: str = "") -> m.GetOperationsByCursorResponse:
    return m.GetOperationsByCursorResponse(
        has_next=bool(next_cursor), next_cursor=next_cursor, items=tuple(items)
    )


def test_the_helpers_build_what_the_tests_assume() -> None:
    assert Call(Unary.GET_ORDERS, m.GetOrdersRequest()) == Call(Unary.GET_ORDERS, m.GetOrdersRequest())
    order = Order("o", 10, 3, (1, 2), False)
    steps = [Step(order, i, T0) for i in range(3)]
    assert [s.status for s in steps] == [NEW, PARTIAL, FILL]
    assert [s.executed for s in steps] == [0, 1, 3]
    cancelled = Order("c", 1, 3, (1,), True)
    assert [Step(cancelled, i, T0).status for i in range(3)] == [NEW, PARTIAL, CANCELLED]
