"""fold.ledger against a model written here: a broker's truth, in-flight events on two streams, and
the verdicts the rules promise, computed from the script alone (never with the code under test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rxinvest.derived.positions import CheckCause, CheckStatus, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.fold.ledger import Feed, PositionLedger
from rxinvest.model.common import Money
from rxinvest.model.enums import OrderDirection, OrderExecutionReportStatus
from rxinvest.model.operations import (
    PortfolioPosition,
    PortfolioResponse,
    PositionData,
    PositionsMoney,
    PositionsResponse,
    PositionsSecurities,
)
from rxinvest.model.orders import OrderState, OrderTrade

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
T = timedelta(seconds=10)
DELAY = T / 4  # the most an event waits in flight
MS = timedelta(milliseconds=1)
ACCOUNTS = ["A1", "A2"]
LOT = 100
PRICES = {"X": Decimal(3), "Y": Decimal(7)}  # rub per unit
BUY, SELL = OrderDirection.ORDER_DIRECTION_BUY, OrderDirection.ORDER_DIRECTION_SELL
ST = OrderExecutionReportStatus
M, P, U, X = CheckStatus.MATCHED, CheckStatus.PENDING, CheckStatus.UNEXPLAINED, CheckStatus.MISSING


def rub(amount: Decimal | int) -> Money:
    return Money(amount=Decimal(amount), currency="rub")


def state(
    order_id: str,
    request_id: str | None,
    uid: str,
    direction: OrderDirection,
    lots: int,
    money: Decimal,
    status: ST = ST.EXECUTION_REPORT_STATUS_PARTIALLYFILL,
    account: str = "A1",
    lot_size: int = LOT,
    trades: tuple[OrderTrade, ...] = (),
) -> OrderState:
    return OrderState(
        order_id=order_id,
        order_request_id=request_id,
        execution_report_status=status,
        lot_size=lot_size,
        direction=direction,
        account_id=account,
        executed_order_price=rub(money),
        currency="rub",
        lots_executed=lots,
        trades=trades,
        instrument_uid=uid,
    )


def report(
    account: str, when: datetime, units: dict[str, int] | None = None, cash: Decimal | None = None
) -> PositionData:
    return PositionData(
        account_id=account,
        securities=tuple(
            PositionsSecurities(instrument_uid=uid, balance=n) for uid, n in (units or {}).items()
        ),
        money=() if cash is None else (PositionsMoney(available_value=rub(cash), blocked_value=rub(0)),),
        date=when,
    )


def snapshot(account: str, units: dict[str, int], cash: Decimal) -> PositionsResponse:
    return PositionsResponse(
        account_id=account,
        money=(rub(cash),),
        blocked=(rub(0),),
        securities=tuple(PositionsSecurities(instrument_uid=uid, balance=n) for uid, n in units.items() if n),
    )


def portfolio(account: str, units: dict[str, int], cash: Decimal) -> PortfolioResponse:
    positions = [
        PortfolioPosition(instrument_uid=uid, instrument_type="share", quantity=Decimal(n))
        for uid, n in units.items()
        if n
    ]
    positions.append(PortfolioPosition(figi="RUB000UTSTOM", instrument_type="currency", quantity=cash))
    return PortfolioResponse(account_id=account, positions=tuple(positions))


def verdicts(events: list[PositionCheck]) -> list[tuple[Any, ...]]:
    return sorted(
        (e.status.value, e.account_id, e.instrument_uid, e.currency, e.time, e.difference)
        for e in events
        if e.status in (U, X)
    )


# --- the state machine ---------------------------------------------------------------------------


class _Order:
    def __init__(
        self, account: str, uid: str, direction: OrderDirection, request_id: str | None, alias: bool
    ) -> None:
        self.account, self.uid, self.direction, self.request_id = account, uid, direction, request_id
        self.alias = alias  # its first state goes under another order id
        self.lots = 0
        self.money = Decimal(0)
        self.open = True
        self.states = 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = PositionLedger(T)
        self.now = T0
        self.calls: list[tuple[str, Any, datetime, bool]] = []  # (method, argument, now, is a duplicate)
        self.out: list[PositionCheck] = []
        self.units = {a: {"X": 1000, "Y": 0} for a in ACCOUNTS}
        self.cash = {a: Decimal(1_000_000) for a in ACCOUNTS}
        self.orders: list[_Order] = []
        self.flight: list[tuple[str, str, Any, datetime]] = []  # (stream, account, event, operation time)
        self.delivered: list[tuple[str, Any]] = []
        self.awaiting = dict.fromkeys(ACCOUNTS, False)
        self.marks: dict[str, list[datetime]] = {a: [] for a in ACCOUNTS}  # gaps and snapshots
        self.snapshots: dict[str, list[datetime]] = {a: [] for a in ACCOUNTS}
        self.externals: list[
            tuple[str, str, str, Decimal, Any, datetime]
        ] = []  # (account, uid, currency, amount, event, when)
        self.phantoms: list[
            tuple[str, str, Decimal, Decimal, Any]
        ] = []  # (account, uid, units, money, event)
        self.arrival: dict[int, tuple[datetime, bool]] = {}  # id(event) -> (delivered at, account awaiting)
        self.next_id = 0
        for account in ACCOUNTS:
            self._call("positions", snapshot(account, self.units[account], self.cash[account]))
            self.snapshots[account].append(self.now)
            self.marks[account].append(self.now)

    # --- plumbing ---

    def _call(self, method: str, argument: Any, duplicate: bool = False) -> None:
        self.calls.append((method, argument, self.now, duplicate))
        self.out += getattr(self.ledger, method)(argument, self.now)

    def _tick(self) -> None:
        self.now += MS

    def _deliver(self, index: int) -> None:
        stream, account, event, _ = self.flight.pop(index)
        self.arrival[id(event)] = (self.now, self.awaiting[account])
        self._call("order_state" if stream == "orders" else "positions", event)
        self.delivered.append((stream, event))

    def _eligible(self) -> list[int]:
        """Each stream keeps its order per account; the two streams overtake each other freely."""
        first: set[tuple[str, str]] = set()
        out = []
        for index, (stream, account, _, _) in enumerate(self.flight):
            if (stream, account) not in first:
                first.add((stream, account))
                out.append(index)
        return out

    def _send(self, stream: str, account: str, event: Any) -> None:
        self.flight.append((stream, account, event, self.now))

    def _fill_report(self, order: _Order) -> None:
        units = {order.uid: self.units[order.account][order.uid]}
        self._send(
            "positions", order.account, report(order.account, self.now, units, self.cash[order.account])
        )

    def _new_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}{self.next_id}"

    def _state(self, order: _Order, status: ST) -> OrderState:
        order.states += 1
        order_id = f"tmp-{id(order)}" if order.alias and order.states == 1 else f"ex-{id(order)}"
        return state(order_id, order.request_id, order.uid, order.direction, order.lots, order.money, status,
                     order.account)  # fmt: skip

    # --- rules ---

    @rule(
        account=st.sampled_from(ACCOUNTS),
        uid=st.sampled_from(sorted(PRICES)),
        direction=st.sampled_from([BUY, SELL]),
        keyed=st.booleans(),
        alias=st.booleans(),
    )
    def place(self, account: str, uid: str, direction: OrderDirection, keyed: bool, alias: bool) -> None:
        self._tick()
        order = _Order(account, uid, direction, self._new_id("req") if keyed else None, alias and keyed)
        self.orders.append(order)
        self._send("orders", account, self._state(order, ST.EXECUTION_REPORT_STATUS_NEW))

    @precondition(lambda self: any(o.open for o in self.orders))
    @rule(data=st.data(), lots=st.integers(1, 3), last=st.booleans())
    def fill(self, data: st.DataObject, lots: int, last: bool) -> None:
        order = data.draw(st.sampled_from([o for o in self.orders if o.open]))
        self._tick()
        units = lots * LOT
        amount = PRICES[order.uid] * units
        sign = 1 if order.direction is BUY else -1
        self.units[order.account][order.uid] += sign * units
        self.cash[order.account] -= sign * amount
        order.lots += lots
        order.money += amount
        order.open = not last
        status = ST.EXECUTION_REPORT_STATUS_FILL if last else ST.EXECUTION_REPORT_STATUS_PARTIALLYFILL
        # Which stream's event goes first is the delivery's business; here both are in flight.
        self._send("orders", order.account, self._state(order, status))
        self._fill_report(order)

    @precondition(lambda self: any(o.open for o in self.orders))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from([o for o in self.orders if o.open]))
        self._tick()
        order.open = False
        self._send("orders", order.account, self._state(order, ST.EXECUTION_REPORT_STATUS_CANCELLED))

    @rule(
        account=st.sampled_from(ACCOUNTS),
        uid=st.sampled_from(sorted(PRICES)),
        units=st.sampled_from([1, 2, 3]),
    )
    def transfer(self, account: str, uid: str, units: int) -> None:
        """Units in or out with no fill: X's go out, Y's come in (see :meth:`phantom`)."""
        self._tick()
        units = -units if uid == "X" else units
        self.units[account][uid] += units
        event = report(account, self.now, {uid: self.units[account][uid]})
        self.externals.append((account, uid, "", Decimal(units), event, self.now))
        self._send("positions", account, event)

    @rule(account=st.sampled_from(ACCOUNTS), milli=st.integers(1, 9))
    def dividend(self, account: str, milli: int) -> None:
        self._tick()
        amount = Decimal(milli) / 1000
        self.cash[account] += amount
        event = report(account, self.now, cash=self.cash[account])
        self.externals.append((account, "", "rub", amount, event, self.now))
        self._send("positions", account, event)

    @rule(account=st.sampled_from(ACCOUNTS), uid=st.sampled_from(sorted(PRICES)))
    def phantom(self, account: str, uid: str) -> None:
        """An order state with a fill the account never shows (units from its trades: no lot size).
        Phantoms and transfers are of amounts no sum of fills, transfers, dividends and other
        phantoms can equal (rule 5 matches sums): X's phantoms are buys and its transfers go out,
        Y's phantoms are sells and its transfers come in."""
        self._tick()
        direction = BUY if uid == "X" else SELL
        units = 1701
        money = (PRICES[uid] + Decimal("0.0000001")) * units
        trade = OrderTrade(date_time=self.now, price=PRICES[uid], quantity=units, trade_id=self._new_id("t"))
        event = state(self._new_id("ph"), None, uid, direction, 17, money, ST.EXECUTION_REPORT_STATUS_FILL,
                      account, lot_size=0, trades=(trade,))  # fmt: skip
        sign = 1 if direction is BUY else -1
        self.phantoms.append((account, uid, Decimal(sign * units), sign * money, event))
        self._send("orders", account, event)

    @precondition(lambda self: self.flight)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        self._tick()
        self._deliver(data.draw(st.sampled_from(self._eligible())))

    @precondition(lambda self: self.delivered)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        """Deliver again an order state or position report delivered before (now, or later)."""
        stream, event = data.draw(st.sampled_from(self.delivered))
        if data.draw(st.booleans()):
            self._tick()
        self._call("order_state" if stream == "orders" else "positions", event, duplicate=True)

    @rule(milliseconds=st.integers(1, 15_000), to_deadline=st.booleans())
    def wait(self, milliseconds: int, to_deadline: bool) -> None:
        target = self.now + milliseconds * MS
        deadline = self.ledger.next_deadline
        if to_deadline and deadline is not None and deadline > self.now:
            target = deadline
        self._catch_up(target)
        self.now = max(target, self.now)
        self._call_advance()

    def _catch_up(self, target: datetime) -> None:
        """Deliver what would wait in flight longer than DELAY before ``target``, each in time."""
        while True:
            eligible = [i for i in self._eligible() if self.flight[i][3] + DELAY < target]
            if not eligible:
                return
            index = min(eligible, key=lambda i: self.flight[i][3])
            self.now = max(self.now + MS, self.flight[index][3] + DELAY - MS)
            self._deliver(index)

    def _call_advance(self) -> None:
        self.calls.append(("advance", None, self.now, False))
        self.out += self.ledger.advance(self.now)

    @rule(account=st.sampled_from(ACCOUNTS), stream=st.sampled_from([Feed.ORDERS, Feed.POSITIONS]))
    def gap(self, account: str, stream: Feed) -> None:
        """A reconnect: the stream's events in flight for the account are lost. Before an order
        stream's gap the account's open orders are cancelled (a jump over lost fills is tested
        by example)."""
        self._tick()
        if stream is Feed.ORDERS:
            for order in self.orders:
                if order.account == account and order.open:
                    order.open = False
                    self._send("orders", account, self._state(order, ST.EXECUTION_REPORT_STATUS_CANCELLED))
        name = "orders" if stream is Feed.ORDERS else "positions"
        self.flight = [f for f in self.flight if not (f[0] == name and f[1] == account)]
        self.calls.append(("gap", (stream, account), self.now, False))
        self.out += self.ledger.gap(stream, account, self.now)
        self.awaiting[account] = True
        self.marks[account].append(self.now)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        kind=st.sampled_from(["positions", "portfolio"]),
        again=st.booleans(),
    )
    def take_snapshot(self, account: str, kind: str, again: bool) -> None:
        self._tick()
        if kind == "positions":  # a resubscription: the old connection's reports are gone
            self.flight = [f for f in self.flight if not (f[0] == "positions" and f[1] == account)]
            event: Any = snapshot(account, self.units[account], self.cash[account])
            method = "positions"
        else:
            event = portfolio(account, self.units[account], self.cash[account])
            method = "portfolio"
            if not self.awaiting[account]:  # a portfolio is a base only for an account awaiting one
                self._call(method, event)
                return
        self._call(method, event)
        if again:
            self._call(method, event, duplicate=True)
        self.awaiting[account] = False
        self.marks[account].append(self.now)
        self.snapshots[account].append(self.now)

    @invariant()
    def events_are_ordered_and_states_are_consistent(self) -> None:
        for event in self.out[-8:]:
            assert event.time.tzinfo is not None
            if event.status in (M, P):
                assert event.difference == (event.reported or 0) - event.expected
            if event.status is M:
                assert event.expected == event.reported

    # --- the verdicts the rules promise ---

    def _quiet(self, account: str, start: datetime, end: datetime) -> bool:
        """No gap and no snapshot of the account in [start, end)."""
        return not any(start <= mark < end for mark in self.marks[account])

    def expected_verdicts(self) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for account, uid, currency, amount, event, when in self.externals:
            if id(event) not in self.arrival:
                continue  # lost in a gap
            at, awaiting = self.arrival[id(event)]
            # A snapshot taken while its report was in flight holds it already: forgiven.
            if not awaiting and self._quiet(account, when, at + T):
                out.append(("unexplained", account, uid, currency, at + T, amount))
        for account, uid, units, money, event in self.phantoms:
            if id(event) not in self.arrival:
                continue
            at, awaiting = self.arrival[id(event)]
            after_snapshot = any(at - T < s <= at for s in self.snapshots[account])
            if not awaiting and not after_snapshot and self._quiet(account, at, at + T):
                out.append(("missing", account, uid, "", at + T, -units))
                out.append(("missing", account, "", "rub", at + T, money))
        return sorted(out)

    def teardown(self) -> None:
        self._catch_up(self.now + timedelta(days=1))
        while self.flight:
            self._tick()
            self._deliver(self._eligible()[0])
        for account in ACCOUNTS:
            if self.awaiting[account]:
                self._tick()
                self._call("positions", snapshot(account, self.units[account], self.cash[account]))
                self.awaiting[account] = False
                self.marks[account].append(self.now)
                self.snapshots[account].append(self.now)
        self.now += 3 * T
        self._call_advance()
        # Precision and recall of the verdicts, at their exact times.
        assert verdicts(self.out) == self.expected_verdicts()
        # A consistent end: every position matched, at the truth.
        for account, uid, currency in self.ledger.keys():  # noqa: SIM118 - a method, not a dict
            last = self.ledger.current(account, uid, currency)
            assert last is not None and last.status is M, last
            truth = self.cash[account] if currency else Decimal(self.units[account][uid])
            assert last.expected == last.reported == truth, (last, truth)
        assert self.ledger.next_deadline is None
        # Determinism, and idempotence: without the duplicates, the very same events (ids too).
        for skip_duplicates in (False, True):
            ledger = PositionLedger(T)
            again: list[PositionCheck] = []
            for method, argument, now, duplicate in self.calls:
                if duplicate and skip_duplicates:
                    continue
                if method == "gap":
                    again += ledger.gap(argument[0], argument[1], now)
                elif method == "advance":
                    again += ledger.advance(now)
                else:
                    again += getattr(ledger, method)(argument, now)
            assert again == self.out
            assert [e.id for e in again] == [e.id for e in self.out]


