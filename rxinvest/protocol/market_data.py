"""The MarketDataStream session: reference-counted subscriptions and routing, sans-I/O.

No sockets, threads or clock reads: the owner feeds received frames with the current time
(``receive``), asks for frames to send (``subscribe``, ``unsubscribe``, ``connected``) and for the
time by which something must arrive (``deadline``). Not thread-safe: the owner holds a lock.

Subscriptions are counted per :class:`Topic` (kind, instrument id as given, parameters): the first
``subscribe`` of a topic sends SUBSCRIBE, the last ``unsubscribe`` sends UNSUBSCRIBE, anything in
between sends nothing. Topics added together are sent in one request per kind and parameter set (the
API allows 100 subscription requests a minute). The answer's entries come in request order, one per
instrument; they confirm or reject each topic and tell the instrument uid, by which events are routed
back to topics. Two topics naming one instrument differently (``SBER_TQBR`` and its uid) share one
server subscription: it is released only when neither is wanted. Since the uid behind an id is known
only from the answer, a release waits while an answer that could name the same instrument is still
on its way; the UNSUBSCRIBE then comes out of ``receive`` as a :class:`Send`. Each topic's lifecycle
is the state machine of :mod:`rxinvest.protocol.topic`.

Protocol rules are enforced here, not by the caller: :meth:`MarketDataSession.check` refuses candles
wanted with both ``waiting_close`` settings, and a refused topic comes out as a :class:`Rejected`
that carries the ready :class:`~rxinvest.errors.SubscriptionRejectedError`.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.errors import ConfigurationError, DecodeError, EncodeError, SubscriptionRejectedError
from rxinvest.model.kinds import EVENT_KINDS, RESPONSE_KINDS, SPECS, Kind
from rxinvest.protocol.events import (
    Confirmed,
    Delivered,
    Malformed,
    MarketDataOutcome,
    Rejected,
    Send,
    StreamEvent,
    StreamFailed,
)
from rxinvest.protocol.liveness import Liveness
from rxinvest.protocol.topic import WANTED, Topic, TopicEvent, TopicState, advance, next_state
from rxinvest.wire import decoder, encode

__all__ = ["MAX_INSTRUMENTS_PER_REQUEST", "MarketDataSession"]

log = logging.getLogger("rxinvest.protocol")

_SUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
_UNSUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
_SUCCESS = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
_PENDING = frozenset({TopicState.UNSENT, TopicState.REQUESTED})  # wanted, the answer still to come
#: Instruments in one subscription request at most: every frame stays small (the proxy closes a
#: stream with 1009 on a frame over its size limit), while 300 subscriptions still take 3 requests.
MAX_INSTRUMENTS_PER_REQUEST = 100


@attrs.define
class _State:
    refs: int = 0
    state: TopicState = TopicState.UNSENT
    uid: str | None = None  # known once the server confirmed
    subscription_id: str = ""
    gap_since: datetime | None = None  # confirmed on a connection that was lost: events may be missing


class MarketDataSession(Liveness):
    """One MarketDataStream connection's subscriptions, ping settings and liveness.

    ``ping_delay`` (seconds) is asked of the server on every connection; the stream counts as dead
    when nothing (data or ping) arrives for ``watchdog_factor`` times that long.
    """

    def __init__(
        self, *, dialect: str = "json", ping_delay: float | None = None, watchdog_factor: float = 2.0
    ) -> None:
        super().__init__(ping_delay, watchdog_factor)
        self.dialect = dialect
        self._topics: dict[Topic, _State] = {}  # in the order they were first wanted
        # Per kind, route key -> its topics: rebuilt on change, read per event. ``_by_event`` gives, per
        # event class, its kind's routes and the C-level getter of its route key: one dict lookup and
        # no Python call per event.
        self._routes: dict[Kind, dict[Hashable, tuple[Topic, ...]]] = {kind: {} for kind in Kind}
        self._by_event = {cls: (self._routes[kind], _route_key(kind)) for cls, kind in EVENT_KINDS.items()}
        self._decode = decoder("MarketDataStream")
        # Requests whose answers are still to come, per kind: answers come in request order.
        self._outstanding: dict[Kind, deque[tuple[m.SubscriptionAction, list[Topic]]]] = {
            kind: deque() for kind in Kind
        }

    # --- the owner's calls ---------------------------------------------------------------------------

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Topics somebody subscribes to (confirmed or pending)."""
        return tuple(t for t, s in self._topics.items() if s.state in WANTED)

    def refs(self, topic: Topic) -> int:
        state = self._topics.get(topic)
        return state.refs if state else 0

    def state(self, topic: Topic) -> TopicState:
        """Where ``topic`` is in its lifecycle (FORGOTTEN if the session does not hold it)."""
        state = self._topics.get(topic)
        return state.state if state else TopicState.FORGOTTEN

    def check(self, topics: Iterable[Topic]) -> None:
        """Raise :class:`~rxinvest.errors.ConfigurationError` if ``topics`` cannot join the stream.

        The API keeps one ``waiting_close`` per instrument and interval on a stream: candles cannot be
        wanted both ways at once.
        """
        # One pass over the wanted topics, then the new ones: the first setting of each instrument
        # and interval is held, and a later different one is the conflict.
        held: dict[tuple[str, m.SubscriptionInterval], bool] = {}
        for topic in (*self.topics, *topics):
            if topic.kind is not Kind.CANDLES:
                continue
            setting = held.setdefault((topic.instrument_id, topic.interval), topic.waiting_close)
            if setting != topic.waiting_close:
                raise ConfigurationError(
                    f"{topic.instrument_id} {topic.interval.name} candles are already subscribed "
                    f"with waiting_close={setting}; the API keeps one setting per stream"
                )

    def subscribe(self, topics: Iterable[Topic]) -> list[MarketDataOutcome]:
        """Count one more subscriber of each topic; a :class:`Send` of requests for the topics the
        server does not hold yet.

        Raises :class:`~rxinvest.errors.ConfigurationError` (see :meth:`check`) and then changes
        nothing.
        """
        topics = list(topics)
        self.check(topics)
        for topic in topics:
            state = self._topics.get(topic)
            if state is None:
                state = self._topics[topic] = _State()
            elif state.refs == 0:  # unwanted but still held: wanted again, nothing to send
                state.state = advance(state.state, TopicEvent.WANT)
            state.refs += 1
        return self._flush_subscribe()

    def unsubscribe(self, topics: Iterable[Topic]) -> list[MarketDataOutcome]:
        """Count one subscriber less of each topic; a :class:`Send` of UNSUBSCRIBE requests for what
        nobody wants now (or nothing, while an answer could still share it)."""
        for topic in topics:
            state = self._topics.get(topic)
            if state is None or state.refs == 0:
                continue
            state.refs -= 1
            if state.refs == 0:
                state.state = advance(state.state, TopicEvent.UNWANT)
                if state.state is TopicState.FORGOTTEN:  # never sent: nothing to undo on the server
                    del self._topics[topic]
        return self._settle()

    def connected(self, now: datetime) -> list[MarketDataOutcome]:
        """A new connection is open: ping settings, then every wanted topic subscribed again.

        A topic that was confirmed on the lost connection remembers since when its events may be
        missing: its next :class:`Confirmed` carries the gap.
        """
        lost_at = self._last_received or now
        self.alive(now)
        for queue in self._outstanding.values():
            queue.clear()
        frames = []
        if self.ping_delay is not None:
            frames.append(
                encode(m.PingDelaySettings(ping_delay_ms=round(self.ping_delay * 1000)), dialect=self.dialect)
            )
        for routes in self._routes.values():
            routes.clear()
        for topic, state in list(self._topics.items()):
            if state.state is TopicState.CONFIRMED and state.gap_since is None:
                state.gap_since = lost_at
            state.state = advance(state.state, TopicEvent.RECONNECT)
            state.uid = None
            if state.state is TopicState.FORGOTTEN:
                del self._topics[topic]
        return _with_frames(frames, self._flush_subscribe())

    def receive(self, frame: str | bytes, now: datetime) -> list[MarketDataOutcome]:
        """Feed one received frame; returns what it means (Delivered, Confirmed, Rejected, ...)."""
        self._last_received = now  # Liveness.alive, inlined: this runs for every frame
        try:
            event = self._decode(frame)
        except DecodeError as exc:
            return [Malformed(exc)]
        route = self._by_event.get(type(event))
        if route is not None:  # market data, the usual frame
            routes, key = route
            topics = routes.get(key(event))
            if not topics:
                return []
            if type(event) is m.OpenInterest:
                topics = tuple(t for t in topics if t.with_open_interest)
            return [Delivered(topics, event)] if topics else []
        kind = RESPONSE_KINDS.get(type(event))
        if kind is not None:
            return self._answer(kind, event, now)
        if isinstance(event, m.RpcStatus):
            return [StreamFailed(event)]
        return []  # pings: they only count as signs of life

    # --- internals -----------------------------------------------------------------------------------

    def _settle(self) -> list[MarketDataOutcome]:
        """UNSUBSCRIBE requests for RELEASING topics that can be let go now.

        A releasing topic waits while an answer of its kind is pending (it could name the same
        instrument). It is let go silently when another wanted topic holds the same server
        subscription.
        """
        pending_kinds = {t.kind for t, s in self._topics.items() if s.state in _PENDING}
        released: list[Topic] = []
        for topic, state in list(self._topics.items()):
            if state.state is not TopicState.RELEASING or topic.kind in pending_kinds:
                continue
            assert state.uid is not None
            shared = any(
                other != topic and self._topics[other].state in WANTED
                for other in self._routes[topic.kind].get(topic.route(state.uid), ())
            )
            state.state = advance(state.state, TopicEvent.LET_GO)
            self._forget(topic)
            if not shared:
                released.append(topic)
        return self._requests(released, _UNSUBSCRIBE)

    def _forget(self, topic: Topic) -> None:
        state = self._topics.pop(topic)
        if state.uid is not None:
            routes, key = self._routes[topic.kind], topic.route(state.uid)
            rest = tuple(t for t in routes.get(key, ()) if t != topic)
            if rest:
                routes[key] = rest
            else:
                routes.pop(key, None)

    def _flush_subscribe(self) -> list[MarketDataOutcome]:
        unsent = [t for t, s in self._topics.items() if s.state is TopicState.UNSENT]
        for topic in unsent:
            state = self._topics[topic]
            state.state = advance(state.state, TopicEvent.SEND)
        return self._requests(unsent, _SUBSCRIBE)

    def _requests(self, topics: list[Topic], action: m.SubscriptionAction) -> list[MarketDataOutcome]:
        """The requests for ``topics``: one per kind and request-level parameters, split into
        chunks of at most :data:`MAX_INSTRUMENTS_PER_REQUEST` instruments.

        A chunk that cannot be encoded (a topic the validation should have refused: a bug) does
        not poison the others: its topics are encoded one by one, those that fail are dropped and
        reported as :class:`Rejected` with the error, and no answer is awaited for them, so the
        matching of answers to requests never shifts.
        """
        groups: dict[tuple[Any, ...], list[Topic]] = {}
        for topic in topics:
            groups.setdefault(topic.request_group(), []).append(topic)
        frames: list[str] = []
        failed: list[MarketDataOutcome] = []
        for group in groups.values():
            for start in range(0, len(group), MAX_INSTRUMENTS_PER_REQUEST):
                chunk = group[start : start + MAX_INSTRUMENTS_PER_REQUEST]
                try:
                    frames.append(encode(_request(action, chunk), dialect=self.dialect))
                except EncodeError:
                    chunk, errors = self._encodable(chunk, action)
                    failed += errors
                    if not chunk:
                        continue
                    frames.append(encode(_request(action, chunk), dialect=self.dialect))
                self._outstanding[chunk[0].kind].append((action, chunk))
        return _with_frames(frames, failed)

    def _encodable(
        self, chunk: list[Topic], action: m.SubscriptionAction
    ) -> tuple[list[Topic], list[MarketDataOutcome]]:
        """The topics of ``chunk`` that encode on their own, and a Rejected for each of the others
        (dropped from the session; an UNSUBSCRIBE's topics are already forgotten)."""
        good: list[Topic] = []
        failed: list[MarketDataOutcome] = []
        for topic in chunk:
            try:
                encode(_request(action, [topic]), dialect=self.dialect)
            except EncodeError as exc:
                log.error("%s cannot be encoded and is dropped: %s", topic, exc)
                state = self._topics.pop(topic, None)
                if state is not None and state.state in WANTED:
                    failed.append(Rejected(topic, None, "", exc))
            else:
                good.append(topic)
        return good, failed

    def _answer(self, kind: Kind, response: Any, now: datetime) -> list[MarketDataOutcome]:
        entries = getattr(response, SPECS[kind].entries)
        queue = self._outstanding[kind]
        if not queue:
            return []  # an answer to nothing we asked (getMySubscriptions from elsewhere): ignore
        action, topics = queue.popleft()
        if action is _UNSUBSCRIBE:
            return []  # the topics are already forgotten
        out: list[MarketDataOutcome] = []
        for topic, entry in zip(topics, entries, strict=False):
            state = self._topics.get(topic)
            if state is None:
                continue  # forgotten meanwhile
            success = entry.subscription_status is _SUCCESS
            after = next_state(state.state, TopicEvent.ACCEPT if success else TopicEvent.REFUSE)
            if after is None:
                continue  # not waiting for an answer (rule 3 of protocol.topic): ignore
            wanted = state.state in WANTED
            state.state = after
            if success:
                state.uid, state.subscription_id = entry.instrument_uid, entry.subscription_id
                routes, key = self._routes[kind], topic.route(entry.instrument_uid)
                routes[key] = (*routes.get(key, ()), topic)
                gap, state.gap_since = (None if state.gap_since is None else (state.gap_since, now)), None
                if wanted:
                    out.append(
                        Confirmed(
                            topic, entry.subscription_id, entry.instrument_uid, response.tracking_id, gap
                        )
                    )
            else:
                del self._topics[topic]
                if wanted:
                    out.append(_rejected(topic, entry.subscription_status, response.tracking_id))
        return out + self._settle()


