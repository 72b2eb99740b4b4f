"""Operators against their floors: what ``ops.to_bars`` costs per trade, and a book diff per pair, in one run.

Run: ``.venv/bin/python benchmarks/ops.py [--trades 20000] [--books 10000] [--rounds 7]``; ``--trades 0``
or ``--books 0`` skips a section.

Bars, per trade, medians of interleaved rounds over one tape (4 instruments, one-second steps):

* F: a bare OHLCV fold, a dict of lists updated in a plain loop (no types, no rules): the floor;
* R: one RxPY ``Subject`` hop to a subscriber that does nothing;
* fold: :class:`rxinvest.fold.bars.BarFold` alone (goal: at most 1 µs a trade);
* P: ``Subject -> ops.to_bars(1 min) -> subscriber``, closed bars (goal: P <= 1.5 x (F + R));
* P updates: the same with ``emit="updates"`` (reported, no goal).

Books, per pair of consecutive depth-20 snapshots of :func:`book_tape` (about 3 changed levels a
pair, fresh ``Order`` and ``Decimal`` objects in every snapshot, as the decoder makes them), medians
of interleaved rounds:

* naive: two dicts of ``Decimal`` prices rebuilt from strings for every pair, set operations, sorted
  (the baseline of research/operators-anchors.md section 0);
* diff: :func:`rxinvest.fold.books.diff_books` (goal: naive / diff >= 10x; section 0 asks <= 3 µs);
* fold: :class:`rxinvest.fold.books.BookDiffFold` over the tape (the state the operator keeps);
* P (book_health), P (quotes): ``Subject -> operator -> subscriber``; what they add over R is the
  goal (at most 1 µs a book for the two). ``Quote`` computes ``mid``, ``spread``, ``spread_ticks``
  and ``microprice`` when read, so P (quotes, all read) has a subscriber that reads every field and
  property (with an increment): the cost of a quote fully used.
* floor: bare quote, floor: bare health: the same pipeline with a stock ``map``/``filter`` doing
  less than each operator must (:func:`bare_quote`, :func:`bare_health`): what any implementation
  on RxPY and attrs costs at least, to hold the 1 µs goal against.

A row is one entry of ``BOOK_CASES`` (a function of the tape); the ratios are printed below the table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from reactivex import operators as rx_ops
from reactivex.scheduler import CurrentThreadScheduler
from reactivex.subject import Subject

from rxinvest import ops, wire
from rxinvest.derived import Quote
from rxinvest.fold.bars import BarFold
from rxinvest.fold.books import BookDiffFold, diff_books
from rxinvest.fold.ledger import PositionLedger
from rxinvest.fold.quotes import _make_quote
from rxinvest.model import (
    Order,
    OrderBook,
    OrderBookType,
    OrderDirection,
    OrderExecutionReportStatus,
    OrderState,
    PositionData,
    PositionsResponse,
    PositionsSecurities,
    Trade,
    TradeDirection,
)

T0 = datetime(2025, 11, 21, 7, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def tape(count: int) -> list[Trade]:
    return [
        Trade(
            instrument_uid=f"U{i % 4}",
            price=Decimal(100 + (i * 7) % 13),
            quantity=1 + i % 5,
            direction=TradeDirection.TRADE_DIRECTION_BUY if i % 2 else TradeDirection.TRADE_DIRECTION_SELL,
            time=T0 + timedelta(seconds=i // 4),
        )
        for i in range(count)
    ]


def floor(trades: list[Trade]) -> None:
    bars: dict[tuple[str, int], list[object]] = {}
    for t in trades:
        assert t.time is not None
        key = (t.instrument_uid, int(t.time.timestamp()) // 60)
        bar = bars.get(key)
        if bar is None:
            bars[key] = [t.price, t.price, t.price, t.price, t.quantity]
        else:
            bar[1] = max(bar[1], t.price)  # type: ignore[type-var]
            bar[2] = min(bar[2], t.price)  # type: ignore[type-var]
            bar[3] = t.price
            bar[4] += t.quantity  # type: ignore[operator]


def hop(trades: list[Trade]) -> None:
    subject: Subject[Trade] = Subject()
    subject.subscribe(lambda _: None)
    for t in trades:
        subject.on_next(t)


def fold(trades: list[Trade]) -> None:
    bars = BarFold(MINUTE, grace=timedelta(seconds=1))
    for t in trades:
        assert t.time is not None
        bars.trade(t, t.time)


def pipeline(emit: str) -> Callable[[list[Trade]], None]:
    def run(trades: list[Trade]) -> None:
        subject: Subject[Trade] = Subject()
        clock = _TapeClock()
        subject.pipe(ops.to_bars(MINUTE, emit=emit, markers=False, scheduler=clock)).subscribe(lambda _: None)
        for t in trades:
            assert t.time is not None
            clock.at = t.time
            subject.on_next(t)

    return run


class _TapeClock(CurrentThreadScheduler):
    """A scheduler whose ``now`` is the tape's time: the timer never fires (the next trade closes
    each bar first), so the benchmark measures the per-trade path."""

    at = T0

    @property
    def now(self) -> datetime:
        return self.at

    def schedule_absolute(self, duetime, action, state=None):  # type: ignore[no-untyped-def, override]
        from reactivex.disposable import Disposable

        return Disposable()


# --- books ------------------------------------------------------------------------------------------

BOOK_DEPTH = 20
BOOK_STEP = timedelta(milliseconds=100)  # the API sends a book at most every 100 ms
BOOK_UID = "e6123145-9665-43e0-8413-cd61b8aa9b13"


def _price(ticks: int) -> Decimal:
    """A price of ``ticks`` hundredths, parsed from its text as the decoder does."""
    return Decimal(f"{ticks // 100}.{ticks % 100:02d}")


def book_tape(count: int, *, depth: int = BOOK_DEPTH, seed: int = 7, decoded: bool = True) -> list[OrderBook]:
    """``count`` consecutive snapshots of one instrument's book at ``depth``, realistic enough to time.

    Both sides full, on a 0.01 tick grid with the odd empty price; each step changes about 3 levels:
    mostly quantities near the top, now and then the quote moves a tick (levels enter at the top
    and leave at the bottom, or the reverse). ``decoded``: each snapshot goes through the wire codec
    (encoded as the server would, decoded as the client does), so its levels are what a client
    holds: interned, an unchanged level the very object of the book before. Else every snapshot has
    new ``Order`` and ``Decimal`` objects. Deterministic for a ``seed``.
    """
    rng = random.Random(seed)
    quantity: dict[int, int] = {}  # price in ticks -> lots resting there (remembered when out of view)

    def lots(tick: int) -> int:
        if tick not in quantity:
            quantity[tick] = 0 if rng.random() < 0.05 else rng.randint(1, 500)  # 0: an empty price
        return quantity[tick]

    best_bid, spread = 25_000, 2  # 250.00 / 250.02
    books: list[OrderBook] = []
    for n in range(count):
        if n and rng.random() < 0.2:  # the quote moves a tick
            best_bid += rng.choice((-1, 1))
        elif n:  # three quantities change, mostly near the top
            for _ in range(3):
                offset = min(int(rng.expovariate(0.3)), depth - 1)
                tick = best_bid - offset if rng.random() < 0.5 else best_bid + spread + offset
                quantity[tick] = max(1, lots(tick) + rng.randint(-50, 50))
        bids: list[Order] = []
        tick = best_bid
        while len(bids) < depth:
            if lots(tick):
                bids.append(Order(price=_price(tick), quantity=quantity[tick]))
            tick -= 1
        asks: list[Order] = []
        tick = best_bid + spread
        while len(asks) < depth:
            if lots(tick):
                asks.append(Order(price=_price(tick), quantity=quantity[tick]))
            tick += 1
        books.append(
            OrderBook(
                figi="BBG004730N88",
                depth=depth,
                is_consistent=True,
                bids=tuple(bids),
                asks=tuple(asks),
                time=T0 + n * BOOK_STEP,
                limit_up=_price(27_500),
                limit_down=_price(22_500),
                instrument_uid=BOOK_UID,
                order_book_type=OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
                ticker="SBER",
                class_code="TQBR",
            )
        )
    if decoded:
        wire.clear_caches()  # as a fresh client: interned from this tape only
        books = [wire.decode(wire.encode(book), stream="MarketDataStream") for book in books]  # type: ignore[misc]
    return books


def naive_diff(a: OrderBook, b: OrderBook) -> list[tuple[str, Decimal, int, int]]:
    """The baseline: per side, two dicts of ``Decimal`` prices rebuilt from strings, set operations,
    then sorted best first; (side, price, old, new) tuples, no kinds."""
    out: list[tuple[str, Decimal, int, int]] = []
    for side, old_levels, new_levels, best_high in (
        ("bid", a.bids, b.bids, True),
        ("ask", a.asks, b.asks, False),
    ):
        old = {Decimal(str(level.price)): level.quantity for level in old_levels}
        new = {Decimal(str(level.price)): level.quantity for level in new_levels}
        changed: dict[Decimal, tuple[int, int]] = {}
        for price in old.keys() - new.keys():
            changed[price] = (old[price], 0)
        for price in new.keys() - old.keys():
            changed[price] = (0, new[price])
        for price in old.keys() & new.keys():
            if old[price] != new[price]:
                changed[price] = (old[price], new[price])
        out += [(side, p, o, n) for p, (o, n) in sorted(changed.items(), reverse=best_high)]
    return out


def naive_pairs(books: list[OrderBook]) -> None:
    for i in range(1, len(books)):
        naive_diff(books[i - 1], books[i])


def diff_pairs(books: list[OrderBook]) -> None:
    for i in range(1, len(books)):
        diff_books(books[i - 1], books[i])


def fold_pairs(books: list[OrderBook]) -> None:
    fold = BookDiffFold()
    fold.step(books[0])  # the reset diff of the first snapshot is not a pair
    for book in books[1:]:
        fold.step(book)


def book_hop(books: list[OrderBook]) -> None:
    subject: Subject[OrderBook] = Subject()
    subject.subscribe(lambda _: None)
    for book in books[1:]:
        subject.on_next(book)


def read_quote(made: Quote) -> None:
    """A subscriber that reads every field and property of a quote (``mid``, ``spread``,
    ``spread_ticks`` and ``microprice`` are computed when read)."""
    _ = (made.instrument_uid, made.time, made.bid, made.ask, made.bid_size, made.ask_size)
    _ = (made.imbalance, made.levels, made.ofi, made.increment)
    _ = (made.mid, made.spread, made.spread_ticks, made.microprice)


def book_pipeline(
    operator: Callable[[], Any], *, timed: bool = False, subscriber: Callable[[Any], None] = lambda _: None
) -> Callable[[list[OrderBook]], None]:
    """``Subject -> operator -> subscriber`` over the tape (the first book primes it, as a pair's).
    ``timed``: the operator takes the tape's clock, moved to each book's time before it is sent (a
    cost of the driver that R does not have, charged to the operator: about 0.03 µs a book)."""

    def run(books: list[OrderBook]) -> None:
        subject: Subject[OrderBook] = Subject()
        clock = _TapeClock()
        options = {"scheduler": clock} if timed else {}
        subscription = subject.pipe(operator(**options)).subscribe(subscriber)
        subject.on_next(books[0])
        start = time.perf_counter()
        if timed:
            for book in books[1:]:
                assert book.time is not None
                clock.at = book.time
                subject.on_next(book)
        else:  # no clock to move: the loop is R's, so P - R is the operator's alone
            for book in books[1:]:
                subject.on_next(book)
        run.seconds = time.perf_counter() - start  # type: ignore[attr-defined]
        subscription.dispose()

    return run


def bare_quote(book: OrderBook) -> Quote:
    """Less than a quote: the top of each side and the imbalance of 5 levels of a two-sided book
    of 5 levels or more, no OFI, no checks, made the cheapest way an attrs ``Quote`` can be made
    (what :mod:`rxinvest.fold.quotes` uses). A floor: no implementation of ``quotes`` does less."""
    bids, asks = book.bids, book.asks
    bid, ask = bids[0], asks[0]
    buy = bid.quantity + bids[1].quantity + bids[2].quantity + bids[3].quantity + bids[4].quantity
    sell = ask.quantity + asks[1].quantity + asks[2].quantity + asks[3].quantity + asks[4].quantity
    return _make_quote(
        book.instrument_uid, book.time, bid.price, ask.price, bid.quantity, ask.quantity,
        (buy - sell) / (buy + sell), 5, None, None,
    )  # fmt: skip


def bare_health() -> Callable[[OrderBook], bool]:
    """Less than book health: whether a book's state (crossed or locked, inconsistent, outside its
    limits, all from its outer prices) differs from its instrument's last, without staleness,
    statuses, gaps, a clock or a lock, and without making an event. A floor, as :func:`bare_quote`."""
    last: dict[str, bool] = {}

    def changed(book: OrderBook) -> bool:
        bids, asks, up, down = book.bids, book.asks, book.limit_up, book.limit_down
        bad = not (
            book.is_consistent
            and down <= bids[-1].price < bids[0].price < asks[0].price <= asks[-1].price <= up  # type: ignore[operator]
        )
        if last.get(book.instrument_uid) is bad:
            return False
        last[book.instrument_uid] = bad
        return True

    return changed


#: The rows of the books section: name -> a function of the tape (add a row here).
BOOK_CASES: dict[str, Callable[[list[OrderBook]], None]] = {
    "naive (dict+set)": naive_pairs,
    "diff (diff_books)": diff_pairs,
    "fold (BookDiffFold)": fold_pairs,
    "R (Subject hop)": book_hop,
    "P (book_diffs)": book_pipeline(lambda: ops.book_diffs(markers=False)),
    "P (book_health)": book_pipeline(
        lambda **clock: ops.book_health(markers=False, stale_after=timedelta(hours=1), **clock), timed=True
    ),
    "P (quotes)": book_pipeline(lambda: ops.quotes()),
    "P (quotes, all read)": book_pipeline(
        lambda: ops.quotes(increments={BOOK_UID: Decimal("0.01")}), subscriber=read_quote
    ),
    "floor: bare quote": book_pipeline(lambda: rx_ops.map(bare_quote)),
    "floor: bare health": book_pipeline(lambda: rx_ops.filter(bare_health())),
}


def per_item_us(function: Callable[[list[Any]], None], items: list[Any], per: int) -> float:
    start = time.perf_counter()
    function(items)
    return (time.perf_counter() - start) / per * 1e6


def medians(
    cases: dict[str, Callable[[list[Any]], None]], items: list[Any], per: int, rounds: int
) -> dict[str, float]:
    """Median µs per item of each case, over ``rounds`` interleaved rounds (the machine's drift hits
    every case alike)."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, function in cases.items():
            samples[name].append(per_item_us(function, items, per))
    return {name: statistics.median(values) for name, values in samples.items()}