TestLedgerMachine = LedgerMachine.TestCase


# --- examples, one or more per rule ----------------------------------------------------------------


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def based(tolerance: Decimal | None = Decimal(0), **kwargs: Any) -> PositionLedger:
    """A ledger with account A1 based on a snapshot (X 1000 units, 1 000 000 rub) at T0 - 1 h."""
    ledger = PositionLedger(T, money_tolerance=tolerance, **kwargs)
    ledger.positions(snapshot("A1", {"X": 1000}, Decimal(1_000_000)), T0 - timedelta(hours=1))
    return ledger


def brief(events: list[PositionCheck]) -> list[tuple[Any, ...]]:
    return [
        (e.instrument_uid or e.currency, e.status, e.cause, e.expected, e.reported, e.difference)
        for e in events
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": timedelta(0)},
        {"timeout": timedelta(seconds=-1)},
        {"timeout": 10},
        {"timeout": T, "money_tolerance": Decimal(-1)},
        {"timeout": T, "money_tolerance": Decimal("NaN")},
        {"timeout": T, "money_tolerance": 0.5},
        {"timeout": T, "finished_orders": 0},
        {"timeout": T, "finished_orders": True},
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PositionLedger(**kwargs)


def test_an_unknown_stream_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        based().gap("MarketDataStream", "A1", T0)
    assert based().gap("OrderStateStream", "A1", T0) == []  # the value works as well as the enum


def test_a_fill_then_its_report_is_pending_then_matched() -> None:
    ledger = based(None)
    first = ledger.order_state(state("o1", "r1", "X", BUY, 2, Decimal(600)), at(1))
    assert brief(first) == [("X", P, CheckCause.FILL, 1200, 1000, -200)]
    second = ledger.positions(report("A1", at(2), {"X": 1200}), at(2))
    assert brief(second) == [("X", M, CheckCause.POSITION, 1200, 1200, 0)]
    assert second[0].time == at(2)
    assert ledger.advance(at(100)) == []


def test_a_report_may_come_before_its_fill() -> None:
    ledger = based(None)
    assert brief(ledger.positions(report("A1", at(1), {"X": 900}), at(1))) == [
        ("X", P, CheckCause.POSITION, 1000, 900, -100)
    ]
    assert brief(ledger.order_state(state("o1", None, "X", SELL, 1, Decimal(300)), at(2))) == [
        ("X", M, CheckCause.FILL, 900, 900, 0)
    ]
    assert ledger.advance(at(100)) == []


def test_cumulative_lots_become_deltas_and_never_go_back() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.order_state(state("o1", "r1", "X", BUY, 3, Decimal(900)), at(2))
    assert ledger.order_state(state("o1", "r1", "X", BUY, 3, Decimal(900)), at(3)) == []  # a repeat
    assert ledger.order_state(state("o1", "r1", "X", BUY, 2, Decimal(600)), at(4)) == []  # an older state
    assert ledger.current("A1", "X").expected == 1300  # type: ignore[union-attr]


def test_the_first_state_under_another_id_is_the_same_order() -> None:
    ledger = based(None)
    ledger.order_state(state("internal-1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.order_state(state("exchange-1", "r1", "X", BUY, 2, Decimal(600)), at(2))
    # A later state with no request id is found under the id it was seen with.
    ledger.order_state(state("exchange-1", None, "X", BUY, 3, Decimal(900)), at(3))
    assert ledger.current("A1", "X").expected == 1300  # type: ignore[union-attr]


def test_cancels_and_unspecified_directions_change_nothing() -> None:
    ledger = based(None)
    cancelled = ST.EXECUTION_REPORT_STATUS_CANCELLED
    assert ledger.order_state(state("o1", "r1", "X", BUY, 0, Decimal(0), cancelled), at(1)) == []
    unspecified = OrderDirection.ORDER_DIRECTION_UNSPECIFIED
    assert ledger.order_state(state("o2", "r2", "X", unspecified, 1, Decimal(300)), at(1)) == []


def test_a_fill_never_reflected_is_missing_once_at_the_timeout() -> None:
    ledger = based()
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    assert ledger.next_deadline == at(1) + T
    assert ledger.advance(at(1) + T - MS) == []
    out = ledger.advance(at(100))
    assert brief(out) == [  # positions due at one instant go in key order: money ("") first
        ("rub", X, CheckCause.TIMEOUT, 999_700, 1_000_000, 300),
        ("rub", M, CheckCause.REBASE, 1_000_000, 1_000_000, 0),
        ("X", X, CheckCause.TIMEOUT, 1100, 1000, -100),
        ("X", M, CheckCause.REBASE, 1000, 1000, 0),
    ]
    assert {e.time for e in out} == {at(1) + T}
    assert ledger.advance(at(1000)) == [] and ledger.next_deadline is None


def test_a_change_no_fill_explains_is_unexplained_once_then_accepted() -> None:
    ledger = based()
    ledger.positions(report("A1", at(1), cash=Decimal("1000012.34")), at(1))
    out = ledger.advance(at(20))
    assert brief(out) == [
        ("rub", U, CheckCause.TIMEOUT, 1_000_000, Decimal("1000012.34"), Decimal("12.34")),
        ("rub", M, CheckCause.REBASE, Decimal("1000012.34"), Decimal("1000012.34"), 0),
    ]
    assert ledger.positions(report("A1", at(21), cash=Decimal("1000012.34")), at(21)) == []
    assert ledger.advance(at(100)) == []


def test_two_changes_that_cancel_out_are_both_unexplained() -> None:
    ledger = based(None)
    ledger.positions(report("A1", at(1), {"X": 1003}), at(1))
    assert brief(ledger.positions(report("A1", at(2), {"X": 1000}), at(2))) == [
        ("X", P, CheckCause.POSITION, 1000, 1000, 0)
    ]
    assert [e.difference for e in ledger.advance(at(30)) if e.status is U] == [3, -3]


def test_one_report_of_two_fills_matches_them() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.order_state(state("o2", "r2", "X", BUY, 2, Decimal(600)), at(2))
    assert brief(ledger.positions(report("A1", at(3), {"X": 1300}), at(3)))[0][1] is M
    assert ledger.advance(at(100)) == []


def test_a_snapshot_rebases_without_alarms() -> None:
    ledger = based()
    ledger.positions(report("A1", at(1), {"X": 1005}), at(1))  # pending, unexplained so far
    out = ledger.positions(snapshot("A1", {"Y": 50}, Decimal(999)), at(2))
    assert brief(out) == [
        ("X", M, CheckCause.SNAPSHOT, 0, 0, 0),  # not listed: 0
        ("rub", M, CheckCause.SNAPSHOT, 999, 999, 0),
        ("Y", M, CheckCause.SNAPSHOT, 50, 50, 0),
    ]
    assert ledger.advance(at(100)) == []


def test_a_fill_pending_at_a_snapshot_is_written_off_silently() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.positions(snapshot("A1", {"X": 1100}, Decimal(0)), at(2))  # it holds the fill, or not
    out = ledger.advance(at(100))
    assert brief(out) == [("X", M, CheckCause.REBASE, 1100, 1100, 0)]
    assert out[0].time == at(1) + T


def test_a_fill_the_snapshot_holds_does_not_match_a_later_report_by_coincidence() -> None:
    """+200 arrives, a snapshot holds it (its report is gone), then -100 and -200 are sold: the report
    of -100 alone must match the -100, not all three fills (whose total is -100 too)."""
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 2, Decimal(600)), at(1))
    ledger.positions(snapshot("A1", {"X": 1200}, Decimal(0)), at(2))  # holds o1's fill
    ledger.order_state(state("o2", "r2", "X", SELL, 1, Decimal(300)), at(3))
    ledger.positions(report("A1", at(3), {"X": 1100}), at(4))
    ledger.order_state(state("o3", "r3", "X", SELL, 2, Decimal(600)), at(5))
    ledger.positions(report("A1", at(5), {"X": 900}), at(6))
    out = ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 900, 900)


