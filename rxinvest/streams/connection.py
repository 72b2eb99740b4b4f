"""One stream connection as the Rx layer sees it: a protocol session, a transport, and the mailboxes
of the subscribers, glued together under one lock.

Rules:

* Decide under the lock, deliver outside it. The reader thread calls the
  :class:`~rxinvest.transport.Listener` methods: it feeds the session and sends what the session says
  under the lock, then hands events to mailboxes outside it. User threads subscribe and dispose under
  the same lock, so the order of requests on the wire is the order of changes to the session.
* Every call into the session returns outcomes, and all of them go through :meth:`StreamConnection._route`
  (under the lock: frames are sent, mailboxes looked up) and :meth:`StreamConnection._deliver` (outside it).
* A refusal fails a subscriber only if it asked for that (``strict``) or nothing it asked for is
  left; otherwise the subscriber gets a :class:`~rxinvest.derived.Refused` marker and goes on.
* After a reconnect, every subscriber of a subscription that was live gets a
  :class:`~rxinvest.derived.Gap` marker when it is confirmed again.
* ``CONNECTED`` is announced when the server has said something on the new connection, so a token
  refused right after the handshake never shows as connected.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from rxinvest.derived import Gap, GapCause, Refused, Subscribed
from rxinvest.errors import ClientClosedError, RxInvestError
from rxinvest.protocol import (
    AccountAccepted,
    AccountRejected,
    AccountSession,
    Confirmed,
    Delivered,
    Malformed,
    MarketDataSession,
    Outcome,
    Rejected,
    Send,
    StreamEvent,
    StreamFailed,
    Topic,
)
from rxinvest.streams.delivery import Mailbox
from rxinvest.streams.events import ConnectionState, ConnectionStatus, SubscriptionStatus
from rxinvest.transport import Listener, Transport

__all__ = ["Emit", "ListenerTransport", "Routed", "StreamConnection", "Subscriber"]

log = logging.getLogger("rxinvest.streams")

#: Makes a transport for a listener (the client binds its ``TransportFactory`` to the stream).
ListenerTransport = Callable[[Listener], Transport]
#: Publishes a lifecycle event to the client's status subscribers.
Emit = Callable[[ConnectionStatus | SubscriptionStatus], None]


class Subscriber:
    """What the connection knows of one subscription: its targets not refused yet, and whether
    one refusal is to end it."""

    __slots__ = ("strict", "targets")

    def __init__(self, targets: Iterable[str], strict: bool) -> None:
        self.targets = set(targets)
        self.strict = strict


#: What _route decided under the lock, for _deliver to carry out: an outcome and its mailboxes (for
#: a refusal, each with whether it fails).
Routed = tuple[Outcome, list[Mailbox], list[bool]]


class StreamConnection:
    """What both kinds of connection share: the transport's life, the status feed, and routing."""

    stream: str
    session: MarketDataSession | AccountSession
    shard = 0  # which of the stream's connections (market data may have several)

    def __init__(self, transport_factory: ListenerTransport, emit: Emit) -> None:
        self._factory = transport_factory
        self._emit = emit
        self.lock = threading.Lock()
        self._transport: Transport | None = None
        self.state = ConnectionState.IDLE
        self._announced = True  # CONNECTED said for the current connection (set False on opening)
        self.malformed = 0  # frames that could not be decoded (skipped)
        self.received: Counter[type] = Counter()  # events routed to subscribers, per event class (lock)
        self.opens = 0  # connections opened so far: all but the first are reconnects
        self.gaps = 0  # Gap markers sent after reconnects (per target)
        self.shut = False  # closed by the client: for good, whatever the state says
        self._waiting: set[Mailbox] = set()  # mailboxes given events since the last flush (reader thread)
        self._subscribers: dict[Mailbox, Subscriber] = {}

    def _mailbox_list(self) -> list[Mailbox]:
        return list(self._subscribers)

    def received_by_type(self) -> dict[str, int]:
        """Events routed to subscribers so far, per event class name."""
        with self.lock:
            return {cls.__name__: n for cls, n in self.received.items()}

    def subscribers(self) -> list[Mailbox]:
        """The mailboxes of the live subscriptions."""
        with self.lock:
            return self._mailbox_list()

    def settled(self) -> bool:
        """Has every subscriber finished with every event handed to it so far (its ``on_next``
        returned, or the event was dropped)? A transport that must acknowledge only what was
        delivered (the bus) waits for this."""
        return all(
            box.pushed <= box.delivered + box.failed + box.dropped + box.conflated
            for box in self.subscribers()
        )

    def _ensure_started(self) -> None:
        """Start a transport if none runs."""
        assert self.lock.locked(), "called under the lock"
        if self.shut:
            raise ClientClosedError("the client is closed")
        if self._transport is None or not self._transport.running:
            self._transport = self._factory(self)
            self.state = ConnectionState.CONNECTING
            self._transport.start()

    def _send(self, frames: Sequence[str]) -> None:
        """Send now if open; otherwise the session redoes it on ``opened``."""
        assert self.lock.locked(), "called under the lock"
        if self.state is ConnectionState.CONNECTED and frames and self._transport is not None:
            self._transport.send(list(frames))

    def _status(self, state: ConnectionState, error: RxInvestError | None = None) -> None:
        self._emit(ConnectionStatus(self.stream, state, error, self.shard))

    def _attach(self, mailbox: Mailbox, targets: Sequence[str], strict: bool) -> None:
        """Register a subscriber (under the lock); its first marker says it is live."""
        self._subscribers[mailbox] = Subscriber(targets, strict)
        mailbox.mark(Subscribed(stream=self.stream, targets=tuple(targets)))

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def close(self) -> None:
        with self.lock:
            self.shut = True
            transport = self._transport
        if transport is not None:
            transport.close()

    # --- outcomes: decided under the lock, delivered outside it --------------------------------------

    def _boxes(self, outcome: Outcome) -> list[Mailbox]:
        """The mailboxes ``outcome`` concerns (under the lock)."""
        raise NotImplementedError

    def _route(self, outcomes: Iterable[Outcome]) -> list[Routed]:
        """Send what is to be sent, and find each outcome's mailboxes (under the lock)."""
        routed: list[Routed] = []
        for outcome in outcomes:
            if isinstance(outcome, Send):  # in the order the session decided, now
                self._send(outcome.frames)
                continue
            if isinstance(outcome, Delivered):
                self.received[type(outcome.event)] += 1
            boxes = self._boxes(outcome)
            fails: list[bool] = []
            if isinstance(outcome, Rejected | AccountRejected):
                target = outcome.topic.instrument_id if isinstance(outcome, Rejected) else outcome.account_id
                for box in boxes:
                    subscriber = self._subscribers.get(box)
                    if subscriber is not None:
                        subscriber.targets.discard(target)
                    fails.append(subscriber is None or subscriber.strict or not subscriber.targets)
            routed.append((outcome, boxes, fails))
        return routed

    def _deliver(self, routed: list[Routed]) -> None:
        """Carry out what :meth:`_route` decided (outside the lock)."""
        for outcome, boxes, fails in routed:
            if isinstance(outcome, Delivered):
                for box in boxes:
                    self._put(box, outcome.event)
            elif isinstance(outcome, Confirmed | AccountAccepted):
                target: Topic | str = outcome.topic if isinstance(outcome, Confirmed) else outcome.account_id
                uid = outcome.instrument_uid if isinstance(outcome, Confirmed) else ""
                self._emit(SubscriptionStatus(target, True, None, outcome.tracking_id, uid, self.stream))
                if outcome.gap is not None:
                    self.gaps += 1
                    name = target.instrument_id if isinstance(target, Topic) else target
                    since, until = outcome.gap
                    gap = Gap(
                        cause=GapCause.RECONNECT, since=since, until=until, target=name, instrument_uid=uid
                    )
                    self._mark(boxes, gap)
                    self._noted(gap)
            elif isinstance(outcome, Rejected | AccountRejected):
                self._refused(outcome, boxes, fails)
            else:
                self._note(outcome)

    def _refused(self, outcome: Rejected | AccountRejected, boxes: list[Mailbox], fails: list[bool]) -> None:
        if isinstance(outcome, Rejected):
            target: Topic | str = outcome.topic
            name, status = outcome.topic.instrument_id, outcome.status.name if outcome.status else "NOT_SENT"
        else:
            target = name = outcome.account_id
            status = outcome.status.name
        self._emit(SubscriptionStatus(target, False, outcome.error, outcome.tracking_id, "", self.stream))
        marker = Refused(target=name, status=status, message=str(outcome.error))
        for box, fail in zip(boxes, fails, strict=True):
            if fail:
                box.fail(outcome.error)
            elif box.mark(marker):
                box.kick()

    def _noted(self, marker: Gap) -> None:
        """Tell a tapping transport (a recorder, :class:`~rxinvest.transport.Tap`) of ``marker``."""
        note = getattr(self._transport, "note", None)
        if note is not None:
            note(marker)

    @staticmethod
    def _mark(boxes: Iterable[Mailbox], marker: Gap) -> None:
        for box in boxes:
            if box.mark(marker):
                box.kick()

    # --- Listener, on the reader thread --------------------------------------------------------------

    def _put(self, box: Mailbox, event: StreamEvent) -> None:
        """Queue ``event`` for ``box``; the drain is scheduled at the next :meth:`flush`."""
        if box.put(event):
            self._waiting.add(box)

    def flush(self) -> None:
        """The reader has read what was there: schedule the drains of this burst (reader thread)."""
        waiting, self._waiting = self._waiting, set()
        for box in waiting:
            box.kick()

    def frame(self, data: bytes, now: datetime) -> None:
        if not self._announced:  # the server spoke on the new connection: it took us
            self._announced = True
            self._status(ConnectionState.CONNECTED)
        with self.lock:
            routed = self._route(self.session.receive(data, now))
        self._deliver(routed)

    def wanted(self) -> bool:
        raise NotImplementedError

    def lost(self, error: RxInvestError, retrying: bool) -> None:
        state = ConnectionState.RECONNECTING if retrying else ConnectionState.DISCONNECTED
        with self.lock:
            self.state = state
        self._status(state, error)

    def closed(self, error: RxInvestError) -> None:
        """The transport gave up (or was closed): subscribers complete, or fail with the error."""
        self.flush()
        by_client = isinstance(error, ClientClosedError)
        with self.lock:
            # After a final error a new subscriber may start again: the connection is idle, while
            # the status says CLOSED for the transport that ended.
            self.state = ConnectionState.CLOSED if self.shut else ConnectionState.IDLE
            boxes = self._mailbox_list()
        for box in boxes:
            if by_client:
                box.complete()
            else:
                box.fail(error)
        self._status(ConnectionState.CLOSED, None if by_client else error)

    def opened(self, now: datetime) -> None:
        with self.lock:
            self.state = ConnectionState.CONNECTED
            self._announced = False
            self.opens += 1
            routed = self._route(self._on_open(now))
        self._deliver(routed)

    def _on_open(self, now: datetime) -> list[Outcome]:
        """What the session says on a new connection (under the lock); ``opens`` counts it already."""
        return list(self.session.connected(now))

    def deadline(self) -> datetime | None:
        with self.lock:
            return self.session.deadline()

    def _note(self, output: Outcome) -> None:
        """What is neither an event nor an answer: a skipped frame, an in-band stream error."""
        if isinstance(output, Malformed):
            self.malformed += 1
            log.warning("%s: skipped a malformed frame: %s", self.stream, output.error.reason)
        elif isinstance(output, StreamFailed):
            log.warning(
                "%s: in-band stream error %s %s", self.stream, output.status.code, output.status.message
            )
