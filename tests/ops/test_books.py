"""The book operators with marbles on a TestScheduler (virtual time in seconds): diffs and their
resets, books rebuilt from diffs, health edges and staleness at exactly ``stale_after``, quotes, and
state per subscription. Expected values are written out here, from the books the tests make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxinvest import ops
from rxinvest.derived import (
    BookDiff,
    BookHealth,
    BookProblem,
    ChangeKind,
    Gap,
    GapCause,
    LevelChange,
    Quote,
    Side,
    Subscribed,
)
from rxinvest.errors import BookIntegrityError, ConfigurationError
from rxinvest.model import Order, OrderBook, SecurityTradingStatus, TradingStatus
from rxinvest.testing.marbles import run_marbles

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
S = Subscribed(stream="MarketDataStream", targets=("A",))
P = BookProblem


def book(at: float, bids: list[tuple[int, int]], asks: list[tuple[int, int]], **fields: Any) -> OrderBook:
    """A depth-3 book of instrument A at virtual second ``at``: (price, lots) levels, best first."""
    return OrderBook(
        instrument_uid=fields.pop("uid", "A"),
        depth=fields.pop("depth", 3),
        is_consistent=fields.pop("is_consistent", True),
        bids=tuple(Order(price=Decimal(p), quantity=q) for p, q in bids),
        asks=tuple(Order(price=Decimal(p), quantity=q) for p, q in asks),
        time=EPOCH + timedelta(seconds=at),
        **fields,
    )


def gap(at: float, uid: str = "A") -> Gap:
    moment = EPOCH + timedelta(seconds=at)
    return Gap(
        cause=GapCause.RECONNECT, since=moment - timedelta(seconds=1), until=moment, instrument_uid=uid
    )


def status(at: float, value: SecurityTradingStatus, uid: str = "A") -> TradingStatus:
    return TradingStatus(instrument_uid=uid, trading_status=value, time=EPOCH + timedelta(seconds=at))


def values(messages: list[Any]) -> list[tuple[float, Any]]:
    return [(m.time, m.value.value) for m in messages if m.value.kind == "N"]


def kinds(messages: list[Any]) -> str:
    return "".join(m.value.kind for m in messages)


B1 = book(210, bids=[(99, 5), (98, 3), (97, 1)], asks=[(101, 4), (102, 2), (103, 7)])
B2 = book(220, bids=[(100, 2), (99, 5), (98, 3)], asks=[(101, 6), (102, 2), (103, 7)])  # 100 pushes 97 out


# --- book_diffs and to_books ----------------------------------------------------------------------


def test_diffs_start_from_empty_and_again_after_a_gap() -> None:
    #  books:  S--b1--b2--G--b2'--|      ->   --D(reset)--D--D(reset)--|
    scheduler = TestScheduler()
    again = book(240, bids=[(100, 2), (99, 5), (98, 3)], asks=[(101, 6), (102, 2), (103, 7)])
    source = scheduler.create_hot_observable(
        on_next(205, S), on_next(210, B1), on_next(220, B2), on_next(230, gap(230)), on_next(240, again),
        on_completed(250),
    )  # fmt: skip
    result = scheduler.start(lambda: source.pipe(ops.book_diffs()))
    (t1, d1), (t2, d2), (t3, d3) = values(result.messages)
    assert kinds(result.messages) == "NNNC"
    assert (t1, d1.reset, d1.time) == (210, True, B1.time)
    assert [(c.side, c.price, c.old, c.new, c.kind) for c in d1.changes] == [
        (Side.BID, 99, 0, 5, ChangeKind.ADD), (Side.BID, 98, 0, 3, ChangeKind.ADD),
        (Side.BID, 97, 0, 1, ChangeKind.ADD), (Side.ASK, 101, 0, 4, ChangeKind.ADD),
        (Side.ASK, 102, 0, 2, ChangeKind.ADD), (Side.ASK, 103, 0, 7, ChangeKind.ADD),
    ]  # fmt: skip
    assert (t2, d2.reset) == (220, False)
    assert d2.changes == (
        LevelChange(side=Side.BID, price=Decimal(100), old=0, new=2, kind=ChangeKind.ADD),
        LevelChange(side=Side.BID, price=Decimal(97), old=1, new=0, kind=ChangeKind.OUT_OF_VIEW),
        LevelChange(side=Side.ASK, price=Decimal(101), old=4, new=6, kind=ChangeKind.UPDATE),
    )
    assert (t3, d3.reset, len(d3.changes)) == (240, True, 6)  # the gap: a full diff again


def test_an_unchanged_book_gives_an_empty_diff() -> None:
    scheduler = TestScheduler()
    same = book(215, bids=[(99, 5), (98, 3), (97, 1)], asks=[(101, 4), (102, 2), (103, 7)])
    source = scheduler.create_hot_observable(on_next(205, S), on_next(210, B1), on_next(215, same))
    result = scheduler.start(lambda: source.pipe(ops.book_diffs()))
    (_, first), (_, second) = values(result.messages)
    assert first.reset
    assert second.changes == () and not second.reset and second.time == same.time


def test_a_malformed_book_is_skipped_and_the_next_starts_afresh(caplog: pytest.LogCaptureFixture) -> None:
    unsorted = book(215, bids=[(98, 1), (99, 1)], asks=[(101, 4)])  # bids must be best (highest) first
    got: list[BookDiff] = []
    errors: list[Exception] = []
    reactivex.from_iterable([B1, unsorted, B2]).pipe(ops.book_diffs(markers=False)).subscribe(
        got.append, errors.append
    )
    assert errors == []
    assert [(d.time, d.reset) for d in got] == [(B1.time, True), (B2.time, True)]  # the skip is visible
    assert "malformed book" in caplog.text


def test_books_rebuilt_from_diffs_are_the_books() -> None:
    books = [B1, B2, book(230, bids=[], asks=[(101, 6)]), book(240, bids=[(90, 1)], asks=[(91, 1)], depth=3)]
    got: list[OrderBook] = []
    reactivex.from_iterable(books).pipe(ops.book_diffs(markers=False), ops.to_books()).subscribe(got.append)
    assert got == books


def test_to_books_refuses_a_diff_without_its_book() -> None:
    diffs: list[BookDiff] = []
    reactivex.from_iterable([B1, B2]).pipe(ops.book_diffs(markers=False)).subscribe(diffs.append)
    errors: list[Exception] = []
    reactivex.from_iterable(diffs[1:]).pipe(ops.to_books()).subscribe(on_error=errors.append)
    assert len(errors) == 1 and isinstance(errors[0], BookIntegrityError)


def test_each_subscription_has_its_own_diff_state() -> None:
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(on_next(210, B1), on_next(300, B2))
    pipeline = source.pipe(ops.book_diffs(markers=False))
    first, second = scheduler.create_observer(), scheduler.create_observer()
    scheduler.schedule_absolute(200, lambda *_: pipeline.subscribe(first))
    scheduler.schedule_absolute(250, lambda *_: pipeline.subscribe(second))
    scheduler.start()
    assert [(t, d.reset) for t, d in values(first.messages)] == [(210, True), (300, False)]
    assert [(t, d.reset) for t, d in values(second.messages)] == [(300, True)]  # its first book


def test_book_diffs_want_markers_unless_told() -> None:
    errors: list[Exception] = []
    reactivex.from_iterable([B1]).pipe(ops.book_diffs()).subscribe(on_error=errors.append)
    assert isinstance(errors[0], ConfigurationError)
    with pytest.raises(ConfigurationError):
        ops.book_diffs(markers=1)  # type: ignore[arg-type]


# --- book_health ------------------------------------------------------------------------------------


def health(*events: Any, statuses: list[Any] | None = None, **options: Any) -> list[tuple[float, BookHealth]]:
    options.setdefault("stale_after", timedelta(seconds=10))

    def pipeline(books: Any, status_source: Any = None) -> Any:
        return books.pipe(ops.book_health(trading_statuses=status_source, **options))

    timelines = [events, statuses] if statuses else [events]
    return list(run_marbles(pipeline, *timelines, subscribe_at=200, until=400).values)


def test_health_goes_stale_at_exactly_stale_after_and_recovers_with_a_book() -> None:
    got = health(on_next(205, S), on_next(210, B1), on_next(260, B2))
    assert [(t, e.problems) for t, e in got] == [
        (205, frozenset({P.NO_BOOK})),  # subscribed: no book yet
        (210, frozenset()),  # healthy
        (220, frozenset({P.STALE})),  # 210 + 10 s, by the scheduler's clock: not 219.99, not 221
        (260, frozenset()),
        (270, frozenset({P.STALE})),
    ]
    assert got[1][1].healthy and not got[2][1].healthy


def test_no_book_turns_stale_too() -> None:
    got = health(on_next(205, S))
    assert [(t, e.problems) for t, e in got] == [
        (205, frozenset({P.NO_BOOK})),
        (215, frozenset({P.NO_BOOK, P.STALE})),
    ]


def test_health_is_edge_triggered_and_a_gap_resets() -> None:
    crossed = [book(211 + k, bids=[(102, 1)], asks=[(101, 1)]) for k in range(3)]
    got = health(
        on_next(205, S), on_next(210, B1), *(on_next(211 + k, b) for k, b in enumerate(crossed)),
        on_next(215, B2), on_next(216, gap(216)), on_next(217, B1),
        stale_after=timedelta(seconds=100),
    )  # fmt: skip
    assert [(t, e.problems) for t, e in got] == [
        (205, frozenset({P.NO_BOOK})),
        (210, frozenset()),
        (211, frozenset({P.CROSSED})),  # once, for three crossed books
        (215, frozenset()),
        (216, frozenset({P.RESET})),
        (217, frozenset()),
        (317, frozenset({P.STALE})),  # 100 s after the last book
    ]


def test_a_crossed_book_is_expected_during_an_auction_by_its_exchange_time() -> None:
    auction = SecurityTradingStatus.SECURITY_TRADING_STATUS_CLOSING_AUCTION
    trading = SecurityTradingStatus.SECURITY_TRADING_STATUS_NORMAL_TRADING
    locked = book(212, bids=[(101, 1)], asks=[(101, 1)])
    crossed = book(222, bids=[(102, 1)], asks=[(101, 1)])
    late = book(228, bids=[(102, 2)], asks=[(101, 1)])  # taken in the auction, arrives after it ended
    after = book(235, bids=[(102, 3)], asks=[(101, 1)])  # taken in trading: a fault
    timeline = ((201, trading), (220, auction), (230, trading))
    got = health(
        on_next(205, S), on_next(212, locked), on_next(222, crossed), on_next(232, late), on_next(236, after),
        statuses=[on_next(t, status(t, value)) for t, value in timeline],
        stale_after=timedelta(seconds=1000),
    )  # fmt: skip
    assert [(t, e.problems, e.expected, e.trading_status) for t, e in got] == [
        (205, frozenset({P.NO_BOOK}), False, trading),
        (212, frozenset({P.LOCKED}), False, trading),  # locked while trading: a fault
        (222, frozenset({P.CROSSED}), True, auction),  # (the auction began: the locked book stays a fault)
        (236, frozenset({P.CROSSED}), False, trading),  # the late book of 228 was still the auction's
    ]


def test_a_subscription_by_ticker_learns_the_uid_from_the_first_book() -> None:
    by_ticker = Subscribed(stream="MarketDataStream", targets=("SBER_TQBR",))
    first = book(210, bids=[(99, 1)], asks=[(101, 1)], uid="uid-1", ticker="SBER", class_code="TQBR")
    got = health(on_next(205, by_ticker), on_next(210, first), stale_after=timedelta(seconds=100))
    assert [(t, e.instrument_uid, e.problems) for t, e in got] == [
        (205, "SBER_TQBR", frozenset({P.NO_BOOK})),
        (210, "uid-1", frozenset()),
        (310, "uid-1", frozenset({P.STALE})),
    ]  # and none at 305 for the id as given: it was forgotten


def test_healthy_books_passes_only_books_without_problems() -> None:
    bad = [
        book(211, bids=[(102, 1)], asks=[(101, 1)]),
        book(212, bids=[(99, 1)], asks=[(101, 1)], is_consistent=False),
        book(213, bids=[(99, 1)], asks=[(101, 1)], limit_down=Decimal(100)),
    ]
    got: list[OrderBook] = []
    reactivex.from_iterable([B1, *bad, B2]).pipe(ops.healthy_books()).subscribe(got.append)
    assert got == [B1, B2]


# --- quotes -------------------------------------------------------------------------------------------


def test_quotes_forget_the_previous_book_at_a_gap() -> None:
    got: list[Quote] = []
    reactivex.from_iterable([B1, B2, gap(230), B1]).pipe(ops.quotes(levels=2)).subscribe(got.append)
    assert [q.ofi is None for q in got] == [True, False, True]
    # B1 -> B2: the bid rose (99 -> 100): + 2 lots; the ask stayed at 101 with 4 -> 6 lots: - 2
    assert got[1].ofi == 0
    assert (got[0].bid, got[0].ask, got[0].mid, got[0].spread) == (99, 101, 100, 2)


def test_bad_arguments_are_refused_at_the_call() -> None:
    with pytest.raises(ConfigurationError):
        ops.quotes(levels=0)
    with pytest.raises(ConfigurationError):
        ops.book_health(stale_after=timedelta(0))