def test_a_report_that_may_show_a_held_fill_or_a_later_one_raises_no_missing() -> None:
    """o1's +200 arrives after a snapshot that holds it; o2's +200 long after; one report of +200.
    Matched with o1, o2 may be the one it showed: o2 is not judged missing."""
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1200}, Decimal(0)), at(0))  # holds o1's fill
    ledger.order_state(state("o1", "r1", "X", BUY, 2, Decimal(600)), at(2))  # uncertain
    ledger.order_state(state("o2", "r2", "X", BUY, 2, Decimal(600)), at(11))  # certain
    ledger.positions(report("A1", at(11), {"X": 1400}), at(11.5))
    out = ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1400, 1400)


def test_a_report_ahead_of_its_fill_taken_by_a_held_fill_raises_no_missing() -> None:
    """The snapshot holds o1's +100; o1's state comes after it; the report of o2's +100 comes before
    o2's state and matches o1. o2, when it comes, may be the fill that report showed: no MISSING."""
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1100}, Decimal(0)), at(0))
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))  # uncertain
    ledger.positions(report("A1", at(7), {"X": 1200}), at(7))
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300)), at(11))  # certain, of that total
    out = ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1200, 1200)


def test_a_fill_pending_at_a_snapshot_is_written_off_not_matched_further_on() -> None:
    """o1's +200 is pending behind a transfer when a snapshot holds it. At its deadline it must not
    take the +200 of o3 by passing over o2's +100 (which then would be unexplained)."""
    ledger = based(None)
    ledger.positions(report("A1", at(0.5), {"X": 1005}), at(0.5))  # a transfer in: a stray
    ledger.order_state(state("o1", "r1", "X", BUY, 2, Decimal(600)), at(1))
    ledger.positions(report("A1", at(1.5), {"X": 1205}), at(1.5))
    ledger.positions(snapshot("A1", {"X": 1205}, Decimal(0)), at(2))  # holds o1
    ledger.positions(report("A1", at(3), {"X": 1305}), at(3))  # o2's, ahead of its state
    ledger.positions(report("A1", at(4), {"X": 1505}), at(4))  # o3's
    out = ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300)), at(11.5))
    out += ledger.order_state(state("o3", "r3", "X", BUY, 2, Decimal(600)), at(12))
    out += ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1505, 1505)


