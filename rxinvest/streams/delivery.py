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
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import attrs
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler import ThreadPoolScheduler

from rxinvest.derived import Gap, GapCause, Marker, Recovered, Refused, Subscribed
from rxinvest.errors import ConfigurationError

__all__ = ["Broadcast", "DeliveryScheduler", "DeliveryStats", "Mailbox", "Policy"]

log = logging.getLogger("rxinvest.delivery")

_BATCH = 256  # items a drain takes from the queue at once
_SLICE = 0.005  # seconds a drain delivers before it gives its thread back
_WARN_BACKLOG = 10_000  # an unbounded mailbox warns at this backlog, then at 10x, 100x ...
_MARKER_TYPES = (Gap, Recovered, Refused, Subscribed)


class Policy(enum.Enum):
    ALL = "all"
    LATEST = "latest"


class DeliveryScheduler(ThreadPoolScheduler):
    """A pool of named delivery threads; ``schedule`` submits straight to the pool.

    Threads are started as work needs them, up to ``max_workers``: a subscriber that sleeps in
    ``on_next`` holds one thread for a time slice at most (see :meth:`Mailbox._drain`), and the
    others get threads of their own meanwhile. (``ThreadPoolScheduler.schedule`` builds an
    event-loop scheduler per action: too slow for a hand-over that happens thousands of times a
    second.)
    """

    def __init__(self, max_workers: int = 32, name: str = "rxinvest-delivery") -> None:
        super().__init__(max_workers)
        self._name = name
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
        """Run ``function`` on a pool thread, without an RxPY action around it. Once the pool is
        shut down (its client closed), on a thread of its own: a drain that gave its thread back
        with events still to deliver goes on, and its subscriber gets them and its completion."""
        try:
            self.executor.submit(function)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            threading.Thread(target=function, name=f"{self._name}-closing", daemon=True).start()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=False)


class _End:
    """The queue's last item: ``on_error(error)``, or ``on_completed()`` when ``error`` is None."""

    __slots__ = ("error",)

    def __init__(self, error: Exception | None) -> None:
        self.error = error


class _Hole:
    """Events dropped over a mailbox's limit since the last drain: how many, and their times."""

    __slots__ = ("count", "since", "until")

    def __init__(self, time: datetime) -> None:
        self.count = 0
        self.since = self.until = time

    def add(self, time: datetime) -> None:
        self.count += 1
        self.since, self.until = min(self.since, time), max(self.until, time)