def bars_section(count: int, rounds: int) -> None:
    trades = tape(count)
    cases: dict[str, Callable[[list[Trade]], None]] = {
        "F (bare fold)": floor,
        "R (Subject hop)": hop,
        "fold (BarFold)": fold,
        "P (to_bars)": pipeline("closed"),
        "P updates": pipeline("updates"),
    }
    med = medians(cases, trades, len(trades), rounds)
    print(f"per trade, medians of {rounds} rounds over {count} trades")
    print(f"{'case':<18} {'µs':>8}")
    for name, value in med.items():
        print(f"{name:<18} {value:>8.2f}")
    goal = 1.5 * (med["F (bare fold)"] + med["R (Subject hop)"])
    print(f"\nP / (F + R)        {med['P (to_bars)'] / (goal / 1.5):>8.2f}x   (goal <= 1.5x)")
    print(f"fold per trade     {med['fold (BarFold)']:>8.2f} µs (goal <= 1 µs)")


def books_section(pairs: int, rounds: int) -> None:
    books = book_tape(pairs + 1)
    changes = sum(len(diff_books(books[i - 1], books[i]).changes) for i in range(1, len(books)))
    med = medians(BOOK_CASES, books, pairs, rounds)
    print(
        f"per depth-{BOOK_DEPTH} pair, medians of {rounds} rounds over {pairs} pairs"
        f" ({changes / pairs:.2f} changed levels a pair)"
    )
    print(f"{'case':<20} {'µs':>8}")
    for name, value in med.items():
        print(f"{name:<20} {value:>8.2f}")
    naive, pure, hop_us = med["naive (dict+set)"], med["diff (diff_books)"], med["R (Subject hop)"]
    pipeline_us = med["P (book_diffs)"]
    added = med["P (book_health)"] + med["P (quotes)"] - 2 * hop_us
    print(f"\nnaive / diff         {naive / pure:>8.1f}x   (goal >= 10x)")
    print(f"diff per pair        {pure:>8.2f} µs (section 0: <= 3 µs)")
    print(f"P / diff             {pipeline_us / pure:>8.2f}x   (goal <= 1.5x)")
    print(f"P / (diff + R)       {pipeline_us / (pure + hop_us):>8.2f}x")
    print(f"health + quotes add  {added:>8.2f} µs a book over two hops (goal <= 1 µs)")
    bare = med["floor: bare quote"] + med["floor: bare health"] - 2 * hop_us
    print(f"the floors add       {bare:>8.2f} µs a book over two hops (less work, the cheapest Rx operators)")
    read = med["P (quotes, all read)"] - hop_us
    print(f"quotes, all read     {read:>8.2f} µs a book over the hop (four fields are computed when read)")
    fresh = book_tape(pairs + 1, decoded=False)
    fresh_us = statistics.median(per_item_us(diff_pairs, fresh, pairs) for _ in range(rounds))
    print(
        f"diff, fresh objects  {fresh_us:>8.2f} µs (levels not interned: naive / it {naive / fresh_us:.1f}x)"
    )


