"""The client's MarketDataStream connections: a pool of them, topics spread by a
:class:`~rxinvest.protocol.pacing.ShardPlan`, requests paced by one budget for the token.

Rules (beside those of :mod:`rxinvest.streams.connection`):

* A topic lives on one connection while it is wanted; new topics fill the connections in order
  (disposing leaves holes that the next topics fill: live subscriptions never move).
* A connection that nobody needs any more is not closed by us: the server closes an empty stream
  after a while (80004), and it is not re-opened; until then it is the first to take new topics.
* One subscriber of several connections is one :class:`~rxinvest.streams.connection.Subscriber`,
  shared by them: its ``Subscribed`` marker comes once, and it fails only when its last target is
  refused, wherever that was.
* Locks: the pool's lock, then a connection's (never the other way round). The reader threads take
  only their connection's lock; the pacer thread takes each connection's lock in turn.
* The pacer thread sends what waits (for the budget, a throttle, a listing) when it may, and closes
  getMySubscriptions checks that time out. It wakes when told there is work, and once a second.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from rxinvest import model as m
from rxinvest.derived import Subscribed
from rxinvest.errors import ClientClosedError, SubscriptionRejectedError
from rxinvest.protocol import Checked, Confirmed, Delivered, MarketDataSession, Outcome, Rejected, Topic
from rxinvest.protocol.market_data import check_candle_settings
from rxinvest.protocol.pacing import RequestBudget, ShardPlan
from rxinvest.streams.connection import Emit, ListenerTransport, Routed, StreamConnection, Subscriber
from rxinvest.streams.delivery import Mailbox

__all__ = ["MarketDataConnection", "MarketDataPool", "SharedBudget"]

log = logging.getLogger("rxinvest.streams")
_OVER_LIMIT = m.SubscriptionStatus.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED
#: A topic to place on another connection, with each of its mailboxes and their subscriptions.
Move = tuple[Topic, list[tuple[Mailbox, Subscriber]]]
#: What tells the time (aware UTC); tests may pass another.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SharedBudget(RequestBudget):
    """A :class:`RequestBudget` that the connections of one token use from their threads."""

    def __init__(self, limit: int, window: float) -> None:
        super().__init__(limit, window)
        self._lock = threading.Lock()

    def used(self, now: datetime) -> int:
        with self._lock:
            return super().used(now)

    def take(self, now: datetime, wanted: int) -> int:
        with self._lock:
            return super().take(now, wanted)

    def next_free(self, now: datetime) -> datetime:
        with self._lock:
            return super().next_free(now)


class MarketDataConnection(StreamConnection):
    """One MarketDataStream connection of the pool (``shard`` is its index)."""

    stream = "MarketDataStream"
    session: MarketDataSession

    def __init__(
        self,
        transport_factory: ListenerTransport,
        emit: Emit,
        session: MarketDataSession,
        *,
        shard: int = 0,
        clock: Clock = utc_now,
        on_work: Callable[[], None] = lambda: None,
        on_full: Callable[[MarketDataConnection, list[Move]], None] | None = None,
    ) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self.shard = shard
        self._clock = clock
        self._on_work = on_work  # wakes the pacer: something waits on time
        self._on_full = on_full  # takes topics the server refused as over its limit elsewhere
        self._moving: list[Move] = []
        self._mailboxes: dict[Topic, list[Mailbox]] = {}
        self.checks: list[Checked] = []  # the latest getMySubscriptions results, newest last
        self.checked = threading.Condition(self.lock)

    def add(self, topics: Sequence[Topic], mailbox: Mailbox, subscriber: Subscriber) -> None:
        """Subscribe ``mailbox`` (for ``subscriber``, which may span connections) to ``topics``.
        Raises ClientClosedError."""
        with self.lock:
            self._ensure_started()
            outcomes = self.session.subscribe(topics, self._clock())
            for topic in topics:
                self._mailboxes.setdefault(topic, []).append(mailbox)
            self._subscribers[mailbox] = subscriber
            routed = self._route(outcomes)
            waiting = self._waits()
        mailbox.kick()
        self._deliver(routed)
        if waiting:
            self._on_work()

    def remove(self, topics: Iterable[Topic], mailbox: Mailbox) -> None:
        with self.lock:
            self._subscribers.pop(mailbox, None)
            mine = []
            for topic in topics:
                boxes = self._mailboxes.get(topic)
                if boxes and mailbox in boxes:
                    boxes.remove(mailbox)
                    mine.append(topic)
                    if not boxes:
                        del self._mailboxes[topic]
            routed = [] if self.shut else self._route(self.session.unsubscribe(mine, self._clock()))
            waiting = self._waits()
        self._deliver(routed)
        if waiting:
            self._on_work()

    def pump(self) -> datetime | None:
        """Send what may go now (pacer thread); when to pump next (None: nothing waits on time)."""
        with self.lock:
            now = self._clock()
            routed = [] if self.shut else self._route(self.session.pump(now))
            after = self.session.next_pump(now)
        self._deliver(routed)
        return after

    def list_subscriptions(self) -> datetime:
        """Start a getMySubscriptions check (its result lands in :attr:`checks`); when it began."""
        with self.lock:
            now = self._clock()
            routed = self._route(self.session.list_subscriptions(now)) if self.is_open else []
        self._deliver(routed)
        self._on_work()
        return now

    def _route(self, outcomes: Iterable[Outcome]) -> list[Routed]:
        """As the base does, but for two outcomes that are not for subscribers: a check's result is
        kept for the waiters of ``client.check()``; a topic refused as over the server's limit, when
        the pool can move it, is kept with its subscribers for :meth:`_deliver` to hand over."""
        kept: list[Outcome] = []
        for outcome in outcomes:
            if isinstance(outcome, Checked):  # logged by the session when it repaired something
                self.checks = [*self.checks[-7:], outcome]
                self.checked.notify_all()
            elif isinstance(outcome, Rejected) and outcome.status is _OVER_LIMIT and self._on_full:
                boxes = self._mailboxes.pop(outcome.topic, [])
                self._moving.append((outcome.topic, [(box, self._subscribers[box]) for box in boxes]))
            else:
                kept.append(outcome)
        return super()._route(kept)

    def _deliver(self, routed: list[Routed]) -> None:
        super()._deliver(routed)
        if self._moving and self._on_full is not None:
            with self.lock:
                moves, self._moving = self._moving, []
            if moves:
                self._on_full(self, moves)

    def _waits(self) -> bool:
        return self.session.next_pump(self._clock()) is not None

    def _boxes(self, outcome: Outcome) -> list[Mailbox]:
        if isinstance(outcome, Delivered):
            return [box for topic in outcome.topics for box in self._mailboxes.get(topic, ())]
        if isinstance(outcome, Rejected):  # the topic is gone from the session: its mailboxes too
            return self._mailboxes.pop(outcome.topic, [])
        if isinstance(outcome, Confirmed):
            return list(self._mailboxes.get(outcome.topic, ()))
        return []

    # --- Listener ------------------------------------------------------------------------------------

    def _on_open(self, now: datetime) -> list[Outcome]:
        """Subscribe everything; after a reconnect, then check that the server holds what we want."""
        out: list[Outcome] = list(self.session.connected(now))
        return out + list(self.session.list_subscriptions(now)) if self.opens > 1 else out

    def opened(self, now: datetime) -> None:
        super().opened(now)
        self._on_work()  # what the budget held back

    def frame(self, data: bytes, now: datetime) -> None:
        if self._announced:
            with self.lock:
                outputs = self.session.receive(data, now)
                if len(outputs) == 1 and type(outputs[0]) is Delivered:  # the usual frame: one event
                    topics, event = outputs[0]
                    self.received[type(event)] += 1
                    mailboxes = self._mailboxes
                    for box in [box for topic in topics for box in mailboxes.get(topic, ())]:
                        if box.put(event):
                            self._waiting.add(box)
                    return
                routed = self._route(outputs)
            self._deliver(routed)
        else:
            super().frame(data, now)

    def wanted(self) -> bool:
        with self.lock:
            return bool(self.session.topics) and not self.shut

    def subscriptions(self) -> int:
        """Topics wanted on this connection now (confirmed or pending)."""
        with self.lock:
            return len(self.session.topics)


class MarketDataPool:
    """Every MarketDataStream connection of a client: where topics go, one request budget, and the
    pacer thread. Thread-safe."""

    def __init__(
        self,
        make: Callable[[int, MarketDataPool], MarketDataConnection],
        plan: ShardPlan,
        budget: RequestBudget | None,
        clock: Clock = utc_now,
    ) -> None:
        self._make = make  # a new connection for shard index i, wired to this pool
        self._clock = clock
        self.plan = plan
        self.budget = budget
        self._lock = threading.Lock()
        self.shards: list[MarketDataConnection] = []
        self._held: list[dict[Topic, None]] = []  # per shard: the topics placed there
        self._refs: Counter[Topic] = Counter()
        self._where: dict[Topic, int] = {}
        self._full: set[int] = set()  # connections the server said are full: nothing new goes there
        self._closed = False
        self._wake = threading.Condition()
        self._pacer: threading.Thread | None = None

    def connections(self) -> list[MarketDataConnection]:
        with self._lock:
            return list(self.shards)

    def check(self, topics: Iterable[Topic]) -> None:
        """Raise ConfigurationError now if ``topics`` conflict with what is wanted (candles'
        ``waiting_close``: one setting per instrument and interval for the whole client)."""
        with self._lock:
            check_candle_settings(self._where, topics)

    def add(self, topics: Sequence[Topic], mailbox: Mailbox, *, strict: bool = False) -> None:
        """Subscribe ``mailbox`` to ``topics``, wherever they go. Raises ConfigurationError (nothing
        changed) or ClientClosedError."""
        targets = tuple(dict.fromkeys(topic.instrument_id for topic in topics))
        subscriber = Subscriber(targets, strict)
        with self._lock:
            if self._closed:
                raise ClientClosedError("the client is closed")
            check_candle_settings(self._where, topics)
            where, no_room = self.plan.place(topics, self._held, self._full)
            mailbox.mark(Subscribed(stream=MarketDataConnection.stream, targets=targets))
            shards = self._placed(where)
            for placed in where.values():
                for topic in placed:
                    self._refs[topic] += 1
            self._start_pacer()
        added = []
        try:
            for shard, placed in shards:  # the pool's lock, then the connection's: never the reverse
                shard.add(placed, mailbox, subscriber)
                added.append(placed)
        except BaseException:  # could not start a connection: undo, so the counts stay true
            self.remove([topic for placed in where.values() for topic in placed], mailbox, added)
            raise
        if no_room:
            self._no_room(no_room, mailbox, subscriber)

    def _placed(self, where: Mapping[int, list[Topic]]) -> list[tuple[MarketDataConnection, list[Topic]]]:
        """Record where topics go (under the pool's lock), opening connections as needed."""
        while len(self.shards) <= max(where, default=-1):
            self.shards.append(self._make(len(self.shards), self))
            self._held.append({})
        for index, placed in where.items():
            for topic in placed:
                self._where[topic] = index
                self._held[index][topic] = None
        return [(self.shards[index], placed) for index, placed in where.items()]

    def remove(
        self, topics: Sequence[Topic], mailbox: Mailbox, added: Sequence[Sequence[Topic]] | None = None
    ) -> None:
        """Unsubscribe ``mailbox`` from ``topics`` (``added``: only these reached their connection)."""
        mailbox.stop()
        with self._lock:
            by_shard: dict[int, list[Topic]] = {}
            for topic in topics:
                index = self._where.get(topic)
                if index is None:
                    continue  # never placed (no room)
                by_shard.setdefault(index, []).append(topic)
                self._refs[topic] -= 1
                if self._refs[topic] <= 0:
                    del self._refs[topic], self._where[topic], self._held[index][topic]
                    self._full.discard(index)  # the server has room there again
            # Every connection forgets the mailbox: some of its topics may have moved away.
            shards = [(shard, by_shard.get(index, [])) for index, shard in enumerate(self.shards)]
        reached = None if added is None else {topic for group in added for topic in group}
        for shard, placed in shards:
            if reached is None or not reached.isdisjoint(placed):
                shard.remove(placed, mailbox)

    def moved(self, shard: MarketDataConnection, moves: list[Move]) -> None:
        """``shard``'s server refused ``moves`` as over its limit: it takes nothing new until
        something leaves it, and the topics go to the next connections (or are refused, past the
        stream budget). Called outside every lock."""
        with self._lock:
            if self._closed:
                return
            self._full.add(shard.shard)
            for topic, _ in moves:
                self._held[shard.shard].pop(topic, None)
            wanted = [topic for topic, _ in moves if self._refs[topic] > 0]  # else disposed meanwhile
            where, no_room = self.plan.place(wanted, self._held, self._full)
            targets = {topic: target for target, placed in self._placed(where) for topic in placed}
        subscribers = dict(moves)
        for topic, target in targets.items():
            log.info(
                "%s: the server's limit is reached on #%d; moving to #%d", topic, shard.shard, target.shard
            )
            for box, subscriber in subscribers[topic]:
                if box.is_stopped():
                    continue
                target.add([topic], box, subscriber)
                if box.is_stopped():  # disposed while it moved: its remove() may have missed the target
                    target.remove([topic], box)
        for topic in no_room:
            for box, subscriber in subscribers[topic]:
                self._no_room([topic], box, subscriber)

    def _no_room(self, topics: list[Topic], mailbox: Mailbox, subscriber: Subscriber) -> None:
        """Topics the plan has no connection for: refused like the API refuses, by us."""
        limit = f"{self.plan.streams} connections of {self.plan.capacity} subscriptions are in use"
        for topic in topics:
            error = SubscriptionRejectedError(
                f"{topic} refused: {limit} (raise stream_budget if your limit grade allows)",
                status=m.SubscriptionStatus.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED,
                target=topic.instrument_id,
            )
            subscriber.targets.discard(topic.instrument_id)
            fails = subscriber.strict or not subscriber.targets
            rejected = Rejected(topic, m.SubscriptionStatus.SUBSCRIPTION_STATUS_LIMIT_IS_EXCEEDED, "", error)
            if self.shards:  # said like the API's refusals: a status, a marker, or the error
                self.shards[0]._refused(rejected, [mailbox], [fails])
            else:
                mailbox.fail(error)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            shards = list(self.shards)
        with self._wake:
            self._wake.notify_all()
        for shard in shards:
            shard.close()
        if self._pacer is not None:
            self._pacer.join(timeout=5.0)

    # --- the pacer -----------------------------------------------------------------------------------

    def wake(self) -> None:
        """Something waits on time: the pacer looks again now."""
        with self._wake:
            self._wake.notify_all()

    def _start_pacer(self) -> None:
        if self._pacer is None:
            self._pacer = threading.Thread(target=self._pace, name="rxinvest-pacer", daemon=True)
            self._pacer.start()

    def _pace(self) -> None:
        """Pump every connection when it has work that waited; a failure is logged, never fatal."""
        while True:
            with self._lock:
                if self._closed:
                    return
                shards = list(self.shards)
            wake: datetime | None = None
            for shard in shards:
                try:
                    after = shard.pump()
                except Exception:  # a bug must not stop the pacing of every connection
                    log.exception("pacing %s#%d failed", shard.stream, shard.shard)
                    after = None
                if after is not None and (wake is None or after < wake):
                    wake = after
            delay = 1.0 if wake is None else (wake - self._clock()).total_seconds()
            with self._wake:
                if not self._closed:
                    self._wake.wait(timeout=min(1.0, max(0.005, delay)))
