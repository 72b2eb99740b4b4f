"""Mailboxes on their own: bounded backlogs with in-band gaps, markers, fairness, subscriber errors."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest.derived import Gap, GapCause, Refused, Subscribed
from rxinvest.errors import ConfigurationError
from rxinvest.streams import DeliveryScheduler, Mailbox, Policy
from rxinvest.streams.delivery import Broadcast

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)


class Manual:
    """A scheduler that runs what is submitted only when the test says so."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def submit(self, function: Callable[[], None]) -> None:
        self.pending.append(function)

    def schedule(self, action: Any, state: Any = None) -> None:  # pragma: no cover - never used
        raise AssertionError("Mailbox must use submit")

    def run(self) -> None:
        for _ in range(10_000):  # bounded: a drain resubmits itself at most once per slice
            if not self.pending:
                return
            self.pending.pop(0)()
        raise AssertionError("the drains never ended")


class Observer:
    def __init__(self, on_next: Callable[[Any], None] | None = None) -> None:
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self.completed = False
        self._on_next = on_next

    def on_next(self, item: Any) -> None:
        if self._on_next:
            self._on_next(item)
        self.items.append(item)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        self.completed = True


def trade(i: int) -> m.Trade:
    return m.Trade(instrument_uid="u", price=Decimal(i), quantity=i, time=T0 + timedelta(seconds=i))


def fill(box: Mailbox, events: list[Any]) -> None:
    for event in events:
        if box.put(event):
            box.kick()


@given(limit=st.integers(2, 50), count=st.integers(0, 200), markers=st.booleans())
def test_a_bounded_mailbox_keeps_the_newest_and_marks_the_hole(limit: int, count: int, markers: bool) -> None:
    """Whatever the limit and the burst, the observer gets the newest ``limit`` events in order,
    preceded (with markers) by one Gap that counts and dates exactly the dropped ones."""
    scheduler, observer = Manual(), Observer()
    box = Mailbox(observer, scheduler, limit=limit, markers=markers)  # type: ignore[arg-type]
    events = [trade(i) for i in range(count)]
    fill(box, events)
    assert box.backlog <= limit
    scheduler.run()
    kept, lost = events[max(0, count - limit) :], events[: max(0, count - limit)]
    if lost and markers:
        gap = Gap(cause=GapCause.OVERFLOW, since=lost[0].time, until=lost[-1].time, dropped=len(lost))
        assert observer.items == [gap, *kept]
    else:
        assert observer.items == kept
    assert (box.dropped, box.delivered) == (len(lost), len(kept))


def test_markers_are_never_dropped_nor_conflated() -> None:
    scheduler, observer = Manual(), Observer()
    box = Mailbox(observer, scheduler, limit=3, markers=True)  # type: ignore[arg-type]
    box.mark(Subscribed(stream="s", targets=("a",)))
    fill(box, [trade(i) for i in range(10)])
    scheduler.run()
    # The limit counts what waits, markers included: the marker and the two newest trades stay,
    # and the gap stands where the losses began, after the marker that came before them.
    assert observer.items[0] == Subscribed(stream="s", targets=("a",))
    assert observer.items[1] == Gap(
        cause=GapCause.OVERFLOW, since=trade(0).time, until=trade(7).time, dropped=8
    )
    assert observer.items[2:] == [trade(8), trade(9)]

    latest, seen = Manual(), Observer()
    conflating = Mailbox(seen, latest, policy=Policy.LATEST, key=lambda e: e.instrument_uid, markers=True)  # type: ignore[arg-type]
    refused = Refused(target="X", status="S", message="m")
    fill(conflating, [trade(1)])
    conflating.mark(refused)
    conflating.mark(refused)  # equal markers are two markers
    fill(conflating, [trade(2), trade(3)])
    latest.run()
    assert seen.items == [trade(3), refused, refused]  # the trade conflated, the markers not


def test_plain_subscribers_never_see_markers() -> None:
    scheduler, observer = Manual(), Observer()
    box = Mailbox(observer, scheduler, limit=2)  # type: ignore[arg-type]
    assert box.mark(Subscribed(stream="s", targets=())) is False
    fill(box, [trade(i) for i in range(5)])
    scheduler.run()
    assert observer.items == [trade(3), trade(4)]
    assert box.dropped == 3