# --- positions --------------------------------------------------------------------------------------

LEDGER_ACCOUNT = "2000000001"
LEDGER_TIMEOUT = timedelta(seconds=5)


def ledger_tape(count: int) -> list[tuple[str, Any, datetime]]:
    """``count`` events of one account, half order states with a new fill (1 lot of 10 units, four
    instruments, buys and sells), half the positions stream's change for it, after its snapshot;
    ("orders" | "positions", event, received at). Events come 0.5 ms apart, from ``timeout`` after
    the snapshot (the steady state: fills sooner are uncertain, rule 9 of the ledger)."""
    uids = [f"uid-{k}" for k in range(4)]
    held = dict.fromkeys(uids, 1_000)
    tape: list[tuple[str, Any, datetime]] = [
        (
            "positions",
            PositionsResponse(
                account_id=LEDGER_ACCOUNT,
                securities=tuple(PositionsSecurities(instrument_uid=u, balance=held[u]) for u in uids),
            ),
            T0 - LEDGER_TIMEOUT,
        )
    ]
    for i in range(count // 2):
        uid = uids[i % 4]
        buy = i % 3 != 2
        held[uid] += 10 if buy else -10
        tape.append(
            (
                "orders",
                OrderState(
                    order_id=f"o{i}",
                    order_request_id=f"r{i}",
                    execution_report_status=OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_FILL,
                    lots_executed=1,
                    lot_size=10,
                    direction=OrderDirection.ORDER_DIRECTION_BUY
                    if buy
                    else OrderDirection.ORDER_DIRECTION_SELL,
                    account_id=LEDGER_ACCOUNT,
                    instrument_uid=uid,
                ),
                T0 + timedelta(microseconds=1000 * i),
            )
        )
        tape.append(
            (
                "positions",
                PositionData(
                    account_id=LEDGER_ACCOUNT,
                    securities=(PositionsSecurities(instrument_uid=uid, balance=held[uid]),),
                    date=T0 + timedelta(milliseconds=i),
                ),
                T0 + timedelta(microseconds=1000 * i + 500),
            )
        )
    return tape


def ledger_loop(tape: list[tuple[str, Any, datetime]]) -> None:
    """F: the ledger in a plain loop, its two methods bound once (securities only: ``money_tolerance``
    None; money reconciled too would add a second position per fill)."""
    ledger = PositionLedger(LEDGER_TIMEOUT, money_tolerance=None)
    method = {"orders": ledger.order_state, "positions": ledger.positions}
    for feed, event, now in tape:
        method[feed](event, now)


def ledger_hop(tape: list[tuple[str, Any, datetime]]) -> None:
    subject: Subject[Any] = Subject()
    subject.subscribe(lambda _: None)
    for _, event, _ in tape:
        subject.on_next(event)


def ledger_pipeline(tape: list[tuple[str, Any, datetime]]) -> None:
    orders: Subject[Any] = Subject()
    positions: Subject[Any] = Subject()
    clock = _TapeClock()
    subscription = ops.reconcile_positions(orders, positions, markers=False, scheduler=clock).subscribe(
        lambda _: None
    )
    for feed, event, now in tape:
        clock.at = now
        (orders if feed == "orders" else positions).on_next(event)
    subscription.dispose()


def positions_section(count: int, rounds: int) -> None:
    tape = ledger_tape(count)
    cases: dict[str, Callable[[list[Any]], None]] = {
        "F (PositionLedger)": ledger_loop,
        "R (Subject hop)": ledger_hop,
        "P (reconcile)": ledger_pipeline,
    }
    med = medians(cases, tape, len(tape), rounds)
    print(f"per event, medians of {rounds} rounds over {len(tape)} events (fills and their reports)")
    print(f"{'case':<20} {'µs':>8}")
    for name, value in med.items():
        print(f"{name:<20} {value:>8.2f}")
    fold_us, hop_us, pipeline_us = med["F (PositionLedger)"], med["R (Subject hop)"], med["P (reconcile)"]
    print(f"\nledger per event     {fold_us:>8.2f} µs (goal <= 2 µs)")
    print(f"P / (F + R)          {pipeline_us / (fold_us + hop_us):>8.2f}x   (goal <= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=20_000, help="trades in the bar tape (0: skip bars)")
    parser.add_argument("--books", type=int, default=10_000, help="book pairs (0: skip books)")
    parser.add_argument("--events", type=int, default=20_000, help="ledger events (0: skip positions)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    sections = [
        (args.trades, bars_section),
        (args.books, books_section),
        (args.events, positions_section),
    ]
    first = True
    for count, section in sections:
        if count > 0:
            if not first:
                print()
            section(count, args.rounds)
            first = False


if __name__ == "__main__":
    main()
