"""Position reconciliation: the thin adapter of :class:`rxinvest.fold.ledger.PositionLedger` that
joins the order-state, positions and portfolio sources, with its state per subscription."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler

from rxinvest.derived import Gap, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.fold.ledger import Feed, PositionLedger
from rxinvest.model import OrderState, PortfolioResponse, PositionData, PositionsResponse
from rxinvest.ops._markers import require_markers_


def _seconds(timeout: float | timedelta) -> timedelta:
    if isinstance(timeout, timedelta):
        value = timeout
    elif type(timeout) in (int, float):
        value = timedelta(seconds=timeout)
    else:
        raise ConfigurationError(f"timeout must be seconds or a timedelta, not {timeout!r}")
    if not value > timedelta(0):
        raise ConfigurationError(f"timeout must be positive, not {timeout!r}")
    return value


def reconcile_positions_(
    order_states: Observable[Any],
    positions: Observable[Any],
    portfolio: Observable[Any] | None,
    timeout: float | timedelta,
    money_tolerance: Decimal | None,
    markers: bool,
    scheduler: abc.SchedulerBase | None,
) -> Observable[PositionCheck]:
    if type(markers) is not bool:
        raise ConfigurationError(f"markers must be True or False, not {markers!r}")
    for name, source in (("order_states", order_states), ("positions", positions), ("portfolio", portfolio)):
        if source is not None and not isinstance(source, Observable):
            raise ConfigurationError(f"{name} must be an Observable, not {type(source).__name__}")
    window = _seconds(timeout)
    PositionLedger(window, money_tolerance=money_tolerance)  # refuses bad arguments at the call
    feeds = [(Feed.ORDERS, order_states), (Feed.POSITIONS, positions)]
    if portfolio is not None:
        feeds.append((Feed.PORTFOLIO, portfolio))

    def subscribe(
        observer: abc.ObserverBase[PositionCheck], subscribe_scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        clock = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
        ledger = PositionLedger(window, money_tolerance=money_tolerance)  # per subscription
        lock = threading.RLock()  # three sources and the timer call at once: on_next is serial
        timer = SerialDisposable()
        armed: list[datetime | None] = [None]
        done = [False]
        open_feeds = [len(feeds)]
        upstreams = [SingleAssignmentDisposable() for _ in feeds]

        def send(events: Iterable[PositionCheck]) -> None:
            for event in events:
                observer.on_next(event)

        def arm() -> None:
            """One pending timer, moved only to an earlier deadline: a timer left at an earlier
            instant than needed fires, finds nothing due, and is set again (a change matched in
            time would otherwise re-arm it on every event)."""
            floor = ledger.deadline_floor
            if floor is None or (armed[0] is not None and armed[0] <= floor):
                return  # the common case, in O(1): the timer is set early enough
            deadline = ledger.next_deadline
            if deadline is None or (armed[0] is not None and armed[0] <= deadline):
                return
            armed[0] = deadline
            timer.disposable = clock.schedule_absolute(deadline, fire)

        def fire(_: abc.SchedulerBase, __: Any = None) -> None:
            with lock:
                if not done[0]:
                    armed[0] = None
                    send(ledger.advance(clock.now))
                    arm()

        def stop() -> None:
            done[0] = True
            timer.dispose()
            for upstream in upstreams:
                upstream.dispose()

        # Bound once: a ``with lock`` block costs twice what these calls do, per event.
        acquire, release, emit = lock.acquire, lock.release, observer.on_next

        def handler(feed: Feed) -> tuple[Any, Any, Any]:
            def on_next(item: Any) -> None:
                acquire()
                try:
                    if done[0]:
                        return
                    kind = type(item)
                    if kind is OrderState:
                        events = ledger.order_state(item, clock.now)
                    elif kind is PositionData or kind is PositionsResponse:
                        events = ledger.positions(item, clock.now)
                    elif kind is PortfolioResponse:
                        events = ledger.portfolio(item, clock.now)
                    elif isinstance(item, Gap):
                        events = ledger.gap(feed, item.target, clock.now)
                    else:
                        return  # other markers
                    if events:  # what changes nothing (a duplicate) moves no deadline either
                        for event in events:
                            emit(event)
                        arm()
                finally:
                    release()

            def on_error(error: Exception) -> None:
                with lock:
                    if not done[0]:
                        stop()
                        observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    open_feeds[0] -= 1
                    if not done[0] and not open_feeds[0]:  # all sources ended: what is pending stays so
                        stop()
                        observer.on_completed()

            return on_next, on_error, on_completed

        for (feed, source), upstream in zip(feeds, upstreams, strict=True):
            guarded = (
                source.pipe(require_markers_(f"reconcile_positions ({feed.value})")) if markers else source
            )
            upstream.disposable = guarded.subscribe(*handler(feed), scheduler=subscribe_scheduler)
        return CompositeDisposable(*upstreams, timer)

    return reactivex.create(subscribe)