def test_a_due_fill_does_not_take_a_bundle_of_changes_that_have_fills_of_their_own() -> None:
    """A's +200 (held by the snapshot) is due; B's and C's +100 changes sum to it, but each has its
    fill: A is written off, the transfer alone is unexplained."""
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1200}, Decimal(0)), at(0))  # holds A
    ledger.order_state(state("a", "ra", "X", BUY, 2, Decimal(600)), at(1))
    ledger.positions(report("A1", at(1.5), {"X": 1205}), at(1.5))  # a transfer in: a stray
    ledger.order_state(state("b", "rb", "X", BUY, 1, Decimal(300)), at(2))
    ledger.positions(report("A1", at(2.5), {"X": 1305}), at(2.5))
    ledger.order_state(state("c", "rc", "X", BUY, 1, Decimal(300)), at(10.2))
    ledger.positions(report("A1", at(10.5), {"X": 1405}), at(10.5))
    out = ledger.advance(at(100))
    assert [(e.status, e.time, e.difference) for e in out if e.status in (U, X)] == [(U, at(11.5), 5)]
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1405, 1405)


def test_a_match_at_a_deadline_passes_over_any_number_of_uncertain_fills() -> None:
    """Nine fills the positions stream never shows (soon after a snapshot: uncertain) stand before
    the fill of a change that came first: the change is matched, nothing is judged."""
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1000}, Decimal(0)), at(0))
    ledger.positions(report("A1", at(0.5), {"X": 1300}), at(0.5))
    for n in range(9):
        ledger.order_state(state(f"p{n}", f"rp{n}", "X", BUY, 17, Decimal(5100)), at(1 + n / 10))
    ledger.order_state(state("o", "ro", "X", BUY, 3, Decimal(900)), at(2))
    out = ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1300, 1300)


