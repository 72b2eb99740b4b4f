"""The bar operators: thin adapters of the folds in :mod:`rxinvest.fold` (bars, resample, sized,
server_candles), each with its state per subscription."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
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
from rxinvest.fold.server_candles import ClosedCandles
from rxinvest.fold.sized import TickBarFold, VolumeBarFold
from rxinvest.model import Candle, Trade, TradingStatus
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
            armed: list[Any] = [None]  # the fold's next due time the timer was set for

            def send(events: Iterable[Bar | LateTrade]) -> None:
                for event in events:
                    observer.on_next(event)

            def arm() -> None:
                """Set the timer for the next bar to close (under the lock); a no-op while the
                fold's next due time is the one the timer is set for, which is most trades."""
                if fold.next_due == armed[0]:
                    return
                armed[0] = fold.next_due
                deadline = fold.deadline(clock.now)
                if deadline is not None:
                    timer.disposable = clock.schedule_absolute(deadline, fire)

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    armed[0] = None
                    send(fold.advance(clock.now))
                    arm()

            def on_next(item: Any) -> None:
                if type(item) is Trade:  # the usual item first
                    with lock:
                        for event in fold.trade(item, clock.now):
                            observer.on_next(event)
                        if fold.next_due != armed[0]:
                            arm()
                    return
                if isinstance(item, Gap):
                    with lock:
                        uids = [item.instrument_uid] if item.instrument_uid else fold.open_instruments()
                        send(fold.gap(uids, until=item.until))
                        arm()
                elif isinstance(item, TradingStatus):  # merged in by the caller: sessions (rule 6)
                    with lock:
                        send(fold.status(item))
                        arm()
                # other markers and events (open interest): nothing to fold

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


def _untimed(
    make: Callable[[], Any], step: Callable[[Any, Any], list[Bar] | None]
) -> Callable[[Observable[Any]], Observable[Bar]]:
    """An operator around a fold without a clock: ``make()`` a fold per subscription, ``step(fold,
    item)`` its bars for an item (None: not its kind of item), ``fold.complete()`` at completion.
    Errors of rxinvest (bad data) go to ``on_error``."""

    def operator(source: Observable[Any]) -> Observable[Bar]:
        def subscribe(
            observer: abc.ObserverBase[Bar], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            fold = make()  # per subscription

            def on_next(item: Any) -> None:
                try:
                    out = step(fold, item)
                except RxInvestError as error:
                    observer.on_error(error)
                    return
                for bar in out or ():
                    observer.on_next(bar)

            def on_completed() -> None:
                for bar in fold.complete():
                    observer.on_next(bar)
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return operator


def resample_(interval: Interval) -> Callable[[Observable[Any]], Observable[Bar]]:
    ResampleFold(interval)  # refuses a bad interval at the call

    def step(fold: ResampleFold, item: Any) -> list[Bar] | None:
        if isinstance(item, Candle) and item.time is not None:
            end = interval_end(item.time, item.interval)
            return fold.bar(Bar.from_candle(item, end=end, state=BarState.FORMING, closed_by=None))
        return fold.bar(item) if isinstance(item, Bar) else None  # markers, late trades: nothing to merge

    return _untimed(lambda: ResampleFold(interval), step)


def sized_(make: Callable[[], TickBarFold | VolumeBarFold]) -> Callable[[Observable[Any]], Observable[Bar]]:
    make()  # refuses a bad size at the call

    def step(fold: TickBarFold | VolumeBarFold, item: Any) -> list[Bar] | None:
        return fold.trade(item) if type(item) is Trade else None

    return _untimed(make, step)


def closed_candles_(
    grace: timedelta, scheduler: abc.SchedulerBase | None
) -> Callable[[Observable[Any]], Observable[Bar]]:
    ClosedCandles(grace=grace)  # refuses a bad grace at the call

    def operator(source: Observable[Any]) -> Observable[Bar]:
        def subscribe(
            observer: abc.ObserverBase[Bar], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            clock = scheduler or subscribe_scheduler or TimeoutScheduler.singleton()
            fold = ClosedCandles(grace=grace)
            lock = threading.RLock()
            timer = SerialDisposable()
            # Exchange time minus local time, from the latest trade a candle reports (as BarFold).
            skew: list[timedelta | None] = [None]

            def exchange_now() -> datetime:
                return clock.now + (skew[0] or timedelta(0))

            def send(bars: Iterable[Bar]) -> None:
                for bar in bars:
                    observer.on_next(bar)

            armed: list[Any] = [None]  # the deadline the timer is set for

            def arm() -> None:
                """Set the timer for the next candle to close, unless it is set for that already:
                a timer per candle would cost a thread each with a timer-thread scheduler."""
                due = fold.deadline()
                if due is None or due == armed[0]:
                    return
                armed[0] = due
                timer.disposable = clock.schedule_absolute(due - (skew[0] or timedelta(0)), fire)

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    armed[0] = None
                    send(fold.advance(exchange_now()))
                    arm()

            def on_next(item: Any) -> None:
                if not isinstance(item, Candle):
                    return  # markers: the candles of a lost connection are closed by the timer
                with lock:
                    seen = item.last_trade_ts
                    if seen is not None and (skew[0] is None or seen > exchange_now()):
                        skew[0] = seen - clock.now
                    try:
                        out = fold.candle(item, exchange_now())
                    except RxInvestError as error:
                        observer.on_error(error)
                        return
                    send(out)
                    arm()

            def on_completed() -> None:
                with lock:
                    timer.dispose()
                    send(fold.complete())
                    observer.on_completed()

            upstream = source.subscribe(
                on_next, observer.on_error, on_completed, scheduler=subscribe_scheduler
            )
            return CompositeDisposable(upstream, timer)

        return reactivex.create(subscribe)

    return operator