def _with_frames(frames: list[str], outcomes: list[MarketDataOutcome]) -> list[MarketDataOutcome]:
    """``outcomes`` with the frames of any :class:`Send` among them, and ``frames`` first, merged
    into one Send at the front (frames leave in the order they were decided)."""
    merged = (*frames, *(frame for o in outcomes if isinstance(o, Send) for frame in o.frames))
    out: list[MarketDataOutcome] = [Send(merged)] if merged else []
    return out + [o for o in outcomes if not isinstance(o, Send)]


def _rejected(topic: Topic, status: m.SubscriptionStatus, tracking_id: str) -> Rejected:
    error = SubscriptionRejectedError(
        f"{topic} refused",
        status=status,
        target=topic.instrument_id,
        tracking_id=tracking_id,
    )
    return Rejected(topic, status, tracking_id, error)


def _route_key(kind: Kind) -> Callable[[StreamEvent], Hashable]:
    """The route key of an event of ``kind``, as :meth:`Topic.route` computes it for its topics:
    the instrument uid, or (uid, the kind's ``route`` attribute)."""
    attribute = kind.spec.route
    if attribute is None:
        return operator.attrgetter("instrument_uid")
    return operator.attrgetter("instrument_uid", attribute)


def _request(action: m.SubscriptionAction, topics: list[Topic]) -> Any:
    """The ``Subscribe*Request`` of one request group, built from the kind's table row."""
    first = topics[0]
    spec = first.kind.spec
    instruments = tuple(
        spec.instrument(
            instrument_id=t.instrument_id, **{name: getattr(t, name) for name in spec.instrument_params}
        )
        for t in topics
    )
    return spec.request(
        subscription_action=action,
        instruments=instruments,
        **{name: getattr(first, name) for name in spec.request_params},
    )
