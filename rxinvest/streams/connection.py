"""One stream connection as the Rx layer sees it: a protocol session, a transport, and the mailboxes
of the subscribers, glued together under one lock.

The reader thread calls the :class:`~rxinvest.transport.Listener` methods: it updates the session and
sends what the session says under the lock, then hands events to mailboxes, outside the lock. User
threads subscribe and dispose under the same lock, so the order of requests on the wire is the order
of changes to the session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from rxinvest.errors import ClientClosedError, RxInvestError
from rxinvest.protocol import (
    AccountAccepted,
    AccountRejected,
    AccountSession,
    Confirmed,
    Delivered,
    Malformed,
    MarketDataOutcome,
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

__all__ = ["AccountConnection", "MarketDataConnection"]

log = logging.getLogger("rxinvest.streams")

#: Makes a transport for a listener (the client binds its ``TransportFactory`` to the stream).
ListenerTransport = Callable[[Listener], Transport]
#: Publishes a lifecycle event to the client's status subscribers.
Emit = Callable[[ConnectionStatus | SubscriptionStatus], None]


class _Base:
    """What both kinds of connection share: the transport's life and the status feed."""

    stream: str
    session: MarketDataSession | AccountSession

    def __init__(self, transport_factory: ListenerTransport, emit: Emit) -> None:
        self._factory = transport_factory
        self._emit = emit
        self.lock = threading.Lock()
        self._transport: Transport | None = None
        self.state = ConnectionState.IDLE
        self.malformed = 0  # frames that could not be decoded (skipped)
        self.shut = False  # closed by the client: for good, whatever the state says
        self._waiting: set[Mailbox] = set()  # mailboxes given events since the last flush (reader thread)

    def _mailbox_list(self) -> list[Mailbox]:
        raise NotImplementedError

    def frame(self, data: bytes, now: datetime) -> None:
        raise NotImplementedError

    def wanted(self) -> bool:
        raise NotImplementedError

    def _ensure_started(self) -> None:
        """Start a transport if none runs."""
        assert self.lock.locked(), "called under the lock"
        if self.shut:
            raise ClientClosedError("the client is closed")
        if self._transport is None or not self._transport.running:
            self._transport = self._factory(self)
            self.state = ConnectionState.CONNECTING
            self._transport.start()

    def _send(self, frames: list[str]) -> None:
        """Send now if open; otherwise the session redoes it on ``opened``."""
        assert self.lock.locked(), "called under the lock"
        if self.state is ConnectionState.CONNECTED and frames and self._transport is not None:
            self._transport.send(frames)

    def _status(self, state: ConnectionState, error: RxInvestError | None = None) -> None:
        self._emit(ConnectionStatus(self.stream, state, error))

    @property
    def is_open(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def close(self) -> None:
        with self.lock:
            self.shut = True
            transport = self._transport
        if transport is not None:
            transport.close()

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
            self._send(self.session.connected(now))
        self._status(ConnectionState.CONNECTED)

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


class MarketDataConnection(_Base):
    """The client's one MarketDataStream connection, shared by every market-data source."""

    stream = "MarketDataStream"
    session: MarketDataSession

    def __init__(self, transport_factory: ListenerTransport, emit: Emit, session: MarketDataSession) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self._mailboxes: dict[Topic, list[Mailbox]] = {}

    def check(self, topics: Iterable[Topic]) -> None:
        """Raise ConfigurationError now if the session would refuse ``topics`` (see its ``check``)."""
        with self.lock:
            self.session.check(topics)

    def add(self, topics: Iterable[Topic], mailbox: Mailbox) -> None:
        """Subscribe ``mailbox`` to ``topics``. Raises ConfigurationError (nothing changed) or
        ClientClosedError."""
        topics = list(topics)
        with self.lock:
            self._ensure_started()
            frames = self.session.subscribe(topics)  # raises before changing anything
            for topic in topics:
                self._mailboxes.setdefault(topic, []).append(mailbox)
            self._send(frames)

    def remove(self, topics: Iterable[Topic], mailbox: Mailbox) -> None:
        mailbox.stop()
        with self.lock:
            mine = []
            for topic in topics:
                boxes = self._mailboxes.get(topic)
                if boxes and mailbox in boxes:
                    boxes.remove(mailbox)
                    mine.append(topic)
                    if not boxes:
                        del self._mailboxes[topic]
            if not self.shut:
                self._send(self.session.unsubscribe(mine))

    # --- Listener ------------------------------------------------------------------------------------

    def frame(self, data: bytes, now: datetime) -> None:
        with self.lock:
            outputs = self.session.receive(data, now)
            if len(outputs) == 1 and type(outputs[0]) is Delivered:  # the usual frame: one event
                topics, event = outputs[0]
                mailboxes = self._mailboxes
                boxes = [box for topic in topics for box in mailboxes.get(topic, ())]
                for box in boxes:
                    if box.put(event):
                        self._waiting.add(box)
                return
            # The mailboxes each output goes to, read under the lock; delivery happens outside it.
            routed: list[tuple[MarketDataOutcome, list[Mailbox]]] = []
            for output in outputs:
                if isinstance(output, Delivered):
                    boxes = [box for topic in output.topics for box in self._mailboxes.get(topic, ())]
                elif isinstance(output, Rejected):
                    boxes = self._mailboxes.pop(output.topic, [])
                else:
                    boxes = []
                    if isinstance(output, Send):  # releases decided by this answer: in order, now
                        self._send(list(output.frames))
                routed.append((output, boxes))
        for output, boxes in routed:
            if isinstance(output, Delivered):
                event = output.event
                for box in boxes:
                    self._put(box, event)
            elif isinstance(output, Confirmed):
                status = SubscriptionStatus(
                    output.topic, True, None, output.tracking_id, output.instrument_uid
                )
                self._emit(status)
            elif isinstance(output, Rejected):
                self._emit(SubscriptionStatus(output.topic, False, output.error, output.tracking_id, ""))
                for box in boxes:
                    box.fail(output.error)
            else:
                self._note(output)

    def wanted(self) -> bool:
        with self.lock:
            return bool(self.session.topics) and not self.shut

    def _mailbox_list(self) -> list[Mailbox]:
        return list({id(box): box for boxes in self._mailboxes.values() for box in boxes}.values())


class AccountConnection(_Base):
    """One account-stream connection (one stream, one set of accounts), shared by its subscribers."""

    session: AccountSession

    def __init__(
        self,
        transport_factory: ListenerTransport,
        emit: Emit,
        session: AccountSession,
        on_idle: Callable[[AccountConnection], None],
    ) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self.stream = session.stream.value
        self._mailboxes: list[Mailbox] = []
        self._on_idle = on_idle

    def add(self, mailbox: Mailbox) -> None:
        with self.lock:
            self._mailboxes.append(mailbox)
            self._ensure_started()

    def remove(self, mailbox: Mailbox) -> None:
        mailbox.stop()
        with self.lock:
            if mailbox in self._mailboxes:
                self._mailboxes.remove(mailbox)
            idle = not self._mailboxes
        if idle:
            self._on_idle(self)
            self.close()

    def frame(self, data: bytes, now: datetime) -> None:
        with self.lock:
            outputs = self.session.receive(data, now)
            boxes = list(self._mailboxes)
        for output in outputs:
            if isinstance(output, Delivered):
                for box in boxes:
                    self._put(box, output.event)
            elif isinstance(output, AccountRejected):
                self._emit(SubscriptionStatus(output.account_id, False, output.error, output.tracking_id, ""))
                for box in boxes:
                    box.fail(output.error)
            elif isinstance(output, AccountAccepted):
                self._emit(SubscriptionStatus(output.account_id, True, None, output.tracking_id, ""))
            else:
                self._note(output)

    def wanted(self) -> bool:
        with self.lock:
            return bool(self._mailboxes) and not self.shut

    def _mailbox_list(self) -> list[Mailbox]:
        return list(self._mailboxes)
