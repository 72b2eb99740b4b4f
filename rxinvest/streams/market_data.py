"""The client's MarketDataStream connection: topics subscribed and released under the lock, events
routed to the mailboxes of their topics (see :mod:`rxinvest.streams.connection` for the rules)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from rxinvest.protocol import Confirmed, Delivered, MarketDataSession, Outcome, Rejected, Topic
from rxinvest.streams.connection import Emit, ListenerTransport, StreamConnection
from rxinvest.streams.delivery import Mailbox

__all__ = ["MarketDataConnection"]


class MarketDataConnection(StreamConnection):
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

    def add(self, topics: Sequence[Topic], mailbox: Mailbox, *, strict: bool = False) -> None:
        """Subscribe ``mailbox`` to ``topics``. Raises ConfigurationError (nothing changed) or
        ClientClosedError."""
        with self.lock:
            self._ensure_started()
            outcomes = self.session.subscribe(topics)  # raises before changing anything
            for topic in topics:
                self._mailboxes.setdefault(topic, []).append(mailbox)
            self._attach(mailbox, [topic.instrument_id for topic in topics], strict)
            routed = self._route(outcomes)
        mailbox.kick()
        self._deliver(routed)

    def remove(self, topics: Iterable[Topic], mailbox: Mailbox) -> None:
        mailbox.stop()
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
            routed = [] if self.shut else self._route(self.session.unsubscribe(mine))
        self._deliver(routed)

    def _boxes(self, outcome: Outcome) -> list[Mailbox]:
        if isinstance(outcome, Delivered):
            return [box for topic in outcome.topics for box in self._mailboxes.get(topic, ())]
        if isinstance(outcome, Rejected):  # the topic is gone from the session: its mailboxes too
            return self._mailboxes.pop(outcome.topic, [])
        if isinstance(outcome, Confirmed):
            return list(self._mailboxes.get(outcome.topic, ()))
        return []

    # --- Listener ------------------------------------------------------------------------------------

    def frame(self, data: bytes, now: datetime) -> None:
        if self._announced:
            with self.lock:
                outputs = self.session.receive(data, now)
                if len(outputs) == 1 and type(outputs[0]) is Delivered:  # the usual frame: one event
                    topics, event = outputs[0]
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
