"""``to_bars`` and ``resample``: adapters of :class:`~rxinvest.fold.bars.BarFold` and
:class:`~rxinvest.fold.resample.ResampleFold`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler

from rxinvest.derived import Bar, BarState, Gap, LateTrade
from rxinvest.errors import ConfigurationError, RxInvestError
from rxinvest.fold.bars import BarFold, Interval
from rxinvest.fold.candles import interval_end
from rxinvest.fold.resample import ResampleFold
from rxinvest.model import Candle, Trade
from rxinvest.ops._markers import require_markers_

_EMITS = ("closed", "updates")


def to_bars_(
    interval: Interval,
    *,
    grace: timedelta,
    emit: str,
    origin: timedelta,
    markers: bool,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Observable[Any]], Observable[Bar | LateTrade]]:
    if emit not in _EMITS:
        raise ConfigurationError(f"emit must be one of {_EMITS}, not {emit!r}")
    if type(markers) is not bool:
        raise ConfigurationError(f"markers must be True or False, not {markers!r}")
    BarFold(interval, grace=grace, origin=origin)  # refuses bad arguments at the call, not at subscribe

    def operator(source: Observable[Any]) -> Observable[Bar | LateTrade]:
        guarded = source.pipe(require_markers_("to_bars")) if markers else source

        def subscribe(
            observer: abc.ObserverBase[Bar | LateTrade], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            # Per subscription: its own fold, lock and timer. The scheduler: the argument, else the
            # subscribe-time one, else a timer thread.
            clock = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            fold = BarFold(interval, grace=grace, origin=origin, updates=emit == "updates")
            lock = threading.RLock()  # the timer and the source may call at once: on_next is serial
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()
            due: list[Any] = [None]  # the local time the timer is set for

            def send(events: Iterable[Bar | LateTrade]) -> None:
                for event in events:
                    observer.on_next(event)

            def arm() -> None:
                """Set the timer for the next bar to close, if sooner than the one set (under the lock)."""
                deadline = fold.deadline(clock.now)
                if deadline is None or (due[0] is not None and due[0] <= deadline):
                    return
                due[0] = deadline
                timer.disposable = clock.schedule_absolute(deadline, fire)

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    due[0] = None
                    send(fold.advance(clock.now))
                    arm()

            def on_next(item: Any) -> None:
                with lock:
                    if isinstance(item, Trade):
                        send(fold.trade(item, clock.now))
                    elif isinstance(item, Gap):
                        uids = [item.instrument_uid] if item.instrument_uid else fold.open_instruments()
                        send(fold.gap(uids, until=item.until))
                    else:
                        return  # other markers and events (open interest): nothing to fold
                    arm()

            def on_error(error: Exception) -> None:
                with lock:
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    timer.dispose()
                    send(fold.complete())
                    observer.on_completed()

            upstream.disposable = guarded.subscribe(
                on_next, on_error, on_completed, scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, timer)

        return reactivex.create(subscribe)

    return operator


def resample_(interval: Interval) -> Callable[[Observable[Any]], Observable[Bar]]:
    ResampleFold(interval)  # refuses a bad interval at the call

    def operator(source: Observable[Any]) -> Observable[Bar]:
        def subscribe(
            observer: abc.ObserverBase[Bar], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            fold = ResampleFold(interval)  # per subscription

            def on_next(item: Any) -> None:
                if isinstance(item, Candle):
                    if item.time is None:
                        return
                    item = Bar.from_candle(
                        item,
                        end=interval_end(item.time, item.interval),
                        state=BarState.FORMING,
                        closed_by=None,
                    )
                if not isinstance(item, Bar):
                    return  # markers, late trades: nothing to merge
                try:
                    out = fold.bar(item)
                except RxInvestError as error:
                    observer.on_error(error)
                    return
                for bar in out:
                    observer.on_next(bar)

            def on_completed() -> None:
                for bar in fold.complete():
                    observer.on_next(bar)
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return operator