def test_a_run_of_fills_may_start_after_many_uncertain_ones() -> None:
    """Nine fills a snapshot holds arrive after it, then a sale and its report: the report matches
    the sale alone, not the sale with held fills around it."""
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1900}, Decimal(0)), at(0))  # holds the nine
    for n in range(9):
        ledger.order_state(state(f"b{n}", f"rb{n}", "X", BUY, 1, Decimal(300)), at(1 + n / 100))
    ledger.order_state(state("s1", "rs1", "X", SELL, 1, Decimal(300)), at(2))
    ledger.positions(report("A1", at(2), {"X": 1800}), at(2.1))
    ledger.order_state(state("s2", "rs2", "X", SELL, 1, Decimal(300)), at(2.2))
    ledger.positions(report("A1", at(2.2), {"X": 1700}), at(2.3))
    out = ledger.advance(at(100))
    assert [e.status for e in out if e.status in (U, X)] == []
    last = ledger.current("A1", "X")
    assert last is not None and (last.status, last.expected, last.reported) == (M, 1700, 1700)


def test_a_fill_soon_after_a_snapshot_is_never_missing() -> None:
    ledger = based(None)
    ledger.positions(snapshot("A1", {"X": 1100}, Decimal(0)), at(1))
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1) + T - MS)  # counted already?
    assert [e.status for e in ledger.advance(at(100))] == [M]
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300)), at(200))  # long after: judged
    assert [e.status for e in ledger.advance(at(300))] == [X, M]


