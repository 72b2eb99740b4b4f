"""The book operators: thin adapters of the folds in :mod:`rxinvest.fold` (books, health, quotes),
each with its state per subscription."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex import operators as rx_ops
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler

from rxinvest.derived import BookDiff, BookHealth, Gap, Quote, Subscribed
from rxinvest.errors import BookIntegrityError, ConfigurationError, RxInvestError
from rxinvest.fold.books import BookDiffFold, BookRebuildFold
from rxinvest.fold.health import HealthFold, problems_of
from rxinvest.fold.quotes import QuoteFold
from rxinvest.model import OrderBook, TradingStatus
from rxinvest.ops._markers import require_markers_

log = logging.getLogger("rxinvest.ops")


def _check_markers(markers: bool) -> None:
    if type(markers) is not bool:
        raise ConfigurationError(f"markers must be True or False, not {markers!r}")


def _books_operator(
    who: str, markers: bool, kind: type, make: Callable[[], tuple[Callable[[Any], Any], Callable[[Any], Any]]]
) -> Callable[[Observable[Any]], Observable[Any]]:
    """An operator around a fold without a clock. ``make()`` makes a fold per subscription and
    returns its two steps, what to emit (None: nothing) for an item of type ``kind`` and for any
    other item. The first is called straight from ``on_next``, so a fold's bound method there costs
    no extra call a book. rxinvest's errors (bad data) end the subscription through ``on_error``."""
    _check_markers(markers)

    def operator(source: Observable[Any]) -> Observable[Any]:
        guarded = source.pipe(require_markers_(who)) if markers else source

        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            step, other = make()  # per subscription
            upstream = SingleAssignmentDisposable()
            emit = observer.on_next

            def on_next(item: Any) -> None:
                try:
                    out = step(item) if type(item) is kind else other(item)
                except RxInvestError as error:
                    upstream.dispose()
                    observer.on_error(error)
                    return
                if out is not None:
                    emit(out)

            upstream.disposable = guarded.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )
            return upstream

        return reactivex.create(subscribe)

    return operator


def _ignore(_: Any) -> None:
    return None


def book_diffs_(markers: bool) -> Callable[[Observable[Any]], Observable[BookDiff]]:
    def make() -> tuple[Callable[[OrderBook], BookDiff | None], Callable[[Any], None]]:
        fold = BookDiffFold()

        def step(book: OrderBook) -> BookDiff | None:
            try:
                return fold.step(book)
            except BookIntegrityError as error:
                # A malformed snapshot must not end the stream: it is skipped, and the instrument's
                # next one starts afresh (a reset diff), so the skip is visible in-band.
                log.warning("book_diffs skipped a malformed book: %s", error)
                if key := book.instrument_uid or book.figi:
                    fold.gap(key)
                return None

        def other(item: Any) -> None:
            if isinstance(item, Gap):
                fold.gap(item.instrument_uid)

        return step, other

    return _books_operator("book_diffs", markers, OrderBook, make)


def to_books_() -> Callable[[Observable[Any]], Observable[OrderBook]]:
    def make() -> tuple[Callable[[BookDiff], OrderBook], Callable[[Any], None]]:
        return BookRebuildFold().step, _ignore

    return _books_operator("to_books", False, BookDiff, make)


def quotes_(
    levels: int, increments: Mapping[str, Decimal] | None
) -> Callable[[Observable[Any]], Observable[Quote]]:
    QuoteFold(levels, increments)  # refuses bad arguments at the call, not at subscribe

    def make() -> tuple[Callable[[OrderBook], Quote], Callable[[Any], None]]:
        fold = QuoteFold(levels, increments)

        def other(item: Any) -> None:
            if isinstance(item, Gap):
                fold.gap(item.instrument_uid)

        return fold.step, other

    return _books_operator("quotes", False, OrderBook, make)


def _aliases(book: OrderBook) -> tuple[str, ...]:
    """The ids a user may have subscribed this book's instrument by: uid, figi, ``TICKER_CLASS``."""
    return (book.instrument_uid, book.figi, f"{book.ticker}_{book.class_code}")


def book_health_(
    stale_after: timedelta,
    trading_statuses: Observable[TradingStatus] | None,
    scheduler: abc.SchedulerBase | None,
    markers: bool,
) -> Callable[[Observable[Any]], Observable[BookHealth]]:
    _check_markers(markers)
    HealthFold(stale_after)  # refuses bad arguments at the call, not at subscribe

    def operator(source: Observable[Any]) -> Observable[BookHealth]:
        guarded = source.pipe(require_markers_("book_health")) if markers else source

        def subscribe(
            observer: abc.ObserverBase[BookHealth], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            clock = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            fold = HealthFold(stale_after)
            lock = threading.RLock()  # books, statuses and the timer may call at once: on_next is serial
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()
            statuses = SingleAssignmentDisposable()
            armed: list[datetime | None] = [None]
            waiting: set[str] = set()  # subscribed ids (as given) without a book yet
            done = [False]

            def send(events: Iterable[BookHealth]) -> None:
                for event in events:
                    observer.on_next(event)

            def arm() -> None:
                """One pending timer: set for the fold's next deadline, unless it already is."""
                deadline = fold.next_deadline
                if deadline == armed[0]:
                    return
                armed[0] = deadline
                timer.disposable = (
                    clock.schedule_absolute(deadline, fire)
                    if deadline is not None
                    else SingleAssignmentDisposable()
                )

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    if done[0]:
                        return
                    armed[0] = None
                    send(fold.advance(clock.now))
                    arm()

            def first_book(book: OrderBook) -> None:
                """The first book of an instrument subscribed by another id: forget that id."""
                for alias in _aliases(book):
                    if alias in waiting and alias != book.instrument_uid:
                        waiting.discard(alias)
                        fold.forget(alias)
                waiting.discard(book.instrument_uid)

            fold_book = fold.book
            # Bound once: a ``with lock`` block costs twice what these calls do, per book.
            acquire, release = lock.acquire, lock.release

            def on_next(item: Any) -> None:
                acquire()
                try:
                    if done[0]:
                        return
                    if type(item) is OrderBook:  # the hot path: the timer is re-armed only on a change
                        if waiting:
                            first_book(item)
                        events = fold_book(item, clock.now)
                        if events:
                            send(events)
                            arm()
                        return
                    if isinstance(item, Gap):
                        send(fold.gap(item.instrument_uid, clock.now))
                    elif isinstance(item, Subscribed):
                        for target in item.targets:
                            waiting.add(target)
                            send(fold.subscribed(target, clock.now))
                    elif isinstance(item, TradingStatus):
                        send(fold.status(item, clock.now))
                    else:
                        return
                    arm()
                finally:
                    release()

            def on_error(error: Exception) -> None:
                with lock:
                    if not done[0]:
                        done[0] = True
                        timer.dispose()
                        statuses.dispose()
                        observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    if not done[0]:
                        done[0] = True
                        timer.dispose()
                        statuses.dispose()
                        observer.on_completed()

            if trading_statuses is not None:
                # Statuses only qualify the books: their completion does not end the health stream.
                statuses.disposable = trading_statuses.subscribe(
                    on_next, on_error, scheduler=subscribe_scheduler
                )
            upstream.disposable = guarded.subscribe(
                on_next, on_error, on_completed, scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, statuses, timer)

        return reactivex.create(subscribe)

    return operator


def healthy_books_() -> Callable[[Observable[Any]], Observable[Any]]:
    return rx_ops.filter(lambda item: type(item) is not OrderBook or not problems_of(item))