def test_an_unbounded_mailbox_drops_nothing_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    scheduler, observer = Manual(), Observer()
    box = Mailbox(observer, scheduler, name="order states of A")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="rxinvest.delivery"):
        fill(box, [trade(i) for i in range(25_000)])
    assert box.backlog == 25_000
    assert box.stats().max_backlog == 25_000
    assert [r.getMessage() for r in caplog.records] == [
        "order states of A lags: 10000 events wait, none is dropped"
    ]
    scheduler.run()
    assert len(observer.items) == 25_000


def test_a_bad_limit_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 2"):
        Mailbox(Observer(), Manual(), limit=1)  # type: ignore[arg-type]


def test_a_slow_subscriber_gives_its_thread_back() -> None:
    """A drain delivers for one time slice, then goes to the back of the queue: with a single
    delivery thread, a fast subscriber still gets its events while a slow one works through its own."""
    pool = DeliveryScheduler(max_workers=1, name="test-fair")
    try:
        slow = Observer(on_next=lambda _: time.sleep(0.02))
        fast_done = threading.Event()
        fast = Observer(on_next=lambda item: fast_done.set() if item == trade(9) else None)
        slow_box, fast_box = Mailbox(slow, pool), Mailbox(fast, pool)
        fill(slow_box, [trade(i) for i in range(100)])  # 2 s of work
        fill(fast_box, [trade(i) for i in range(10)])
        assert fast_done.wait(1.0), f"the fast subscriber waited; the slow one had {len(slow.items)}"
        assert len(slow.items) < 100
    finally:
        pool.shutdown()


def test_a_raising_subscriber_skips_the_event_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Manual()
    observer = Observer(on_next=lambda item: 1 / 0 if item == trade(1) else None)
    box = Mailbox(observer, scheduler, name="trades of X")  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="rxinvest.delivery"):
        fill(box, [trade(0), trade(1), trade(2)])
        scheduler.run()
    assert observer.items == [trade(0), trade(2)]
    assert box.failed == 1
    assert "trades of X: on_next raised" in caplog.text


def test_a_base_exception_is_logged_and_stops_the_subscription(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = Manual()

    def interrupt(item: Any) -> None:
        if item == trade(1):
            raise KeyboardInterrupt

    observer = Observer(on_next=interrupt)
    box = Mailbox(observer, scheduler, name="trades of X")  # type: ignore[arg-type]
    fill(box, [trade(0), trade(1), trade(2)])
    with caplog.at_level(logging.CRITICAL, logger="rxinvest.delivery"), pytest.raises(KeyboardInterrupt):
        scheduler.run()
    assert "BaseException" in caplog.text
    assert observer.items == [trade(0)]
    assert box.put(trade(3)) is False  # stopped: nothing more goes in


def test_a_subscriber_behind_when_its_pool_shuts_down_still_gets_everything_and_completes() -> None:
    """The client closes: the mailbox completes, the pool shuts down. A drain that used up its time
    slice gives its thread back and must go on all the same, or the subscriber never gets the rest
    nor ``on_completed`` (and whoever waits for it, ``run()`` or an iterator, hangs)."""
    pool = DeliveryScheduler(max_workers=1, name="test-closing")
    slow = Observer(on_next=lambda _: time.sleep(0.004))  # a slice (5 ms) holds one or two
    box = Mailbox(slow, pool)
    fill(box, [trade(i) for i in range(40)])
    box.complete()
    pool.shutdown()
    deadline = time.monotonic() + 5
    while not slow.completed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert slow.completed and len(slow.items) == 40


def test_a_stuck_status_subscriber_holds_at_most_its_limit_and_the_client_shows_it() -> None:
    """Statuses come per topic on every reconnect: a subscriber that does not keep up may not grow
    memory without bound. Past the limit the oldest wait no more, counted; the client's
    ``deliveries`` lists the statuses' mailboxes with the others."""
    import rxinvest
    from rxinvest.streams import ConnectionState, ConnectionStatus

    scheduler, observer = Manual(), Observer()
    feed = Broadcast(scheduler, limit=5, name="statuses")  # type: ignore[arg-type]
    feed.observable().subscribe(observer)
    reconnecting = ConnectionState.RECONNECTING
    statuses = [ConnectionStatus(stream="MarketDataStream", state=reconnecting, shard=i) for i in range(20)]
    for status in statuses:
        feed.emit(status)
    (stats,) = [box.stats() for box in feed.mailboxes()]
    assert (stats.name, stats.backlog, stats.dropped) == ("statuses", 5, 15)
    scheduler.run()
    assert observer.items == statuses[-5:]
    with rxinvest.connect() as client:
        client.statuses.subscribe(lambda _: None)
        assert [d for d in client.deliveries if d.name == "statuses" and d.limit is not None]