def test_nothing_is_judged_before_the_first_snapshot_or_after_a_gap() -> None:
    ledger = PositionLedger(T, money_tolerance=None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    assert ledger.advance(at(100)) == [] and ledger.next_deadline is None
    ledger.positions(snapshot("A1", {"X": 100}, Decimal(0)), at(101))
    ledger.gap(Feed.POSITIONS, "A1", at(102))
    ledger.positions(report("A1", at(103), {"X": 107}), at(103))
    assert ledger.advance(at(200)) == []
    out = ledger.positions(snapshot("A1", {"X": 107}, Decimal(0)), at(201))
    assert brief(out) == [("X", M, CheckCause.SNAPSHOT, 107, 107, 0)]
    assert ledger.advance(at(300)) == []


def test_after_an_order_gap_the_jump_of_a_known_order_is_uncertain() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(100))
    ledger.positions(report("A1", at(100), {"X": 1100}), at(100))
    ledger.gap(Feed.ORDERS, "A1", at(101))  # a fill of 1 lot is lost with the gap ...
    ledger.positions(report("A1", at(102), {"X": 1200}), at(102))
    ledger.positions(snapshot("A1", {"X": 1200}, Decimal(0)), at(103))
    ledger.order_state(state("o1", "r1", "X", BUY, 3, Decimal(900)), at(200))  # ... and 1 more now
    ledger.positions(report("A1", at(200), {"X": 1300}), at(200))  # the new one: part of the jump
    out = ledger.advance(at(300))
    assert brief(out) == [("X", M, CheckCause.REBASE, 1300, 1300, 0)]  # the rest written off


