"""Virtual time for replay: a scheduler whose clock only moves when the replay moves it.

Rules of this module:

* The clock is an aware UTC ``datetime``. It never goes back: :meth:`ReplayScheduler.advance_to` a
  time before ``now`` leaves it where it is (a frame stamped a little before the one read just before
  it, by another reader thread, is delivered at the later time).
* ``advance_to(t)`` runs every action due at or before ``t``, earliest first, actions due at one
  instant in the order they were scheduled, *including* actions due exactly at ``now`` and those that
  running actions schedule meanwhile (at or before ``t``); then the clock reads ``t``. RxPY's own
  ``advance_to`` returns at once when ``t`` equals ``now``, so work scheduled for the current
  instant waits for a later one, and its ``start()`` bumps the clock by a millisecond after 100
  actions at one instant (a burst of auction prints with one timestamp would drift). Neither is
  used: ``start()`` here raises.
* :meth:`ReplayScheduler.submit` is the delivery hand-over's fast path (a plain function due now,
  no disposable): the client's mailboxes use it, as they use the live delivery pool's.
* Not thread-safe beyond what RxPY asks: actions may be scheduled from any thread, but only one
  thread advances the clock (the replay's).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any, TypeVar

from reactivex import abc, typing
from reactivex.scheduler import VirtualTimeScheduler
from reactivex.scheduler.scheduleditem import ScheduledItem

from rxinvest.errors import ConfigurationError

__all__ = ["ReplayScheduler"]

_TState = TypeVar("_TState")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ReplayScheduler(VirtualTimeScheduler):
    """A virtual-time scheduler driven instant by instant with :meth:`advance_to` (never ``start``).

    Pass it as ``scheduler=`` to every time-based operator of a replayed pipeline (idle bar close,
    book staleness, reconciliation timeouts): their timers then fire at the virtual instants they
    fired at live, between the frames that came before and after.
    """

    def __init__(self, initial: datetime = _EPOCH) -> None:
        if initial.tzinfo is None:
            raise ConfigurationError(f"the replay clock starts at an aware datetime, not {initial!r}")
        super().__init__(initial.astimezone(UTC))
        self._sequence = count()
        # Actions due now, in order: (sequence, function); timed ones in a heap:
        # (due, sequence, ScheduledItem).
        self._ready: deque[tuple[int, Callable[[], Any]]] = deque()
        self._timed: list[tuple[datetime, int, ScheduledItem]] = []
        self._advancing = False
        #: Actions run so far (both kinds).
        self.actions = 0

    @property
    def now(self) -> datetime:
        return self._clock  # type: ignore[return-value]

    @classmethod
    def to_datetime(cls, value: typing.AbsoluteOrRelativeTime) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return super().to_datetime(value)

    def submit(self, action: Callable[[], Any]) -> None:
        """Run ``action`` at the current instant, after what is already due (the hand-over's path,
        once a frame: no lock, as ``deque.append`` and ``next`` of a counter are atomic; two threads
        submitting at once get either order, as they would with a lock)."""
        self._ready.append((next(self._sequence), action))

    def schedule_absolute(
        self,
        duetime: typing.AbsoluteTime,
        action: abc.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        due = self.to_datetime(duetime)
        item: ScheduledItem = ScheduledItem(self, state, action, due)
        with self._lock:
            heapq.heappush(self._timed, (due, next(self._sequence), item))
        return item.disposable

    def start(self) -> Any:
        raise ConfigurationError(
            "a ReplayScheduler is driven instant by instant with advance_to(); start() is not used "
            "(RxPY's start() drifts when many actions share an instant)"
        )

    def stop(self) -> None:
        """Nothing to stop: the clock moves only in :meth:`advance_to`."""

    def sleep(self, time: typing.RelativeTime) -> None:
        raise ConfigurationError("a replay's clock cannot be put to sleep: it moves with the recording")

    @property
    def advancing(self) -> bool:
        """Is :meth:`advance_to` running (an action of it is)?"""
        return self._advancing

    @property
    def pending(self) -> int:
        """Actions scheduled and not run yet (due now or later)."""
        with self._lock:
            return len(self._ready) + len(self._timed)

    def next_due(self) -> datetime | None:
        """When the earliest action is due (``now`` if one is due now), or None."""
        with self._lock:
            if self._ready:
                return self._clock  # type: ignore[return-value]
            return self._timed[0][0] if self._timed else None

    def advance_to(self, time: typing.AbsoluteTime) -> None:
        """Run every action due at or before ``time`` (see the module's rules), then read ``time``.

        The replay calls it once a frame: what is due now (the frame's hand-over) is taken in one
        batch under one lock when no timed action could come between."""
        target = time if type(time) is datetime and time.tzinfo is not None else self.to_datetime(time)
        if target < self._clock:  # type: ignore[operator]
            target = self._clock  # type: ignore[assignment]  # never back: what is due now still runs
        if self._advancing:
            raise ConfigurationError("advance_to() called from an action the scheduler is running")
        self._advancing = True
        ready, timed, lock = self._ready, self._timed, self._lock
        try:
            while True:
                if not ready and not (timed and timed[0][0] <= target):
                    break  # nothing due (read without the lock: what comes meanwhile waits a frame)
                with lock:
                    now: datetime = self._clock  # type: ignore[assignment]
                    # What is due now runs first, in the order it was scheduled; then the clock
                    # moves to the earliest timed action due by ``target``.
                    if ready and not (timed and timed[0][0] <= now and timed[0][1] < ready[0][0]):
                        if timed and timed[0][0] <= now:  # one may come between: one at a time
                            batch = [ready.popleft()]
                        else:  # what these schedule comes after all of them: take them together
                            # (one popleft at a time: a submit from another thread meanwhile stays)
                            batch = [ready.popleft() for _ in range(len(ready))]
                        item = None
                    elif timed and timed[0][0] <= target:
                        due, _, item = heapq.heappop(timed)
                        if due > now:
                            self._clock = due
                        batch = None
                    else:
                        break
                if batch is not None:
                    for index, (_, function) in enumerate(batch):
                        self.actions += 1
                        try:
                            function()
                        except BaseException:  # the rest stays due, for the next advance
                            with lock:
                                ready.extendleft(reversed(batch[index + 1 :]))
                            raise
                else:
                    self.actions += 1
                    if not item.is_cancelled():  # type: ignore[union-attr]
                        item.invoke()  # type: ignore[union-attr]
        finally:
            self._advancing = False
        if target > self._clock:  # type: ignore[operator]
            self._clock = target

    def advance_by(self, time: typing.RelativeTime) -> None:
        self.advance_to(self.now + self.to_timedelta(time))

    def run_due(self) -> None:
        """Run what is due now (and what that schedules for now), without moving the clock."""
        self.advance_to(self.now)
