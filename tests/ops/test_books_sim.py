"""Book health against the simulator's book faults, over real sockets on loopback.

The ground truth is the simulator's own log of the snapshots it distorted on purpose
(``sim.injected_books()``), not the code under test: every delivered book is looked up there, and
health must flag exactly those (precision and recall 1.0), over at least 1,000 injected faults. In
the ``session`` scenario, the simulator's auctions cross books for real: health must call those
expected, not faults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from reactivex import operators as rx_ops

import rxinvest
from rxinvest import ops
from rxinvest.derived import BookHealth, BookProblem
from rxinvest.model import OrderBook, SecurityTradingStatus
from rxinvest.sim import CATALOGUE, Faults, Simulator, serve

INSTRUMENTS = [f"{i.ticker}_{i.class_code}" for i in CATALOGUE[:8]]
FAULTS = {BookProblem.CROSSED, BookProblem.LOCKED, BookProblem.INCONSISTENT, BookProblem.OUTSIDE_LIMITS}
AUCTIONS = {
    SecurityTradingStatus.SECURITY_TRADING_STATUS_OPENING_AUCTION_PERIOD,
    SecurityTradingStatus.SECURITY_TRADING_STATUS_CLOSING_AUCTION,
}


class Recorder:
    """Books and health events in the order the pipeline saw them (one delivery thread per
    subscription: ``on_next`` calls never overlap)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[Any] = []

    def __call__(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)

    def books(self) -> int:
        with self.lock:
            return sum(type(i) is OrderBook for i in self.items)


def watch(client: rxinvest.Client, recorder: Recorder, *, statuses: bool) -> Any:
    books = client.market_data.order_books(INSTRUMENTS, depth=10, conflate=False).with_markers()
    trading = client.market_data.trading_statuses(INSTRUMENTS) if statuses else None
    return books.pipe(
        rx_ops.do_action(recorder),  # the book first, then the health events it causes
        ops.book_health(stale_after=timedelta(hours=1), trading_statuses=trading),
    ).subscribe(recorder)


def flagged_per_book(items: list[Any]) -> list[tuple[OrderBook, BookHealth | None]]:
    """Each book with its instrument's health once the events it caused are in: the last event of
    the instrument before its next book (edge-triggered: no event, no change). A book that
    overtook the status that began its auction is a fault until that status arrives (see
    ``fold.health`` rule 7): the settled state is the one judged here."""
    current: dict[str, BookHealth] = {}
    pending: dict[str, OrderBook] = {}
    out: list[tuple[OrderBook, BookHealth | None]] = []
    for item in items:
        if isinstance(item, BookHealth):
            current[item.instrument_uid] = item
        elif type(item) is OrderBook:
            uid = item.instrument_uid
            if uid in pending:
                out.append((pending[uid], current.get(uid)))
            pending[uid] = item
    out += [(book, current.get(uid)) for uid, book in pending.items()]
    return out


def is_fault(health: BookHealth | None) -> bool:
    return health is not None and bool(health.problems & FAULTS) and not health.expected


def wait(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def faulty() -> Iterator[Simulator]:
    faults = Faults(crossed_books=0.1, inconsistent_books=0.1)
    with serve(seed=21, speed=20, trader=False, faults=faults) as sim:
        yield sim


def test_health_flags_exactly_the_injected_faults(faulty: Simulator) -> None:
    recorder = Recorder()
    with rxinvest.connect(faulty.token, target=faulty.base_url) as client:
        subscription = watch(client, recorder, statuses=False)
        wait(lambda: len(faulty.injected_books()) >= 1_200, 60)
        subscription.dispose()
    injected = {(b.instrument_uid, b.depth, b.time): b.kind for b in faulty.injected_books()}
    with recorder.lock:
        pairs = flagged_per_book(recorder.items)

    def was_injected(book: OrderBook) -> bool:
        return (book.instrument_uid, book.depth, book.time) in injected

    assert sum(was_injected(book) for book, _ in pairs) >= 1_000
    false_alarms = [b for b, h in pairs if is_fault(h) and not was_injected(b)]
    missed = [b for b, h in pairs if not is_fault(h) and was_injected(b)]
    assert false_alarms == []  # precision 1.0
    assert missed == []  # recall 1.0
    crossed = [b for b, h in pairs if h is not None and BookProblem.CROSSED in h.problems]
    assert {injected[(b.instrument_uid, b.depth, b.time)] for b in crossed} == {"crossed"}


def test_auctions_cross_books_and_health_calls_it_expected() -> None:
    recorder = Recorder()
    # Manual: the market moves only when told. The session scenario opens with a 20-second auction.
    with (
        serve(seed=5, manual=True, trader=False, scenario="session") as sim,
        rxinvest.connect(sim.token, target=sim.base_url) as client,
    ):
        subscription = watch(client, recorder, statuses=True)
        wait(lambda: recorder.books() >= len(INSTRUMENTS), 10)  # the books sent on subscribing
        time.sleep(0.2)  # and the statuses, on the same connection
        for _ in range(40):  # 40 s in steps of 100 ms: through the auction into trading
            sim.advance(10)
            time.sleep(0.01)
        wait(lambda: recorder.books() >= len(INSTRUMENTS) + 100, 10)
        time.sleep(0.5)
        subscription.dispose()
    with recorder.lock:
        pairs = flagged_per_book(recorder.items)
    crossed = [(b, h) for b, h in pairs if b.bids and b.asks and b.bids[0].price >= b.asks[0].price]  # type: ignore[operator]
    assert crossed, "the auction crossed no book"
    for book, state in crossed:
        assert state is not None and state.problems & {BookProblem.CROSSED, BookProblem.LOCKED}
        assert state.expected and state.trading_status in AUCTIONS, (book, state)
    assert not any(is_fault(h) for _, h in pairs)  # no fault was injected: none is reported