def test_money_within_the_tolerance_matches() -> None:
    ledger = based(Decimal("0.5"))
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    out = ledger.positions(report("A1", at(2), {"X": 1100}, Decimal("999699.70")), at(2))  # 0.30 commission
    assert [(e.status, e.expected, e.reported) for e in out][-1] == (
        M,
        Decimal("999699.70"),
        Decimal("999699.70"),
    )
    ledger.positions(report("A1", at(3), cash=Decimal("999699.50")), at(3))  # a 0.20 fee: within it
    assert ledger.current("A1", currency="rub").status is M  # type: ignore[union-attr]
    assert ledger.advance(at(100)) == []


def test_money_left_out() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.positions(report("A1", at(2), {"X": 1100}, Decimal(5)), at(2))
    assert all(not e.currency for e in ledger.advance(at(100)))
    assert ledger.current("A1", currency="rub") is None


def test_units_from_trades_without_a_lot_size_and_mismatches_counted() -> None:
    ledger = based(None)
    trade = OrderTrade(price=Decimal(3), quantity=70, trade_id="t1")
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(210), lot_size=0, trades=(trade,)), at(1))
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(210), lot_size=0, trades=(trade,)), at(2))
    assert ledger.current("A1", "X").expected == 1070  # type: ignore[union-attr]
    odd = OrderTrade(price=Decimal(3), quantity=7, trade_id="t2")
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(21), trades=(odd,)), at(3))
    assert ledger.unit_mismatches == 1 and ledger.current("A1", "X").expected == 1170  # type: ignore[union-attr]


def test_reports_apply_in_arrival_order_and_repeats_are_ignored() -> None:
    ledger = based(None)
    ledger.positions(report("A1", at(2), {"X": 1200}), at(2))
    # Dated before it yet new: applied, the stream's order holds (a broker's dates may come from two
    # clocks: the simulator dates an order placed between two market steps after the next fills).
    assert brief(ledger.positions(report("A1", at(1), {"X": 1100}), at(3))) == [
        ("X", P, CheckCause.POSITION, 1000, 1100, 100)
    ]
    assert ledger.positions(report("A1", at(2), {"X": 1200}), at(3)) == []  # a repeat
    assert ledger.positions(report("A1", at(1), {"X": 1100}), at(3)) == []  # a repeat
    for k in range(20):  # 16 are remembered: a report dated before all of them is a repeat forgotten
        ledger.positions(report("A1", at(10 + k), {"X": 1100 + k}), at(4))
    assert ledger.positions(report("A1", at(9), {"X": 7}), at(5)) == []
    assert ledger.current("A1", "X").reported == 1119  # type: ignore[union-attr]


def test_a_portfolio_is_a_base_only_while_awaiting_one() -> None:
    ledger = based()
    assert ledger.portfolio(portfolio("A1", {"X": 5}, Decimal(5)), at(1)) == []
    ledger.gap(Feed.POSITIONS, "A1", at(2))
    out = ledger.portfolio(portfolio("A1", {"X": 5}, Decimal(5)), at(3))
    assert brief(out) == [("X", M, CheckCause.SNAPSHOT, 5, 5, 0), ("rub", M, CheckCause.SNAPSHOT, 5, 5, 0)]
    assert ledger.positions(report("A1", at(2), {"X": 7}), at(4)) == []  # dated before it: held by it


def test_finished_orders_are_forgotten_beyond_the_bound() -> None:
    ledger = based(None, finished_orders=1)
    done = ST.EXECUTION_REPORT_STATUS_FILL
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300), done), at(1))
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300), done), at(2))
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300), done), at(3))  # remembered: nothing
    assert ledger.current("A1", "X").expected == 1200  # type: ignore[union-attr]
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300), done), at(4))  # forgotten: counted
    assert ledger.current("A1", "X").expected == 1300  # type: ignore[union-attr]


def test_ids_are_deterministic() -> None:
    make = lambda expected: PositionCheck(  # noqa: E731
        account_id="A1", instrument_uid="X", time=T0, expected=expected, reported=Decimal(1),
        difference=Decimal(0), status=M, cause=CheckCause.FILL,
    )  # fmt: skip
    assert make(Decimal("1.0")).id == make(Decimal(1)).id != make(Decimal(2)).id
    assert len(make(Decimal(1)).id) == 32


def test_a_repeated_report_of_an_instant_with_two_operations_is_ignored() -> None:
    ledger = based(None)
    ledger.order_state(state("o1", "r1", "X", BUY, 1, Decimal(300)), at(1))
    ledger.order_state(state("o2", "r2", "X", BUY, 1, Decimal(300)), at(1))
    ledger.positions(report("A1", at(1), {"X": 1100}), at(1))  # two fills in one step: one date
    ledger.positions(report("A1", at(1), {"X": 1200}), at(1))
    assert ledger.positions(report("A1", at(1), {"X": 1100}), at(2)) == []  # the first again
    assert ledger.current("A1", "X").status is M and ledger.advance(at(100)) == []  # type: ignore[union-attr]


# --- a broker that bundles and splits its reports, streams that overtake each other ----------------

FLOW_TIMEOUT = timedelta(milliseconds=60)  # well over a fill's way to its report: 10 + 15 ms, and queueing
MERGE = timedelta(milliseconds=10)  # the longest a fill or a held-back amount waits for a report
DELAY_US = 15_000  # the longest an event is in flight, in microseconds
FLOW_PRICES = [Decimal("2.5"), Decimal(3), Decimal(7)]  # rub per unit: fills are multiples of 250 rub
HELD = [Decimal("0.5"), Decimal("1.25")]  # what a report may first overcharge a buy: no sum of fills


