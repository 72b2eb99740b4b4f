"""Marble tests of operators on rxinvest's events, on reactivex's ``TestScheduler``.

::

    outcome = run_marbles(ops.to_bars(timedelta(minutes=1), markers=False), timeline(tape))
    outcome.values      # ((virtual second, Bar or LateTrade), ...)

Rules of this module:

* **One clock.** Virtual time is in seconds, and virtual second ``N`` is the instant
  :data:`EPOCH` + ``N`` s, which is what a ``TestScheduler``'s ``now`` says. An event whose exchange
  time is ``at(N)`` arriving at virtual second ``N`` is live to the operators that keep an exchange
  clock (``to_bars``) or measure time on the scheduler (``book_health``'s staleness,
  ``reconcile_positions``' timeout). :func:`at` and :func:`seconds_of` convert.
* **Timelines.** A timeline is a sequence of ``(virtual second, item)`` pairs, the item a value,
  :data:`COMPLETED`, or a :class:`Failure`; reactivex's ``Recorded`` messages
  (``ReactiveTest.on_next(230, x)``) are taken too. Items fall due in time order; items of one
  instant in their order in the timeline, and those of an earlier timeline before a later one's.
  The clock keeps time to the microsecond (it is a ``datetime``): so do the times reported.
* **The run.** :func:`run_marbles` makes each timeline a hot Observable, subscribes at
  ``subscribe_at`` (before the items of that instant: earlier items are not seen) with the
  ``TestScheduler`` as the subscribe-time scheduler, so an operator that resolves its scheduler at
  subscribe time (every time-based operator of ``rxinvest.ops``) runs on virtual time without
  being given it, and disposes at ``until`` (before the items of that instant).
* **No drift.** The clock is driven with ``advance_to``, never ``start()``: reactivex's ``start()``
  moves the clock on by a tick once more than 100 items fall due at one instant, as a burst of
  prints with one timestamp does, and time-based operators would then see time that never passed.
* **One thread.** Everything runs on the calling thread, in the call; nothing needs hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeAlias, TypeVar

import attrs
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.notification import OnCompleted, OnError, OnNext
from reactivex.observable.marbles import parse
from reactivex.testing import TestScheduler
from reactivex.testing.recorded import Recorded

from rxinvest.errors import ConfigurationError

__all__ = [
    "COMPLETED",
    "EPOCH",
    "LINGER",
    "Completed",
    "Failure",
    "Outcome",
    "Timeline",
    "at",
    "diagram",
    "run_marbles",
    "seconds_of",
    "timeline",
]

_T = TypeVar("_T")

#: Virtual second 0: the epoch of the ``TestScheduler``'s clock (``datetime.fromtimestamp(0, UTC)``).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: How long a run goes on after the last item of its timelines when no ``until`` is given: time
#: enough for the timers of rxinvest's operators at their defaults (a bar's grace, a book's
#: staleness, a fill's timeout) to fire.
LINGER = 60.0


@attrs.frozen
class Completed:
    """The timeline's source completes (the item :data:`COMPLETED`)."""


#: A timeline item: the source completes here.
COMPLETED = Completed()


@attrs.frozen
class Failure:
    """A timeline item: the source fails here with ``error``."""

    error: Exception


#: ``(virtual second, item)`` pairs, or reactivex ``Recorded`` messages.
Timeline: TypeAlias = Iterable[tuple[float, Any] | Recorded[Any]]


@attrs.frozen
class Outcome(Generic[_T]):
    """What the observer of :func:`run_marbles` saw.

    ``values`` are the ``(virtual second, value)`` pairs of its ``on_next`` calls, in call order;
    ``completed`` the virtual second of ``on_completed`` (None: it did not complete before
    ``until``), ``error`` and ``error_at`` the exception of ``on_error`` and its second;
    ``kinds`` the notifications in order, one letter each as reactivex names them: ``"N"``
    (next), ``"C"`` (completed), ``"E"`` (error), e.g. ``"NNC"``.
    """

    values: tuple[tuple[float, _T], ...]
    completed: float | None = None
    error: Exception | None = None
    error_at: float | None = None
    kinds: str = ""

    @property
    def items(self) -> list[_T]:
        """The values without their times."""
        return [value for _, value in self.values]


def at(seconds: float) -> datetime:
    """The instant (aware UTC) of virtual second ``seconds``: exchange times for events in a
    timeline, so that they look live at the moment they arrive."""
    return EPOCH + timedelta(seconds=seconds)


def seconds_of(moment: datetime) -> float:
    """The virtual second of an aware instant (the inverse of :func:`at`)."""
    return (moment - EPOCH) / timedelta(seconds=1)


def _exchange_time(event: object) -> datetime | None:
    """An event's own time: a candle's last trade, else ``time`` (trades, books, prices, statuses),
    ``date`` (position reports), ``until`` (a gap ends when it is known); None for the rest."""
    for name in ("last_trade_ts", "time", "date", "until"):
        value = getattr(event, name, None)
        if isinstance(value, datetime):
            return value
    return None


