"""fold.health against oracles written here, with hypothesis: problems from integer ticks, and the
state of every instrument recomputed from the whole history after each step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.derived import BookHealth, BookProblem
from rxinvest.errors import ConfigurationError
from rxinvest.fold.bars import NOT_TRADING
from rxinvest.fold.health import AUCTION, NORMAL_TRADING, HealthFold, expected, problems_of
from rxinvest.model import Order, OrderBook, SecurityTradingStatus, TradingStatus

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TICK = Decimal("0.01")
STALE_AFTER = timedelta(seconds=10)
S = SecurityTradingStatus
P = BookProblem
UIDS = ["A", "B", "C"]

# The oracle's reading of the spec, written out by name (not taken from the module).
ORACLE_LIVE = {None, S.SECURITY_TRADING_STATUS_UNSPECIFIED, S.SECURITY_TRADING_STATUS_NORMAL_TRADING,
               S.SECURITY_TRADING_STATUS_DEALER_NORMAL_TRADING}  # fmt: skip
ORACLE_AUCTION = {
    S.SECURITY_TRADING_STATUS_OPENING_PERIOD,
    S.SECURITY_TRADING_STATUS_CLOSING_PERIOD,
    S.SECURITY_TRADING_STATUS_CLOSING_AUCTION,
    S.SECURITY_TRADING_STATUS_DARK_POOL_AUCTION,
    S.SECURITY_TRADING_STATUS_DISCRETE_AUCTION,
    S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD,
    S.SECURITY_TRADING_STATUS_TRADING_AT_CLOSING_AUCTION_PRICE,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_book(
    uid: str,
    bids: list[int],
    asks: list[int],
    *,
    consistent: bool = True,
    up: int | None = None,
    down: int | None = None,
    time: datetime | None = T0,
) -> OrderBook:
    """A book with prices given in ticks."""
    return OrderBook(
        instrument_uid=uid,
        depth=max(len(bids), len(asks), 1),
        is_consistent=consistent,
        bids=tuple(Order(price=tick * TICK, quantity=1 + i) for i, tick in enumerate(bids)),
        asks=tuple(Order(price=tick * TICK, quantity=2 + i) for i, tick in enumerate(asks)),
        time=time,
        limit_up=None if up is None else up * TICK,
        limit_down=None if down is None else down * TICK,
    )


def status(uid: str, value: SecurityTradingStatus, time: datetime | None = None) -> TradingStatus:
    return TradingStatus(instrument_uid=uid, trading_status=value, time=time)


@dataclass(frozen=True)
class Spec:
    """A book as the oracle sees it: integer ticks."""

    bids: tuple[int, ...]
    asks: tuple[int, ...]
    consistent: bool
    up: int | None
    down: int | None

    def book(self, uid: str, time: datetime) -> OrderBook:
        return make_book(uid, list(self.bids), list(self.asks), consistent=self.consistent, up=self.up,
                         down=self.down, time=time)  # fmt: skip


@st.composite
def specs(draw: st.DrawFn, max_depth: int = 6) -> Spec:
    """Books on a tick grid around 100 ticks: sides sorted as the API sends them, either side empty,
    often crossed or locked, limits absent or anywhere near."""
    bids = sorted(draw(st.sets(st.integers(90, 110), max_size=max_depth)), reverse=True)
    asks = sorted(draw(st.sets(st.integers(90, 110), max_size=max_depth)))
    limit = st.none() | st.integers(85, 115)
    return Spec(tuple(bids), tuple(asks), draw(st.booleans()), draw(limit), draw(limit))


def oracle_problems(spec: Spec) -> frozenset[BookProblem]:
    out = set()
    if spec.bids and spec.asks:
        best_bid, best_ask = max(spec.bids), min(spec.asks)
        if best_bid > best_ask:
            out.add(P.CROSSED)
        if best_bid == best_ask:
            out.add(P.LOCKED)
    if not spec.consistent:
        out.add(P.INCONSISTENT)
    levels = spec.bids + spec.asks
    if any(
        (spec.up is not None and p > spec.up) or (spec.down is not None and p < spec.down) for p in levels
    ):
        out.add(P.OUTSIDE_LIMITS)
    return frozenset(out)


def oracle_expected(problems: frozenset[BookProblem], last: SecurityTradingStatus | None) -> bool:
    return len(problems) > 0 and all(p in (P.CROSSED, P.LOCKED) for p in problems) and last in ORACLE_AUCTION


# --- rule 1 ---------------------------------------------------------------------------------------


@given(specs())
def test_problems_of_matches_the_tick_oracle(spec: Spec) -> None:
    problems = problems_of(spec.book("A", T0))
    assert problems == oracle_problems(spec)
    # crossed iff bid > ask, locked iff bid == ask, never both; both need two sides
    has_two = bool(spec.bids) and bool(spec.asks)
    assert (P.CROSSED in problems) == (has_two and spec.bids[0] > spec.asks[0])
    assert (P.LOCKED in problems) == (has_two and spec.bids[0] == spec.asks[0])


@given(st.frozensets(st.sampled_from(list(P))), st.sampled_from([None, *S]))
def test_expected_matches_the_oracle(
    problems: frozenset[BookProblem], last: SecurityTradingStatus | None
) -> None:
    assert expected(problems, last) == oracle_expected(problems, last)


def test_status_sets_partition_sensibly() -> None:
    assert frozenset(ORACLE_AUCTION) == AUCTION
    assert {
        S.SECURITY_TRADING_STATUS_NORMAL_TRADING,
        S.SECURITY_TRADING_STATUS_DEALER_NORMAL_TRADING,
    } == NORMAL_TRADING
    assert not AUCTION & NOT_TRADING
    assert not AUCTION & NORMAL_TRADING
    assert not NORMAL_TRADING & NOT_TRADING


@pytest.mark.parametrize(
    ("bids", "asks", "up", "down", "want"),
    [
        ([100, 99], [101, 102], 102, 99, set()),  # the outer ends at the limits: inside
        ([100, 99], [101, 103], 102, None, {P.OUTSIDE_LIMITS}),  # worst ask above up
        ([100, 98], [101, 102], None, 99, {P.OUTSIDE_LIMITS}),  # worst bid below down
        ([105, 99], [101, 102], 103, 90, {P.CROSSED, P.OUTSIDE_LIMITS}),  # only the best bid above up
        ([100, 99], [96, 101], 110, 98, {P.CROSSED, P.OUTSIDE_LIMITS}),  # only the best ask below down
        ([101, 99], [101, 102], 102, 99, {P.LOCKED}),
    ],
)
def test_limits_by_hand(bids: list[int], asks: list[int], up: int | None, down: int | None,
                        want: set[BookProblem]) -> None:  # fmt: skip
    """Not crossed, the outer ends decide; crossed, the inner ends may lie outside alone."""
    assert problems_of(make_book("A", bids, asks, up=up, down=down)) == want
    assert want == oracle_problems(Spec(tuple(bids), tuple(asks), True, up, down))


def test_one_sided_and_unpriced_levels_against_limits() -> None:
    assert problems_of(make_book("A", [100, 95], [], up=110, down=96)) == {P.OUTSIDE_LIMITS}
    assert problems_of(make_book("A", [], [100, 111], up=110)) == {P.OUTSIDE_LIMITS}
    assert problems_of(make_book("A", [], [100, 110], up=110, down=100)) == frozenset()
    unpriced = OrderBook(instrument_uid="A", is_consistent=True, bids=(Order(price=None, quantity=1),
                         Order(price=Decimal(2), quantity=1)), asks=(Order(price=Decimal(1), quantity=1),),
                         limit_down=Decimal("1.5"))  # fmt: skip
    assert problems_of(unpriced) == {P.OUTSIDE_LIMITS}  # no crossed check without a best bid price


def test_unpriced_ends_with_both_limits() -> None:
    """An end without a price, both limits given (the case of a book otherwise healthy): it is not
    compared, and the priced levels still are."""

    def book(bids: list[Decimal | None], asks: list[Decimal | None], up: str, down: str) -> OrderBook:
        return OrderBook(
            instrument_uid="A",
            is_consistent=True,
            bids=tuple(Order(price=p, quantity=1) for p in bids),
            asks=tuple(Order(price=p, quantity=1) for p in asks),
            limit_up=Decimal(up),
            limit_down=Decimal(down),
        )

    assert problems_of(book([None, Decimal(2)], [Decimal(1)], "3", "1.5")) == {P.OUTSIDE_LIMITS}
    assert problems_of(book([None, Decimal(2)], [Decimal(3)], "3", "1.5")) == frozenset()
    assert problems_of(book([Decimal(2)], [Decimal(3), None], "4", "1")) == frozenset()
    assert problems_of(book([Decimal(2), None], [Decimal(3)], "4", "1")) == frozenset()
    assert problems_of(book([Decimal(3), None], [Decimal(2), Decimal(5)], "4", "1")) == {
        P.CROSSED,
        P.OUTSIDE_LIMITS,
    }


# --- rules 2-8, by example ------------------------------------------------------------------------


def test_no_book_after_subscribe_then_healthy() -> None:
    fold = HealthFold(STALE_AFTER)
    [event] = fold.subscribed("A", at(0))
    assert event == BookHealth(instrument_uid="A", time=at(0), problems=frozenset({P.NO_BOOK}))
    assert not fold.healthy("A")
    assert fold.subscribed("A", at(1)) == []  # nothing changed
    [event] = fold.book(make_book("A", [99], [100], time=at(0.5)), at(2))
    assert event.healthy
    assert event.time == at(0.5)  # the snapshot's time
    assert fold.healthy("A")
    assert fold.current("A") == event
    assert fold.subscribed("A", at(3)) == []  # a repeated subscription keeps the state
    assert fold.book(make_book("A", [98], [100]), at(3)) == []  # healthy again: no event


def test_first_book_without_subscribe_is_reported_even_healthy() -> None:
    fold = HealthFold(STALE_AFTER)
    assert fold.current("A") is None
    assert not fold.healthy("A")
    [event] = fold.book(make_book("A", [99], [100]), at(0))
    assert event.problems == frozenset()
    assert fold.instruments() == ["A"]


def test_reset_after_gap_until_the_next_snapshot() -> None:
    fold = HealthFold(STALE_AFTER)
    fold.book(make_book("A", [101], [100], consistent=False), at(0))
    fold.book(make_book("B", [99], [100]), at(0))
    fold.status(status("C", S.SECURITY_TRADING_STATUS_NORMAL_TRADING), at(0))  # no state: untouched
    events = fold.gap("", at(1))
    assert [(e.instrument_uid, e.problems, e.time) for e in events] == [
        ("A", frozenset({P.RESET}), at(1)),
        ("B", frozenset({P.RESET}), at(1)),
    ]
    assert fold.current("C") is None
    assert fold.gap("A", at(2)) == []  # already RESET
    [event] = fold.book(make_book("A", [99], [100]), at(3))
    assert event.healthy
    [event] = fold.gap("D", at(4))  # an explicit instrument gets a state
    assert event.problems == {P.RESET}


def test_stale_exactly_at_stale_after_not_before() -> None:
    fold = HealthFold(STALE_AFTER)
    assert fold.next_deadline is None
    fold.book(make_book("A", [99], [100]), at(0))
    fold.book(make_book("A", [99], [100]), at(5))  # the hot path moves the deadline
    assert fold.next_deadline == at(15)
    assert fold.advance(at(14.999)) == []
    [event] = fold.advance(at(15))
    assert event.problems == {P.STALE}
    assert event.time == at(15)
    assert fold.next_deadline is None
    assert fold.advance(at(100)) == []  # once
    [event] = fold.book(make_book("A", [99], [100]), at(101))  # a snapshot clears it
    assert event.healthy
    assert fold.next_deadline == at(111)


def test_stale_joins_other_problems_and_no_book_can_be_stale() -> None:
    fold = HealthFold(STALE_AFTER)
    fold.subscribed("A", at(0))
    [event] = fold.advance(at(10))
    assert event.problems == {P.NO_BOOK, P.STALE}
    fold.book(make_book("B", [100], [100]), at(0))
    [event] = fold.advance(at(20))
    assert event.problems == {P.LOCKED, P.STALE}
    assert not event.expected


def test_never_stale_while_not_trading_and_clock_restarts_on_resume() -> None:
    fold = HealthFold(STALE_AFTER)
    fold.book(make_book("A", [99], [100]), at(0))
    assert fold.status(status("A", S.SECURITY_TRADING_STATUS_BREAK_IN_TRADING), at(1)) == []
    assert fold.next_deadline is None
    assert fold.advance(at(1000)) == []
    assert fold.status(status("A", S.SECURITY_TRADING_STATUS_NORMAL_TRADING), at(1000)) == []
    assert fold.next_deadline == at(1010)
    assert fold.advance(at(1009)) == []
    [event] = fold.advance(at(1010))
    assert event.problems == {P.STALE}
    assert event.trading_status is S.SECURITY_TRADING_STATUS_NORMAL_TRADING
    # stopping trading clears STALE at once
    [event] = fold.status(status("A", S.SECURITY_TRADING_STATUS_CLOSING_AUCTION), at(1020))
    assert event.healthy
    assert event.time == at(1020)
    assert fold.next_deadline is None


def test_expected_during_auctions() -> None:
    fold = HealthFold(STALE_AFTER)
    fold.status(status("A", S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD), at(0))
    [event] = fold.book(make_book("A", [101], [100]), at(1))
    assert event.problems == {P.CROSSED}
    assert event.expected
    assert event.trading_status is S.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD
    [event] = fold.book(make_book("A", [100], [100]), at(2))
    assert (event.problems, event.expected) == (frozenset({P.LOCKED}), True)
    [event] = fold.status(status("A", S.SECURITY_TRADING_STATUS_NORMAL_TRADING), at(3))
    assert (event.problems, event.expected) == (
        frozenset({P.LOCKED}),
        False,
    )  # the same problems, now a fault
    [event] = fold.status(status("A", S.SECURITY_TRADING_STATUS_CLOSING_AUCTION), at(4))
    assert event.expected
    [event] = fold.book(make_book("A", [101], [100], consistent=False), at(5))
    assert (event.problems, event.expected) == (frozenset({P.CROSSED, P.INCONSISTENT}), False)


def test_one_deadline_per_instrument_however_many_books() -> None:
    fold = HealthFold(STALE_AFTER)
    for i in range(1000):
        for uid in UIDS:
            fold.book(make_book(uid, [99], [100]), at(i * 0.1))
        if i % 100 == 0:
            assert fold.next_deadline == at(i * 0.1 + 10)
    assert len(fold._heap) <= len(UIDS)
    assert len(fold._entries) == len(UIDS)


def test_bad_stale_after() -> None:
    for bad in (timedelta(0), timedelta(seconds=-1), 10):
        with pytest.raises(ConfigurationError):
            HealthFold(bad)  # type: ignore[arg-type]


# --- the whole machine against an oracle over the history -----------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # book, status, gap, subscribed, advance
    uid: str
    time: datetime  # the scheduler's now, never going back
    spec: Spec | None = None
    value: SecurityTradingStatus | None = None
    exchange: datetime | None = None  # a book's or status's own time: out of order across the two


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    """Steps of up to three instruments, with whole seconds between them so that deadlines are hit
    exactly; statuses from every value."""
    steps, now = [], 0
    for _ in range(draw(st.integers(0, 40))):
        now += draw(st.sampled_from([0, 0, 1, 3, 5, 10, 12]))
        kind = draw(
            st.sampled_from(["book", "book", "book", "status", "gap", "subscribed", "advance", "advance"])
        )
        uid = draw(st.sampled_from(UIDS))
        # Books and statuses come on separate subscriptions: either may overtake the other.
        exchange = at(now + draw(st.sampled_from([-4, -1, 0, 0, 0])) - 0.001)
        if kind == "book":
            steps.append(Step(kind, uid, at(now), spec=draw(specs(max_depth=3)), exchange=exchange))
        elif kind == "status":
            steps.append(Step(kind, uid, at(now), value=draw(st.sampled_from(list(S))), exchange=exchange))
        elif kind == "gap":
            steps.append(Step(kind, draw(st.sampled_from(["", *UIDS])), at(now)))
        else:
            steps.append(Step(kind, uid, at(now)))
    return steps


def oracle(
    history: list[Step], uid: str
) -> tuple[tuple[frozenset[BookProblem], bool] | None, datetime | None, SecurityTradingStatus | None]:
    """The state of ``uid`` after ``history`` from the rules alone, looking at the whole history,
    when its stale clock last (re)started, and the status its book is judged under."""

    def has_state(before: int) -> bool:
        return any(s.uid == uid and s.kind in ("book", "subscribed", "gap") for s in history[:before])

    last_status: SecurityTradingStatus | None = None
    statuses: list[Step] = []  # of uid, as received
    base: frozenset[BookProblem] | None = None
    book_time: datetime | None = None  # the exchange time of the book the state is of
    clock: datetime | None = None
    for i, s in enumerate(history):
        if s.kind == "book" and s.uid == uid:
            assert s.spec is not None
            base, clock, book_time = oracle_problems(s.spec), s.time, s.exchange
        elif s.kind == "gap" and (s.uid == uid or (s.uid == "" and has_state(i))):
            base, clock, book_time = frozenset({P.RESET}), s.time, None
        elif s.kind == "subscribed" and s.uid == uid and not has_state(i):
            base, clock, book_time = frozenset({P.NO_BOOK}), s.time, None
        elif s.kind == "status" and s.uid == uid:
            if (last_status in ORACLE_LIVE) != (s.value in ORACLE_LIVE):
                clock = s.time  # a stop clears STALE, a resume restarts the clock
            last_status = s.value
            statuses.append(s)
    if base is None:
        return None, None, None
    assert clock is not None
    # Judged under the status in force at the book's time: the last, or the one before it for a
    # book older than the last.
    judged = last_status
    if (
        statuses
        and book_time is not None
        and statuses[-1].exchange is not None
        and book_time < statuses[-1].exchange
    ):
        judged = statuses[-2].value if len(statuses) > 1 else None
    live = last_status in ORACLE_LIVE
    stale = live and any(s.kind == "advance" and s.time - clock >= STALE_AFTER for s in history)
    problems = frozenset(base | {P.STALE} if stale else base)
    return (problems, oracle_expected(problems, judged)), (clock if live and not stale else None), judged


def oracle_state(history: list[Step], uid: str) -> tuple[frozenset[BookProblem], bool] | None:
    return oracle(history, uid)[0]


def oracle_deadline(history: list[Step]) -> datetime | None:
    """The earliest instant an instrument that trades, has a state and is not stale goes stale."""
    clocks = [clock for uid in UIDS if (clock := oracle(history, uid)[1]) is not None]
    return min(clocks) + STALE_AFTER if clocks else None


def run(fold: HealthFold, step: Step) -> list[BookHealth]:
    if step.kind == "book":
        assert step.spec is not None
        return fold.book(step.spec.book(step.uid, step.exchange), step.time)
    if step.kind == "status":
        assert step.value is not None
        return fold.status(status(step.uid, step.value, step.exchange), step.time)
    if step.kind == "gap":
        return fold.gap(step.uid, step.time)
    if step.kind == "subscribed":
        return fold.subscribed(step.uid, step.time)
    return fold.advance(step.time)


@given(histories())
def test_one_event_per_change_of_the_oracle_state(history: list[Step]) -> None:
    fold = HealthFold(STALE_AFTER)
    before: dict[str, tuple[frozenset[BookProblem], bool] | None] = dict.fromkeys(UIDS)
    last_deadline: datetime | None = None
    for n, step in enumerate(history, 1):
        events = run(fold, step)
        after = {uid: oracle_state(history[:n], uid) for uid in UIDS}
        changed = {uid for uid in UIDS if after[uid] != before[uid]}
        assert sorted(e.instrument_uid for e in events) == sorted(changed)  # exactly one per change
        for event in events:
            assert (event.problems, event.expected) == after[event.instrument_uid]
            assert event.time == (step.exchange if step.kind == "book" else step.time)
            assert event.trading_status == oracle(history[:n], event.instrument_uid)[2]
        for uid in UIDS:
            current = fold.current(uid)
            assert (None if current is None else (current.problems, current.expected)) == after[uid]
            state = after[uid]
            assert fold.healthy(uid) == (state is not None and not state[0])
        deadline = fold.next_deadline
        assert deadline == oracle_deadline(history[:n])
        if step.kind == "book" and not events:  # such a book never moves the deadline earlier
            assert deadline is None or (last_deadline is not None and deadline >= last_deadline)
        before, last_deadline = after, deadline