class Mailbox:
    """The queue between the reader thread(s) and one observer. Thread-safe.

    ``limit`` bounds the backlog of a ``ALL`` mailbox (None: unbounded, for events that are never
    dropped); ``markers`` says whether the observer gets :mod:`~rxinvest.derived.markers`; ``name``
    is what log lines call the subscription.
    """

    def __init__(
        self,
        observer: abc.ObserverBase[Any],
        scheduler: abc.SchedulerBase,
        *,
        policy: Policy = Policy.ALL,
        key: Callable[[Any], Hashable] | None = None,
        limit: int | None = None,
        markers: bool = False,
        name: str = "a subscription",
    ) -> None:
        if limit is not None and limit < 2:
            raise ConfigurationError(f"a backlog limit must be at least 2 events, not {limit}")
        self._observer = observer
        # A scheduler that can run a plain function (the client's delivery pool) skips RxPY's
        # per-action disposables: the hand-over happens thousands of times a second.
        submit = getattr(scheduler, "submit", None)
        self._submit: Callable[[Callable[[], None]], Any] = submit or (
            lambda fn: scheduler.schedule(lambda *_: fn())
        )
        self._policy = policy
        self._key = key
        self._limit = limit
        self.markers = markers
        self.name = name
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._latest: dict[Hashable, Any] = {}  # LATEST: key -> newest event waiting
        self._carry: list[Any] = []  # taken by a drain that gave its thread back; delivered first
        self._hole: _Hole | None = None  # a run of dropped events not yet reported
        self._hole_at = 0  # how many queued items (markers only) stand before that run
        # The backlog past which put() must act: the limit (drop), or the next warning (unbounded).
        self._threshold = limit if limit is not None else _WARN_BACKLOG - 1
        self._scheduled = False
        self._stopped = False  # a terminal item is queued or delivered: nothing more goes in
        self._disposed = False  # the subscriber left: nothing more comes out either
        self.pushed = 0  # events handed in by the reader
        self.delivered = 0  # events the observer received (markers are not counted)
        self.conflated = 0  # events replaced by a newer one while they waited (LATEST)
        self.dropped = 0  # events discarded over the limit (ALL with a limit)
        self.failed = 0  # events whose on_next raised
        self.max_backlog = 0  # the longest the queue was when a drain took from it (see stats())

    @property
    def backlog(self) -> int:
        """Events waiting for the observer now."""
        return len(self._queue) + len(self._carry)

    def stats(self) -> DeliveryStats:
        """The counters now (read without the lock: each figure is exact, together they are close)."""
        return DeliveryStats(
            name=self.name,
            policy=self._policy,
            limit=self._limit,
            backlog=self.backlog,
            max_backlog=max(self.max_backlog, self.backlog),
            pushed=self.pushed,
            delivered=self.delivered,
            conflated=self.conflated,
            dropped=self.dropped,
            failed=self.failed,
        )

    def put(self, event: Any) -> bool:
        """Queue one event without scheduling; True if the mailbox needs a :meth:`kick`.

        A reader thread puts every event of a burst of frames, then kicks the mailboxes once: one
        scheduled drain per burst, not one per event.
        """
        with self._lock:
            if self._stopped:
                return False
            self.pushed += 1
            queue = self._queue
            if self._policy is Policy.LATEST:
                key = self._key(event) if self._key else None
                if key in self._latest:
                    self._latest[key] = event
                    self.conflated += 1
                    return False
                self._latest[key] = event
                queue.append(key)
            else:
                queue.append(event)
                if len(queue) > self._threshold:
                    self._over(len(queue))
            return not self._scheduled

    def mark(self, marker: Marker) -> bool:
        """Queue an in-band marker (if the observer takes them): never conflated, never dropped.
        True if the mailbox needs a :meth:`kick`."""
        with self._lock:
            if self._stopped or not self.markers:
                return False
            if self._policy is Policy.LATEST:
                key = _MarkerKey()  # a key of its own: nothing replaces a marker
                self._latest[key] = marker
                self._queue.append(key)
            else:
                self._queue.append(marker)
            return not self._scheduled

    def _over(self, backlog: int) -> None:
        """The backlog passed the threshold (under the lock): drop over the limit, or warn."""
        if self._limit is not None:
            self._drop_oldest()  # back at the limit
            return
        log.warning("%s lags: %d events wait, none is dropped", self.name, backlog)
        self._threshold = backlog * 10 - 1

    def _drop_oldest(self) -> None:
        queue = self._queue
        index = 0
        while type(queue[index]) in _MARKER_TYPES or type(queue[index]) is _End:
            index += 1  # markers and the end are never dropped
        victim = queue[index]
        del queue[index]
        self.dropped += 1
        at = getattr(victim, "time", None) or datetime.now(UTC)
        if self._hole is None:  # a new run of losses begins here; it ends when a drain reports it
            self._hole, self._hole_at = _Hole(at), index
            log.warning("%s lags more than %d events: dropping the oldest", self.name, self._limit)
        self._hole.add(at)

    def kick(self) -> None:
        """Schedule a drain if there is work and none is scheduled."""
        with self._lock:
            if self._scheduled or not (self._queue or self._carry):
                return
            self._scheduled = True
        self._submit(self._drain)

    def fail(self, error: Exception) -> None:
        """Queue ``on_error``; what was queued before is delivered first."""
        self._terminal(_End(error))

    def complete(self) -> None:
        self._terminal(_End(None))

    def is_stopped(self) -> bool:
        """Has it ended (disposed, completed or failed)? Nothing more goes in."""
        return self._stopped

    def stop(self) -> None:
        """The subscriber left: deliver nothing more, queued items included."""
        with self._lock:
            self._stopped = self._disposed = True
            self._queue.clear()
            self._latest.clear()
            self._carry = []

    def _terminal(self, end: _End) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.append(end)
        self.kick()

    def _take(self) -> list[Any] | None:
        """The next batch to deliver (None: nothing, the drain ends). Under the lock."""
        if self._carry:
            batch, self._carry = self._carry, []
            return batch
        queue = self._queue
        if not queue:
            self._scheduled = False
            return None
        if len(queue) > self.max_backlog:  # the queue only grows between takes: this is its peak
            self.max_backlog = len(queue)
        batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
        if self._policy is Policy.LATEST:
            latest = self._latest
            batch = [latest.pop(k) if k in latest else k for k in batch]
        hole = self._hole
        if hole is not None and self._hole_at > len(batch):
            self._hole_at -= len(batch)  # the run of losses comes after this batch
        elif hole is not None:
            self._hole = None
            if self.markers:  # where the run began: later markers of the run stay after it
                gap = Gap(cause=GapCause.OVERFLOW, since=hole.since, until=hole.until, dropped=hole.count)
                batch.insert(self._hole_at, gap)
        return batch

    def _drain(self) -> None:
        """Deliver batches until the queue is empty or the time slice is used up; then give the
        thread back (the rest is carried to a new drain at the back of the scheduler's queue), so
        that no number of slow subscribers can hold every delivery thread.

        This loop runs for every event: what it does per item is kept to locals and one clock read.
        """
        observer, clock, markers = self._observer, time.monotonic, self.markers
        deadline = clock() + _SLICE
        while True:
            with self._lock:
                batch = None if self._disposed else self._take()
            if batch is None:
                return
            items = iter(batch)
            delivered = 0
            for item in items:
                if type(item) is _End:
                    self.delivered += delivered
                    self._finish(item)
                    return
                if self._disposed:
                    return
                try:
                    observer.on_next(item)
                    if not (markers and type(item) in _MARKER_TYPES):
                        delivered += 1
                except Exception:  # a bug in the subscriber's code must not kill delivery to others
                    self.failed += 1
                    log.exception("%s: on_next raised; the event is skipped", self.name)
                except BaseException:
                    log.critical("%s: on_next raised a BaseException; the subscription stops", self.name)
                    self.stop()
                    raise
                if clock() > deadline:
                    break
            self.delivered += delivered
            rest = list(items)  # what the slice left, if it ran out
            if rest or clock() > deadline:
                with self._lock:
                    self._carry = [] if self._disposed else rest
                self._submit(self._drain)  # still scheduled: the same drain, later (or it just ends)
                return

    def _finish(self, end: _End) -> None:
        with self._lock:
            self._queue.clear()
            self._carry = []
            self._scheduled = False
        try:
            if end.error is not None:
                self._observer.on_error(end.error)
            else:
                self._observer.on_completed()
        except Exception:
            log.exception("%s: on_error/on_completed raised", self.name)


