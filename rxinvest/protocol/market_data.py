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

Pacing (:mod:`rxinvest.protocol.pacing`): with a :class:`RequestBudget`, a request leaves only when
the budget allows; the rest wait, and what waits is merged into as few requests as possible when
:meth:`MarketDataSession.pump` runs at :meth:`MarketDataSession.next_pump`. Releases go first (they
free the server's room), then unwanted server subscriptions, then new subscriptions. An answer
entry of TOO_MANY_REQUESTS puts its topic back to wait and holds every request back for a growing
while (:class:`Throttle`); an UNSUBSCRIBE the server did not take is remembered as a *stray* (the
server's subscription, named by instrument uid) and sent again. :meth:`MarketDataSession.list_subscriptions`
asks getMySubscriptions, fenced by a ``PingRequest`` whose echo ends the listing; it waits until no
answer is pending and holds requests back while it runs; its answer is a :class:`Checked`: confirmed
topics the server does not list are subscribed again (with a gap), listed subscriptions nobody wants
are released. The echo is inferred, not documented: a listing that never ends gives up after
:data:`LISTING_TIMEOUT`, and unless the server has echoed before, no listing is asked again.

Protocol rules are enforced here, not by the caller: :meth:`MarketDataSession.check` refuses candles
wanted with both ``waiting_close`` settings, and a refused topic comes out as a :class:`Rejected`
that carries the ready :class:`~rxinvest.errors.SubscriptionRejectedError`.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timedelta
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.errors import ConfigurationError, DecodeError, EncodeError, SubscriptionRejectedError
from rxinvest.model.kinds import EVENT_KINDS, RESPONSE_KINDS, SPECS, Kind
from rxinvest.protocol.events import (
    Checked,
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
from rxinvest.protocol.pacing import RequestBudget, Throttle
from rxinvest.protocol.topic import WANTED, Topic, TopicEvent, TopicState, advance, next_state
from rxinvest.wire import decoder, encode

__all__ = ["LISTING_TIMEOUT", "MAX_INSTRUMENTS_PER_REQUEST", "MarketDataSession", "check_candle_settings"]

log = logging.getLogger("rxinvest.protocol")

_SUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
_UNSUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
_SUCCESS = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
_TOO_MANY = m.SubscriptionStatus.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS
_NOT_FOUND = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUBSCRIPTION_NOT_FOUND
#: How long a getMySubscriptions listing may take before the check gives up (changing nothing).
LISTING_TIMEOUT = timedelta(seconds=10)
_ECHO_PRECISION = timedelta(milliseconds=1)  # a server may echo the fence's time to the millisecond
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
    confirmed_at: datetime | None = None  # since when the server holds it, as far as we know


@attrs.define
class _Listing:
    """A getMySubscriptions check: asked when no answer is pending, ended by its fence's echo."""

    since: datetime
    sent: bool = False
    listed: dict[Kind, list[Any]] = attrs.Factory(dict)  # entries, per kind


class MarketDataSession(Liveness):
    """One MarketDataStream connection's subscriptions, ping settings, pacing and liveness.

    ``ping_delay`` (seconds) is asked of the server on every connection; the stream counts as dead
    when nothing (data or ping) arrives for ``watchdog_factor`` times that long. ``budget`` paces
    the subscription requests (shared by the connections of one token; None: unpaced). Calls that
    may send take ``now``; without a budget it may be None.
    """

    def __init__(
        self,
        *,
        dialect: str = "json",
        ping_delay: float | None = None,
        watchdog_factor: float = 2.0,
        budget: RequestBudget | None = None,
        linger: float = 0.0,
    ) -> None:
        super().__init__(ping_delay, watchdog_factor)
        self.linger = timedelta(seconds=linger)
        self._linger_until: datetime | None = None
        self.dialect = dialect
        self.budget = budget
        self.throttle = Throttle()
        self._topics: dict[Topic, _State] = {}  # in the order they were first wanted
        # Per kind, route key -> its topics: rebuilt on change, read per event. ``_by_event`` gives, per
        # event class, its kind's routes and the C-level getter of its route key: one dict lookup and
        # no Python call per event.
        self._routes: dict[Kind, dict[Hashable, tuple[Topic, ...]]] = {kind: {} for kind in Kind}
        self._by_event = {cls: (self._routes[kind], _route_key(kind)) for cls, kind in EVENT_KINDS.items()}
        self._decode = decoder("MarketDataStream")
        # Requests whose answers are still to come, per kind: answers come in request order. An
        # UNSUBSCRIBE keeps the server's names of its topics (by uid), to release again on failure.
        self._outstanding: dict[Kind, deque[tuple[m.SubscriptionAction, list[Topic]]]] = {
            kind: deque() for kind in Kind
        }
        self._strays: dict[Topic, None] = {}  # server subscriptions nobody wants, by uid, to release
        self._listing: _Listing | None = None
        # Does the server echo a PingRequest's time (inferred, not documented)? None: not known yet.
        # A server that never does makes every listing time out: after one, none is asked again.
        self.fence_echoed: bool | None = None
        self.requests = 0  # subscription requests sent, over the session's life
        self.throttled = 0  # answer entries that said TOO_MANY_REQUESTS

    # --- the owner's calls ---------------------------------------------------------------------------

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Topics somebody subscribes to (confirmed or pending)."""
        return tuple(t for t, s in self._topics.items() if s.state in WANTED)

    @property
    def strays(self) -> tuple[Topic, ...]:
        """Server subscriptions nobody wants (named by instrument uid), waiting to be released."""
        return tuple(self._strays)

    def refs(self, topic: Topic) -> int:
        state = self._topics.get(topic)
        return state.refs if state else 0

    def state(self, topic: Topic) -> TopicState:
        """Where ``topic`` is in its lifecycle (FORGOTTEN if the session does not hold it)."""
        state = self._topics.get(topic)
        return state.state if state else TopicState.FORGOTTEN

    def check(self, topics: Iterable[Topic]) -> None:
        """Raise :class:`~rxinvest.errors.ConfigurationError` if ``topics`` cannot join the stream
        (see :func:`check_candle_settings`)."""
        check_candle_settings(self.topics, topics)

    def subscribe(self, topics: Iterable[Topic], now: datetime | None = None) -> list[MarketDataOutcome]:
        """Count one more subscriber of each topic; a :class:`Send` of requests for the topics the
        server does not hold yet (as far as the budget allows: the rest wait for :meth:`pump`).

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
        self._lingering(now)
        return self.pump(now)

    def unsubscribe(self, topics: Iterable[Topic], now: datetime | None = None) -> list[MarketDataOutcome]:
        """Count one subscriber less of each topic; a :class:`Send` of UNSUBSCRIBE requests for what
        nobody wants now (or nothing, while an answer could still share it or the budget is used)."""
        for topic in topics:
            state = self._topics.get(topic)
            if state is None or state.refs == 0:
                continue
            state.refs -= 1
            if state.refs == 0:
                state.state = advance(state.state, TopicEvent.UNWANT)
                if state.state is TopicState.FORGOTTEN:  # never sent: nothing to undo on the server
                    del self._topics[topic]
        self._lingering(now)
        return self.pump(now)

    def connected(self, now: datetime) -> list[MarketDataOutcome]:
        """A new connection is open: ping settings, then every wanted topic subscribed again.

        A topic that was confirmed on the lost connection remembers since when its events may be
        missing: its next :class:`Confirmed` carries the gap.
        """
        lost_at = self._last_received or now
        self.alive(now)
        for queue in self._outstanding.values():
            queue.clear()
        self._strays.clear()  # the server kept nothing of the lost connection
        self._listing = self._linger_until = None
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
        return _with_frames(frames, self.pump(now))

    def list_subscriptions(self, now: datetime) -> list[MarketDataOutcome]:
        """Check the server's subscriptions against ours (getMySubscriptions); the answer comes as a
        :class:`Checked` out of :meth:`receive` (or :meth:`pump`, if the listing times out). Asked
        when no answer is pending; a check already running is not started twice."""
        if self.fence_echoed is False:  # this server never ended a listing: do not hold requests again
            return [Checked(now, complete=False)]
        if self._listing is None:
            self._listing = _Listing(since=now)
        return self.pump(now)

    def next_pump(self, now: datetime) -> datetime | None:
        """When :meth:`pump` has work that cannot be done now (None: nothing waits on time)."""
        listing = self._listing
        if listing is not None and listing.sent:
            return listing.since + LISTING_TIMEOUT
        if not self._has_work():
            return None
        after = max(now, self.throttle.until or now, self._linger_until or now)
        if self.budget is not None:
            after = max(after, self.budget.next_free(now))
        return after if after > now else None

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
        listing = self._listing
        if (
            isinstance(event, m.Ping)
            and listing is not None
            and listing.sent
            and event.ping_request_time is not None
            and abs(event.ping_request_time - listing.since) < _ECHO_PRECISION  # the fence's echo
        ):
            self.fence_echoed = True
            return self._listed(now)
        return []  # pings: they only count as signs of life

    def pump(self, now: datetime | None) -> list[MarketDataOutcome]:
        """Send what waits, as far as the budget and the throttle allow: releases first, then
        strays, then subscriptions, merged into as few requests as their groups allow; and a
        listing, when no answer is pending."""
        listing = self._listing
        if listing is not None and listing.sent:
            if now is not None and now >= listing.since + LISTING_TIMEOUT:
                log.warning(
                    "getMySubscriptions did not end within %s: nothing repaired, and no more checks on "
                    "this connection (the server does not echo the fence's PingRequest)",
                    LISTING_TIMEOUT,
                )
                self._listing = None
                if not self.fence_echoed:
                    self.fence_echoed = False
                return [Checked(listing.since, complete=False), *self.pump(now)]
            return []  # nothing leaves while the server lists: answers must not interleave
        released = self._lettable()
        if now is not None and (self.throttle.holds(now) or self._held_by_linger(now)):
            return self._maybe_list(now)
        self._linger_until = None
        chunks = [
            *self._chunks(released, _UNSUBSCRIBE),
            *self._chunks(self._live_strays(), _UNSUBSCRIBE),
            *self._chunks(self._sendable(), _SUBSCRIBE),
        ]
        if self.budget is not None:
            assert now is not None, "a paced session needs the time"
            chunks = chunks[: self.budget.take(now, len(chunks))]
        frames: list[str] = []
        failed: list[MarketDataOutcome] = []
        for action, chunk in chunks:
            names: list[Topic] = chunk
            if action is _UNSUBSCRIBE:  # a release (let go now) or a stray (named by uid already)
                names = [self._unsubscribing(topic) for topic in chunk]
            else:
                for topic in chunk:
                    state = self._topics[topic]
                    state.state = advance(state.state, TopicEvent.SEND)
            try:
                frames.append(encode(_request(action, chunk), dialect=self.dialect))
            except EncodeError:
                name_of = dict(zip(chunk, names, strict=True))
                chunk, errors = self._encodable(chunk, action)
                failed += errors
                if not chunk:
                    continue
                names = [name_of[topic] for topic in chunk]  # one per entry of the answer to come
                frames.append(encode(_request(action, chunk), dialect=self.dialect))
            self.requests += 1
            self._outstanding[chunk[0].kind].append((action, names))
        return _with_frames(frames, failed + self._maybe_list(now))

    # --- internals -----------------------------------------------------------------------------------

    def _lingering(self, now: datetime | None) -> None:
        """A subscriber came or went: wait ``linger`` for the others of its burst, to send them
        together (a loop over 100 sources then costs a request or two, not 100)."""
        if self.linger and now is not None and self._linger_until is None:
            self._linger_until = now + self.linger

    def _held_by_linger(self, now: datetime) -> bool:
        return self._linger_until is not None and now < self._linger_until

    def _has_work(self) -> bool:
        return (
            bool(self._strays)
            or self._listing is not None
            or any(s.state in (TopicState.UNSENT, TopicState.RELEASING) for s in self._topics.values())
        )

    def _maybe_list(self, now: datetime | None) -> list[MarketDataOutcome]:
        """Send the waiting listing, with its fence, once no answer is pending."""
        listing = self._listing
        if listing is None or listing.sent or any(self._outstanding.values()) or now is None:
            return []
        if self.budget is not None and not self.budget.take(now, 1):
            return []
        listing.sent = True
        frames = (
            encode(m.GetMySubscriptions(), dialect=self.dialect),
            encode(m.PingRequest(time=listing.since), dialect=self.dialect),
        )
        return [Send(frames)]

    def _lettable(self) -> list[Topic]:
        """RELEASING topics that may be let go now, those that need an UNSUBSCRIBE returned.

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
            if shared:
                self._let_go(topic)
            else:
                released.append(topic)
        return released

    def _let_go(self, topic: Topic) -> Topic:
        """Forget a releasing topic; its server subscription's name (by uid), for the records."""
        state = self._topics.pop(topic)
        state.state = advance(state.state, TopicEvent.LET_GO)
        assert state.uid is not None
        self._unroute(topic, state.uid)
        return attrs.evolve(topic, instrument_id=state.uid)

    def _unroute(self, topic: Topic, uid: str) -> None:
        """Events of ``uid`` no longer go to ``topic``."""
        routes, key = self._routes[topic.kind], topic.route(uid)
        rest = tuple(t for t in routes.get(key, ()) if t != topic)
        if rest:
            routes[key] = rest
        else:
            routes.pop(key, None)

    def _unsubscribing(self, topic: Topic) -> Topic:
        """The server's name of a topic whose UNSUBSCRIBE leaves now: a stray is one already."""
        if topic in self._strays:
            del self._strays[topic]
            return topic
        return self._let_go(topic)

    def _sendable(self) -> list[Topic]:
        return [t for t, s in self._topics.items() if s.state is TopicState.UNSENT]

    def _live_strays(self) -> list[Topic]:
        """The strays still to release: one that a wanted topic now holds is wanted after all."""
        for stray in list(self._strays):
            if stray in self._topics or any(
                self._topics[t].state in WANTED
                for t in self._routes[stray.kind].get(stray.route(stray.instrument_id), ())
            ):
                del self._strays[stray]
        return list(self._strays)

    def _chunks(
        self, topics: list[Topic], action: m.SubscriptionAction
    ) -> list[tuple[m.SubscriptionAction, list[Topic]]]:
        """The requests for ``topics``: one per kind and request-level parameters, split into chunks
        of at most :data:`MAX_INSTRUMENTS_PER_REQUEST` instruments."""
        groups: dict[tuple[Any, ...], list[Topic]] = {}
        for topic in topics:
            groups.setdefault(topic.request_group(), []).append(topic)
        return [
            (action, group[start : start + MAX_INSTRUMENTS_PER_REQUEST])
            for group in groups.values()
            for start in range(0, len(group), MAX_INSTRUMENTS_PER_REQUEST)
        ]

    def _encodable(
        self, chunk: list[Topic], action: m.SubscriptionAction
    ) -> tuple[list[Topic], list[MarketDataOutcome]]:
        """The topics of ``chunk`` that encode on their own, and a Rejected for each of the others
        (dropped from the session; an UNSUBSCRIBE's topics are already forgotten).

        A chunk that cannot be encoded (a topic the validation should have refused: a bug) does not
        poison the others, and no answer is awaited for the dropped ones, so the matching of answers
        to requests never shifts.
        """
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
            if self._listing is not None and self._listing.sent:  # part of the listing
                self._listing.listed.setdefault(kind, []).extend(entries)
            return []  # else an answer to nothing we asked: ignore
        action, topics = queue.popleft()
        if action is _UNSUBSCRIBE:
            return self._released(topics, entries, now)
        out: list[MarketDataOutcome] = []
        for topic, entry in zip(topics, entries, strict=False):
            state = self._topics.get(topic)
            if state is None:
                continue  # forgotten meanwhile
            status = entry.subscription_status
            event = (
                TopicEvent.ACCEPT
                if status is _SUCCESS
                else TopicEvent.THROTTLE
                if status is _TOO_MANY
                else TopicEvent.REFUSE
            )
            after = next_state(state.state, event)
            if after is None:
                continue  # not waiting for an answer (rule 3 of protocol.topic): ignore
            wanted = state.state in WANTED
            state.state = after
            if event is TopicEvent.THROTTLE:
                self._throttled(now)
                if after is TopicState.FORGOTTEN:
                    del self._topics[topic]
            elif event is TopicEvent.ACCEPT:
                self.throttle.accepted()
                state.uid, state.subscription_id = entry.instrument_uid, entry.subscription_id
                state.confirmed_at = now
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
        return out + self.pump(now)

    def _throttled(self, now: datetime) -> None:
        self.throttled += 1
        if not self.throttle.holds(now):
            self.throttle.refused(now)
            log.info("too many subscription requests: holding them back until %s", self.throttle.until)

    def _released(self, names: list[Topic], entries: Any, now: datetime) -> list[MarketDataOutcome]:
        """An UNSUBSCRIBE's answer: what the server did not let go is a stray, released again."""
        for name, entry in zip(names, entries, strict=False):
            status = entry.subscription_status
            if status is _SUCCESS or status is _NOT_FOUND:  # gone (or never there): done
                continue
            if status is _TOO_MANY:
                self._throttled(now)
            else:
                log.warning("UNSUBSCRIBE of %s answered %s: releasing it again", name, status.name)
            self._strays[name] = None
        return self.pump(now)

    def _listed(self, now: datetime) -> list[MarketDataOutcome]:
        """The listing is whole: subscribe again what the server lost, release what nobody wants."""
        listing = self._listing
        assert listing is not None
        self._listing = None
        missing: list[Topic] = []
        listed_keys: dict[Kind, set[Hashable]] = {}
        extra: list[Topic] = []
        for kind, entries in listing.listed.items():
            key_of = _route_key(kind)
            keys = listed_keys[kind] = set()
            for entry in entries:
                key = key_of(entry)
                keys.add(key)
                if not any(
                    self._topics[t].state in (*WANTED, TopicState.RELEASING)
                    for t in self._routes[kind].get(key, ())
                ):
                    stray = _stray(kind, entry)
                    if stray is not None:
                        extra.append(stray)
                        self._strays[stray] = None
        for topic, state in self._topics.items():
            confirmed = state.state is TopicState.CONFIRMED and state.uid is not None
            if confirmed and topic.route(state.uid) not in listed_keys.get(topic.kind, ()):  # type: ignore[arg-type]
                missing.append(topic)
        for topic in missing:
            state = self._topics[topic]
            after = next_state(state.state, TopicEvent.MISSING)
            assert after is not None
            assert state.uid is not None
            state.state = after
            self._unroute(topic, state.uid)
            state.gap_since, state.uid = state.confirmed_at or listing.since, None
        if missing or extra:
            log.warning(
                "getMySubscriptions: the server lost %d subscriptions (asked again), held %d unwanted "
                "(released)",
                len(missing),
                len(extra),
            )
        return [Checked(listing.since, True, tuple(missing), tuple(extra)), *self.pump(now)]


def _with_frames(frames: list[str], outcomes: list[MarketDataOutcome]) -> list[MarketDataOutcome]:
    """``outcomes`` with the frames of any :class:`Send` among them, and ``frames`` first, merged
    into one Send at the front (frames leave in the order they were decided)."""
    merged = (*frames, *(frame for o in outcomes if isinstance(o, Send) for frame in o.frames))
    out: list[MarketDataOutcome] = [Send(merged)] if merged else []
    return out + [o for o in outcomes if not isinstance(o, Send)]


def check_candle_settings(held: Iterable[Topic], topics: Iterable[Topic]) -> None:
    """Raise :class:`~rxinvest.errors.ConfigurationError` if ``topics`` want candles with another
    ``waiting_close`` than ``held`` (or each other): the API keeps one setting per instrument and
    interval on a stream, and a client keeps one for all its streams, so that a topic never depends
    on the connection it lands on."""
    # One pass over the held topics, then the new ones: the first setting of each instrument and
    # interval is held, and a later different one is the conflict.
    setting_of: dict[tuple[str, m.SubscriptionInterval], bool] = {}
    for topic in (*held, *topics):
        if topic.kind is not Kind.CANDLES:
            continue
        setting = setting_of.setdefault((topic.instrument_id, topic.interval), topic.waiting_close)
        if setting != topic.waiting_close:
            raise ConfigurationError(
                f"{topic.instrument_id} {topic.interval.name} candles are already subscribed "
                f"with waiting_close={setting}; the API keeps one setting per stream"
            )


def _stray(kind: Kind, entry: Any) -> Topic | None:
    """The topic that names a listed server subscription by its instrument uid (None if the entry
    cannot be named: it is then left alone, and logged)."""
    spec = kind.spec
    params = {
        name: getattr(entry, name)
        for name in (*spec.instrument_params, *spec.request_params)
        if hasattr(entry, name)
    }
    try:
        return Topic(kind, entry.instrument_uid, **params)
    except ConfigurationError as exc:
        log.warning(
            "cannot release the listed %s subscription of %r: %s", kind.value, entry.instrument_uid, exc
        )
        return None


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