@given(st.data())
def test_fills_reported_in_any_bundles_and_order_all_match(data: st.DataObject) -> None:
    """Continuous traffic on two accounts, two securities and their money. The broker reports when
    it likes: one report of several fills (an account's positions as they stand), a buy's money
    first overcharged and corrected by a later report, money-only reports dated ahead of the next
    ones (an order placed between market steps, as the simulator dates it), a report delivered
    twice. Each stream keeps its order; the two overtake each other by up to 15 ms, so reports
    come before their fills and other positions' events interleave, and with fills every few ms
    the totals rarely agree. Everything is reported within the timeout: nothing may be judged, and
    everything ends matched at the truth."""
    units = {a: {"X": 1000, "Y": 1000} for a in ACCOUNTS}
    cash = dict.fromkeys(ACCOUNTS, Decimal(1_000_000))
    held = dict.fromkeys(ACCOUNTS, Decimal(0))  # overcharged, not yet corrected
    held_since: dict[str, datetime | None] = dict.fromkeys(ACCOUNTS)
    touched: dict[str, set[str]] = {a: set() for a in ACCOUNTS}  # securities changed since reported
    unreported_since: dict[str, datetime | None] = dict.fromkeys(ACCOUNTS)
    orders: dict[tuple[str, str, OrderDirection], _Order] = {}
    streams: dict[str, list[tuple[datetime, Any]]] = {"orders": [], "positions": []}
    now = T0

    def flush(account: str, when: datetime, release: bool) -> None:
        when += len(streams["positions"]) * timedelta(microseconds=1)  # two messages differ (rule 4)
        if release:
            held[account] = Decimal(0)
            held_since[account] = None
        shown = {uid: units[account][uid] for uid in sorted(touched[account])}
        event = report(account, when, shown, cash[account] - held[account])
        streams["positions"].append((when, event))
        if data.draw(st.integers(0, 9)) == 0:  # delivered twice
            streams["positions"].append((when, event))
        touched[account].clear()
        unreported_since[account] = None

    for _ in range(data.draw(st.integers(1, 80), label="fills")):
        now += data.draw(st.integers(0, 3)) * MS
        account = data.draw(st.sampled_from(ACCOUNTS))
        uid = data.draw(st.sampled_from(sorted(PRICES)))
        direction = data.draw(st.sampled_from([BUY, SELL]))
        lots = data.draw(st.integers(1, 3))
        price = data.draw(st.sampled_from(FLOW_PRICES))
        order = orders.get((account, uid, direction))
        if order is None or data.draw(st.booleans()):  # a new order, or the next fill of the last one
            order = orders[(account, uid, direction)] = _Order(account, uid, direction, None, False)
            order.request_id = f"r{len(streams['orders'])}"
        sign = 1 if direction is BUY else -1
        order.lots += lots
        order.money += price * lots * LOT
        units[account][uid] += sign * lots * LOT
        cash[account] -= sign * price * lots * LOT
        name = f"o-{order.request_id}"
        event = state(name, order.request_id, uid, direction, order.lots, order.money, account=account)
        streams["orders"].append((now, event))
        touched[account].add(uid)
        if unreported_since[account] is None:
            unreported_since[account] = now
        if direction is BUY and held[account] == 0 and data.draw(st.booleans()):
            held[account] = data.draw(st.sampled_from(HELD))
            held_since[account] = now
        for name in ACCOUNTS:  # the broker's reports: when it likes, but within MERGE
            since, overcharged = unreported_since[name], held_since[name]
            due = (since is not None and now - since >= MERGE) or (
                overcharged is not None and now - overcharged >= MERGE
            )
            if due or ((since is not None or overcharged is not None) and data.draw(st.booleans())):
                flush(name, now, release=due or data.draw(st.booleans()))
        if data.draw(st.integers(0, 9)) == 0:  # an order placed: money only, dated ahead
            ahead = now + data.draw(st.integers(1, 40)) * MS + timedelta(microseconds=1)
            streams["positions"].append((now, report(account, ahead, None, cash[account] - held[account])))
    for name in ACCOUNTS:
        flush(name, now, release=True)

    # Delivery: each stream in its order, each event up to DELAY_US late; the streams interleave.
    arrivals: list[tuple[datetime, int, int, str, Any]] = []
    for rank, (name, events) in enumerate(sorted(streams.items())):
        last = T0
        for seq, (sent, event) in enumerate(events):
            last = max(last, sent + timedelta(microseconds=data.draw(st.integers(0, DELAY_US))))
            arrivals.append((last, rank, seq, name, event))
    ledger = PositionLedger(FLOW_TIMEOUT)
    start = {"X": 1000, "Y": 1000}
    for account in ACCOUNTS:
        ledger.positions(snapshot(account, start, Decimal(1_000_000)), T0 - timedelta(hours=1))
    out: list[PositionCheck] = []
    for when, _, _, name, event in sorted(arrivals, key=lambda a: a[:3]):
        out += ledger.order_state(event, when) if name == "orders" else ledger.positions(event, when)
    out += ledger.advance(now + timedelta(hours=1))

    assert [e for e in out if e.status not in (M, P)] == []
    for account in ACCOUNTS:
        for uid, truth in [("X", units[account]["X"]), ("Y", units[account]["Y"]), ("", cash[account])]:
            last = ledger.current(account, uid, "rub" if not uid else "")
            assert last is not None and last.status is M, last
            assert last.expected == last.reported == truth, (last, truth)
    assert ledger.next_deadline is None
