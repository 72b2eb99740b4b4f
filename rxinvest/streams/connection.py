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
from typing import Any

from rxinvest.errors import (
    ApiError,
    ClientClosedError,
    PermissionDeniedError,
    RxInvestError,
    SubscriptionRejectedError,
)
from rxinvest.protocol import (
    AccountAccepted,
    AccountRejected,
    AccountSession,
    Confirmed,
    Delivered,
    Malformed,
    MarketDataSession,
    Rejected,
    Send,
    StreamFailed,
    Topic,
)
from rxinvest.streams.delivery import Mailbox
from rxinvest.streams.events import ConnectionStatus, SubscriptionStatus

__all__ = ["AccountConnection", "MarketDataConnection"]

log = logging.getLogger("rxinvest.streams")

TransportFactory = Callable[[Any], Any]  # listener -> transport (WebSocketTransport or MemoryTransport)


class _Base:
    """What both kinds of connection share: the transport's life and the status feed."""

    stream: str
    session: Any  # MarketDataSession | AccountSession

    def __init__(self, transport_factory: TransportFactory, emit: Callable[[Any], None]) -> None:
        self._factory = transport_factory
        self._emit = emit  # publishes a status event to the client's status subscribers
        self.lock = threading.Lock()
        self._transport: Any = None
        self._open = False
        self.malformed = 0  # frames that could not be decoded (skipped)
        self.shut = False  # closed by the client: for good
        self._waiting: set[Mailbox] = set()  # mailboxes given events since the last flush (reader thread)

    def _mailbox_list(self) -> list[Mailbox]:
        raise NotImplementedError

    def _ensure_started(self) -> None:
        """Start a transport if none runs (under the lock)."""
        if self.shut:
            raise ClientClosedError("the client is closed")
        if self._transport is None or not self._transport.running:
            self._transport = self._factory(self)
            self._transport.start()

    def _send(self, frames: list[str]) -> None:
        """Send now if open (under the lock); otherwise the session redoes it on ``opened``."""
        if self._open and frames:
            self._transport.send(frames)

    def _status(self, state: str, error: RxInvestError | None = None) -> None:
        self._emit(ConnectionStatus(self.stream, state, error))

    def close(self) -> None:
        with self.lock:
            self.shut = True
            transport = self._transport
        if transport is not None:
            transport.close()

    # --- Listener, on the reader thread --------------------------------------------------------------

    def _put(self, box: Mailbox, event: Any) -> None:
        """Queue ``event`` for ``box``; the drain is scheduled at the next :meth:`flush`."""
        if box.put(event):
            self._waiting.add(box)

    def flush(self) -> None:
        """The reader has read what was there: schedule the drains of this burst (reader thread)."""
        waiting, self._waiting = self._waiting, set()
        for box in waiting:
            box.kick()

    def lost(self, error: RxInvestError, retrying: bool) -> None:
        with self.lock:
            self._open = False
        self._status("reconnecting" if retrying else "disconnected", error)

    def closed(self, error: RxInvestError) -> None:
        """The transport gave up (or was closed): subscribers complete, or fail with the error."""
        self.flush()
        with self.lock:
            self._open = False
            boxes = self._mailbox_list()
        for box in boxes:
            if isinstance(error, ClientClosedError):
                box.complete()
            else:
                box.fail(error)
        self._status("closed", None if isinstance(error, ClientClosedError) else error)

    def opened(self, now: datetime) -> None:
        with self.lock:
            self._open = True
            self._send(self.session.connected(now))
        self._status("connected")

    def deadline(self) -> datetime | None:
        with self.lock:
            return self.session.deadline()  # type: ignore[no-any-return]

    def _note(self, output: Any) -> None:
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

    def __init__(
        self, transport_factory: TransportFactory, emit: Callable[[Any], None], session: MarketDataSession
    ) -> None:
        super().__init__(transport_factory, emit)
        self.session = session
        self._mailboxes: dict[Topic, list[Mailbox]] = {}

    def add(self, topics: Iterable[Topic], mailbox: Mailbox) -> None:
        topics = list(topics)
        with self.lock:
            for topic in topics:
                self._mailboxes.setdefault(topic, []).append(mailbox)
            self._ensure_started()
            self._send(self.session.subscribe(topics))

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
            routed = []
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
                self._reject(output, boxes)
            else:
                self._note(output)

    def _reject(self, output: Rejected, boxes: list[Mailbox]) -> None:
        topic = output.topic
        error = SubscriptionRejectedError(
            f"{topic.kind} of {topic.instrument_id}: {output.status.name}",
            status=output.status,
            target=topic.instrument_id,
            tracking_id=output.tracking_id,
        )
        self._emit(SubscriptionStatus(topic, False, error, output.tracking_id, ""))
        for box in boxes:
            box.fail(error)

    def wanted(self) -> bool:
        with self.lock:
            return bool(self.session.topics) and not self.shut

    def _mailbox_list(self) -> list[Mailbox]:
        return list({id(box): box for boxes in self._mailboxes.values() for box in boxes}.values())


class AccountConnection(_Base):
    """One account-stream connection (one stream, one set of accounts), shared by its subscribers."""

    def __init__(
        self,
        transport_factory: TransportFactory,
        emit: Callable[[Any], None],
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
                why = output.message or output.status.name
                message = f"{self.stream} refused account {output.account_id}: {why}"
                if output.code == "40002":
                    error: ApiError = PermissionDeniedError(
                        message, code=output.code, tracking_id=output.tracking_id
                    )
                else:
                    error = SubscriptionRejectedError(
                        message,
                        status=output.status,
                        target=output.account_id,
                        tracking_id=output.tracking_id,
                    )
                self._emit(SubscriptionStatus(output.account_id, False, error, output.tracking_id, ""))
                for box in boxes:
                    box.fail(error)
            elif isinstance(output, AccountAccepted):
                self._emit(SubscriptionStatus(output.account_id, True, None, output.tracking_id, ""))
            else:
                self._note(output)

    def wanted(self) -> bool:
        with self.lock:
            return bool(self._mailboxes) and not self.shut

    def _mailbox_list(self) -> list[Mailbox]:
        return list(self._mailboxes)