def timeline(events: Iterable[object], *, delay: float = 0.0) -> list[tuple[float, object]]:
    """A timeline of events delivered in the given order, each at its own time as it arrives live.

    An event arrives ``delay`` seconds after its exchange time (a candle's ``last_trade_ts``, else
    its ``time``, ``date`` or, for a ``Gap``, ``until``), but never before the event ahead of it: a
    late print arrives together with the trade before it. An event with no time of its own (a
    ``Subscribed`` marker, an ``OrderState``, a ``PositionsResponse``) arrives with the event
    before it, or with the first timed event when none is before it (at 0 if none has a time).
    """
    pending: list[object] = []
    out: list[tuple[float, object]] = []
    for event in events:
        moment = _exchange_time(event)
        if moment is None:
            if out:
                out.append((out[-1][0], event))
            else:
                pending.append(event)
            continue
        second = seconds_of(moment) + delay
        if out:
            second = max(second, out[-1][0])
        out.extend((second, early) for early in pending)
        pending.clear()
        out.append((second, event))
    out.extend((0.0, early) for early in pending)
    return out


def diagram(
    text: str,
    values: Mapping[str | float, Any] | None = None,
    *,
    start: float = 0.0,
    timespan: float = 1.0,
    error: Exception | None = None,
) -> list[tuple[float, Any]]:
    """A timeline from a marble diagram: each character ``timespan`` seconds from ``start``.

    As in reactivex: ``-`` lets time pass, a name is an item (looked up in ``values``; numbers
    not found there stand for themselves), ``(a,b)`` items at one instant, ``|`` completion
    (:data:`COMPLETED`), ``#`` failure (a :class:`Failure` of ``error``, by default
    ``Exception("error")``); spaces align diagrams and take no time. Example:
    ``diagram("--a-(bc)--|", {"a": trade1, "b": trade2, "c": trade3}, start=200)``.
    """
    out: list[tuple[float, Any]] = []
    for time, notification in parse(text, timespan=timespan, time_shift=start, lookup=values, error=error):
        second = time.total_seconds() if isinstance(time, timedelta) else float(time)
        if isinstance(notification, OnNext):
            out.append((second, notification.value))
        elif isinstance(notification, OnError):
            out.append((second, Failure(notification.exception)))
        else:
            out.append((second, COMPLETED))
    return out


def _recorded(item: tuple[float, Any] | Recorded[Any]) -> Recorded[Any]:
    if isinstance(item, Recorded):
        return item
    second, value = item
    if isinstance(value, Completed):
        notification: Any = OnCompleted()
    elif isinstance(value, Failure):
        notification = OnError(value.error)
    else:
        notification = OnNext(value)
    return Recorded(second, notification)  # type: ignore[arg-type]  # float seconds, not ticks


def run_marbles(
    operator: Callable[..., Observable[_T]],
    *timelines: Timeline,
    subscribe_at: float = 0.0,
    until: float | None = None,
) -> Outcome[_T]:
    """Feed timelines through ``operator`` under a ``TestScheduler`` and say what came out, when.

    ``operator`` gets one hot Observable per timeline: a pipeable operator takes one
    (``run_marbles(ops.quotes(), books)``), a function of several sources several
    (``run_marbles(lambda o, p: ops.reconcile_positions(o, p, markers=False), orders, positions)``).
    It is subscribed at virtual second ``subscribe_at`` and disposed at ``until`` (default: the
    last item's second plus :data:`LINGER`); times in seconds, see the module's rules.

    Returns:
        An :class:`Outcome`: the observer's values with their virtual seconds, its completion or
        error. An exception raised by ``operator`` itself (building the pipeline, or in a
        subscribe call) propagates from here.

    Raises:
        ConfigurationError: an item before virtual second 0, or ``until`` not after
            ``subscribe_at``.
    """
    lines = [[_recorded(item) for item in line] for line in timelines]
    times = [float(message.time) for line in lines for message in line]
    if any(t < 0 for t in (*times, subscribe_at)):
        raise ConfigurationError("marble times are virtual seconds from 0: none may be negative")
    end = until if until is not None else max([subscribe_at, *times]) + LINGER
    if end <= subscribe_at:
        raise ConfigurationError(f"until ({end}) must come after subscribe_at ({subscribe_at})")

    scheduler = TestScheduler()
    observer = scheduler.create_observer()
    sources: list[Observable[Any]] = []
    subscription: list[abc.DisposableBase] = []

    def subscribe(_: abc.SchedulerBase, __: Any = None) -> abc.DisposableBase:
        subscription.append(operator(*sources).subscribe(observer, scheduler=scheduler))
        return Disposable()

    def dispose(_: abc.SchedulerBase, __: Any = None) -> abc.DisposableBase:
        for each in subscription:
            each.dispose()
        return Disposable()

    # Scheduled before the sources exist, so that at one instant they run before any item.
    scheduler.schedule_absolute(subscribe_at, subscribe)
    scheduler.schedule_absolute(end, dispose)
    sources.extend(scheduler.create_hot_observable(line) for line in lines)
    scheduler.advance_to(end)
    return _outcome(observer.messages)


def _outcome(messages: Sequence[Recorded[Any]]) -> Outcome[Any]:
    values: list[tuple[float, Any]] = []
    completed: float | None = None
    error: Exception | None = None
    error_at: float | None = None
    for message in messages:
        notification: Any = message.value
        if notification.kind == "N":
            values.append((float(message.time), notification.value))
        elif notification.kind == "C" and completed is None:
            completed = float(message.time)
        elif notification.kind == "E" and error_at is None:
            error, error_at = notification.exception, float(message.time)
    kinds = "".join(message.value.kind for message in messages)  # type: ignore[union-attr]
    return Outcome(tuple(values), completed, error, error_at, kinds)