@attrs.frozen
class DeliveryStats:
    """One subscription's delivery, as counted so far: what waits (``backlog``, and the most that
    ever waited), what came in, what its observer got, what was conflated, dropped over the limit,
    or skipped because ``on_next`` raised. ``limit`` is the backlog bound (None: never dropped)."""

    name: str
    policy: Policy
    limit: int | None
    backlog: int
    max_backlog: int
    pushed: int
    delivered: int
    conflated: int
    dropped: int
    failed: int


class _MarkerKey:
    """A LATEST mailbox's queue key for a marker: unique, so no event or marker replaces it."""

    __slots__ = ()


class Broadcast:
    """A hot feed (the client's statuses): each subscriber gets its own mailbox on the scheduler,
    so that a reader thread publishing to it never runs subscriber code, of at most ``limit``
    events (the oldest dropped past it, and counted). Thread-safe."""

    def __init__(self, scheduler: abc.SchedulerBase, *, limit: int | None, name: str) -> None:
        self._scheduler = scheduler
        self._limit = limit
        self._name = name
        self._lock = threading.Lock()
        self._boxes: list[Mailbox] = []

    def mailboxes(self) -> list[Mailbox]:
        """The subscribers' mailboxes now."""
        with self._lock:
            return list(self._boxes)

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
            box = Mailbox(observer, self._scheduler, limit=self._limit, name=self._name)
            with self._lock:
                self._boxes.append(box)

            def detach() -> None:
                box.stop()
                with self._lock:
                    if box in self._boxes:
                        self._boxes.remove(box)

            return Disposable(detach)

        return reactivex.create(subscribe)
