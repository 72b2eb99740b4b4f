"""Hand-over from reader threads to user pipelines: one mailbox per Rx subscription.

A reader thread only appends to mailboxes (a lock and a deque append: microseconds, never user code).
A mailbox with work schedules one drain on the delivery scheduler; the drain takes everything queued
and calls the observer for each item, so under load one scheduled task delivers a whole batch (stock
``observe_on`` schedules a task per item and costs 5-10x more). Per mailbox, calls never overlap and
keep arrival order: the Rx contract.

Backpressure (RxPY has none, so each source picks a policy):

* ``ALL``: every event is kept, however far the subscriber lags: order states, fills, positions,
  portfolios (never dropped), trades and candles.
* ``LATEST``: events with the same key replace each other while they wait (the newest book of an
  instrument and depth, the newest last price): a slow subscriber sees fewer, newer snapshots, never
  stale ones. :attr:`Mailbox.conflated` counts the replaced events.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import ThreadPoolScheduler

__all__ = ["Broadcast", "DeliveryScheduler", "Mailbox", "Policy"]

log = logging.getLogger("rxinvest.delivery")


class Policy(enum.Enum):
    ALL = "all"
    LATEST = "latest"


class DeliveryScheduler(ThreadPoolScheduler):
    """A pool of named delivery threads; ``schedule`` submits straight to the pool.

    (``ThreadPoolScheduler.schedule`` builds an event-loop scheduler per action: too slow for a
    hand-over that happens thousands of times a second.)
    """

    def __init__(self, max_workers: int = 4, name: str = "rxinvest-delivery") -> None:
        super().__init__(max_workers)
        self.executor.shutdown(wait=False)
        self.executor = ThreadPoolExecutor(max_workers, thread_name_prefix=name)

    def schedule(self, action: Any, state: Any = None) -> abc.DisposableBase:
        assignment = SingleAssignmentDisposable()

        def run() -> None:
            if not assignment.is_disposed:
                assignment.disposable = self.invoke_action(action, state)

        future = self.executor.submit(run)

        def cancel() -> None:
            future.cancel()

        return CompositeDisposable(assignment, Disposable(cancel))

    def submit(self, function: Callable[[], None]) -> None:
        """Run ``function`` on a pool thread, without an RxPY action around it."""
        self.executor.submit(function)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=False)


class _End:
    """The queue's last item: ``on_error(error)``, or ``on_completed()`` when ``error`` is None."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class Mailbox:
    """The queue between the reader thread(s) and one observer. Thread-safe."""

    def __init__(
        self,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase,
        *,
        policy: Policy = Policy.ALL,
        key: Callable[[Any], Hashable] | None = None,
    ) -> None:
        self._observer = observer
        # A scheduler that can run a plain function (the client's delivery pool) skips RxPY's
        # per-action disposables: the hand-over happens thousands of times a second.
        submit = getattr(scheduler, "submit", None)
        self._submit: Callable[[Callable[[], None]], Any] = submit or (
            lambda fn: scheduler.schedule(lambda *_: fn())
        )
        self._policy = policy
        self._key = key
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._latest: dict[Hashable, Any] = {}  # LATEST: key -> newest event waiting
        self._scheduled = False
        self._stopped = False  # a terminal item is queued or delivered: nothing more goes in
        self.pushed = 0  # events handed in by the reader
        self.delivered = 0  # events the observer received
        self.conflated = 0  # events replaced by a newer one while they waited (LATEST)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def put(self, event: Any) -> bool:
        """Queue one event without scheduling; True if the mailbox needs a :meth:`kick`.

        A reader thread puts every event of a burst of frames, then kicks the mailboxes once: one
        scheduled drain per burst, not one per event.
        """
        with self._lock:
            if self._stopped:
                return False
            self.pushed += 1
            if self._policy is Policy.LATEST:
                key = self._key(event) if self._key else None
                if key in self._latest:
                    self._latest[key] = event
                    self.conflated += 1
                    return False
                self._latest[key] = event
                self._queue.append(key)
            else:
                self._queue.append(event)
            return not self._scheduled

    def kick(self) -> None:
        """Schedule a drain if there is work and none is scheduled."""
        with self._lock:
            if self._scheduled or not self._queue:
                return
            self._scheduled = True
        self._submit(self._drain)

    def fail(self, error: Exception) -> None:
        """Queue ``on_error``; what was queued before is delivered first."""
        self._terminal(_End(error))

    def complete(self) -> None:
        self._terminal(_End(None))

    def stop(self) -> None:
        """The subscriber left: deliver nothing more, queued items included."""
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._latest.clear()

    def _terminal(self, end: _End) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.append(end)
        self.kick()

    def _drain(self) -> None:
        observer = self._observer
        while True:
            with self._lock:
                if not self._queue:
                    self._scheduled = False
                    return
                batch = list(self._queue)
                self._queue.clear()
                if self._policy is Policy.LATEST:
                    latest = self._latest
                    batch = [latest.pop(k) if k in latest else k for k in batch]
            for item in batch:
                if type(item) is _End:
                    self._finish(item)
                    return
                try:
                    observer.on_next(item)
                    self.delivered += 1
                except Exception:  # a bug in the subscriber's code must not kill delivery to others
                    log.exception("a subscriber's on_next raised; the event is skipped")

    def _finish(self, end: _End) -> None:
        with self._lock:
            self._queue.clear()
            self._scheduled = False
        try:
            if end.error is not None:
                self._observer.on_error(end.error)
            else:
                self._observer.on_completed()
        except Exception:
            log.exception("a subscriber's on_error/on_completed raised")


class Broadcast:
    """A hot feed (the client's statuses): each subscriber gets its own mailbox on the scheduler,
    so that a reader thread publishing to it never runs subscriber code. Thread-safe."""

    def __init__(self, scheduler: abc.SchedulerBase) -> None:
        self._scheduler = scheduler
        self._lock = threading.Lock()
        self._boxes: list[Mailbox] = []

    def emit(self, event: Any) -> None:
        with self._lock:
            boxes = list(self._boxes)
        for box in boxes:
            if box.put(event):
                box.kick()

    def complete(self) -> None:
        with self._lock:
            boxes, self._boxes = self._boxes, []
        for box in boxes:
            box.complete()

    def observable(self) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            box = Mailbox(observer, self._scheduler)
            with self._lock:
                self._boxes.append(box)

            def detach() -> None:
                box.stop()
                with self._lock:
                    if box in self._boxes:
                        self._boxes.remove(box)

            return Disposable(detach)

        return reactivex.create(subscribe)
