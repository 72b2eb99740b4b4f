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
on its way; the UNSUBSCRIBE then comes out of ``receive`` as a :class:`Send`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import attrs

from rxinvest import model as m
from rxinvest.errors import DecodeError
from rxinvest.protocol.liveness import Liveness
from rxinvest.wire import decoder, encode

__all__ = [
    "Confirmed",
    "Delivered",
    "Malformed",
    "MarketDataSession",
    "Rejected",
    "Send",
    "StreamFailed",
    "Topic",
]

_SUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_SUBSCRIBE
_UNSUBSCRIBE = m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
_SUCCESS = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
KINDS = ("candles", "order_books", "trades", "info", "last_prices")


@attrs.frozen(cache_hash=True)  # hashed for every event routed: enums hash slowly in Python
class Topic:
    """What a subscriber asks for: one instrument, one kind, its parameters.

    ``instrument_id`` is as the user gave it (FIGI, uid or ``TICKER_CLASSCODE``). Parameters that do
    not apply to the kind stay at their defaults.
    """

    kind: str
    instrument_id: str
    interval: m.SubscriptionInterval = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    waiting_close: bool = False
    candle_source: m.CandleSourceFilter | None = None
    depth: int = 0
    book_type: m.OrderBookType = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    trade_source: m.TradeSourceType = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    with_open_interest: bool = False

    def __attrs_post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown topic kind {self.kind!r}")

    def request_group(self) -> tuple[Any, ...]:
        """Topics with equal groups travel in one request (the request-level parameters agree)."""
        return (self.kind, self.waiting_close, self.candle_source, self.trade_source, self.with_open_interest)

    def route(self, uid: str) -> tuple[Any, ...]:
        """The key by which this topic's events are recognised, once its instrument uid is known."""
        if self.kind == "candles":
            return ("candles", uid, self.interval)
        if self.kind == "order_books":
            return ("order_books", uid, self.depth)
        return (self.kind, uid)


# --- what a session reports ---------------------------------------------------------------------------


class Delivered(NamedTuple):
    """An event for the subscribers of ``topics`` (a named tuple: built for every event received)."""

    topics: tuple[Topic, ...]
    event: Any


@attrs.frozen
class Confirmed:
    topic: Topic
    subscription_id: str
    instrument_uid: str
    tracking_id: str


@attrs.frozen
class Rejected:
    """The API refused ``topic``; it is forgotten (subscribe again to retry)."""

    topic: Topic
    status: m.SubscriptionStatus
    tracking_id: str


@attrs.frozen
class StreamFailed:
    """The server reported a stream-level error in-band (an ``RpcStatus`` frame)."""

    status: m.RpcStatus


@attrs.frozen
class Malformed:
    """A frame that could not be decoded; the stream goes on."""

    error: DecodeError


@attrs.frozen
class Send:
    """Frames the owner must send now (releases that had to wait for an answer)."""

    frames: tuple[str, ...]


@attrs.define
class _State:
    refs: int = 0
    uid: str | None = None  # known once the server confirmed
    confirmed: bool = False
    subscription_id: str = ""


class MarketDataSession(Liveness):
    """One MarketDataStream connection's subscriptions, ping settings and liveness.

    ``ping_delay`` (seconds) is asked of the server on every connection; the stream counts as dead
    when nothing (data or ping) arrives for ``watchdog_factor`` times that long.
    """

    def __init__(
        self, *, dialect: str = "json", ping_delay: float | None = None, watchdog_factor: float = 2.5
    ) -> None:
        self.dialect = dialect
        self.ping_delay = ping_delay
        self.watchdog_factor = watchdog_factor
        self._topics: dict[Topic, _State] = {}
        self._routes: dict[tuple[Any, ...], tuple[Topic, ...]] = {}  # rebuilt on change, read per event
        self._decode = decoder("MarketDataStream")
        self._unsent: list[Topic] = []
        self._outstanding: dict[str, deque[tuple[m.SubscriptionAction, list[Topic]]]] = {
            k: deque() for k in KINDS
        }
        self._last_received: datetime | None = None

    # --- the owner's calls ---------------------------------------------------------------------------

    @property
    def topics(self) -> tuple[Topic, ...]:
        """Topics somebody subscribes to (confirmed or pending)."""
        return tuple(t for t, s in self._topics.items() if s.refs > 0)

    def refs(self, topic: Topic) -> int:
        state = self._topics.get(topic)
        return state.refs if state else 0

    def subscribe(self, topics: Iterable[Topic]) -> list[str]:
        """Count one more subscriber of each topic; frames for the topics the server does not hold."""
        for topic in topics:
            state = self._topics.get(topic)
            if state is None:  # a topic released but not yet let go is still held: nothing to send
                state = self._topics[topic] = _State()
                self._unsent.append(topic)
            state.refs += 1
        return self._flush_subscribe()

    def unsubscribe(self, topics: Iterable[Topic]) -> list[str]:
        """Count one subscriber less of each topic; UNSUBSCRIBE frames for what nobody wants now."""
        for topic in topics:
            state = self._topics.get(topic)
            if state is None or state.refs == 0:
                continue
            state.refs -= 1
            if state.refs == 0 and topic in self._unsent:  # never sent: nothing to undo on the server
                self._unsent.remove(topic)
                del self._topics[topic]
        return self._settle()

    def connected(self, now: datetime) -> list[str]:
        """A new connection is open: ping settings, then every wanted topic subscribed again."""
        self.alive(now)
        for queue in self._outstanding.values():
            queue.clear()
        frames = []
        if self.ping_delay is not None:
            frames.append(
                encode(m.PingDelaySettings(ping_delay_ms=round(self.ping_delay * 1000)), dialect=self.dialect)
            )
        self._routes.clear()
        self._unsent = []
        for topic, state in list(self._topics.items()):
            if state.refs > 0:
                state.confirmed, state.uid = False, None
                self._unsent.append(topic)
            else:
                del self._topics[topic]
        return frames + self._flush_subscribe()

    def receive(self, frame: str | bytes, now: datetime) -> list[Any]:
        """Feed one received frame; returns what it means (Delivered, Confirmed, Rejected, ...)."""
        self._last_received = now  # Liveness.alive, inlined: this runs for every frame
        try:
            event = self._decode(frame)
        except DecodeError as exc:
            return [Malformed(exc)]
        router = _ROUTERS.get(type(event))
        if router is not None:  # market data, the usual frame
            topics = self._routes.get(router(event))
            if not topics:
                return []
            if type(event) is m.OpenInterest:
                topics = tuple(t for t in topics if t.with_open_interest)
            return [Delivered(topics, event)] if topics else []
        kind = _RESPONSE_KINDS.get(type(event))
        if kind is not None:
            return self._answer(kind, event)
        if isinstance(event, m.RpcStatus):
            return [StreamFailed(event)]
        return []  # pings: they only count as signs of life

    # --- internals -----------------------------------------------------------------------------------

    def _settle(self) -> list[str]:
        """UNSUBSCRIBE frames for released topics (refs 0) that can be decided now.

        A released topic waits for its own answer, and, once its uid is known, for every pending
        answer of its kind (one of them could name the same instrument). It is let go silently when
        another wanted topic holds the same server subscription.
        """
        pending_kinds = {t.kind for t, s in self._topics.items() if not s.confirmed and s.refs > 0}
        released: list[Topic] = []
        for topic, state in list(self._topics.items()):
            if state.refs > 0 or not state.confirmed or topic.kind in pending_kinds:
                continue
            assert state.uid is not None
            route = topic.route(state.uid)
            shared = any(
                other != topic and self._topics[other].refs > 0 for other in self._routes.get(route, ())
            )
            self._forget(topic)
            if not shared:
                released.append(topic)
        return self._requests(released, _UNSUBSCRIBE)

    def _forget(self, topic: Topic) -> None:
        state = self._topics.pop(topic)
        if state.uid is not None:
            route = topic.route(state.uid)
            rest = tuple(t for t in self._routes.get(route, ()) if t != topic)
            if rest:
                self._routes[route] = rest
            else:
                self._routes.pop(route, None)

    def _flush_subscribe(self) -> list[str]:
        topics, self._unsent = self._unsent, []
        return self._requests(topics, _SUBSCRIBE)

    def _requests(self, topics: list[Topic], action: m.SubscriptionAction) -> list[str]:
        groups: dict[tuple[Any, ...], list[Topic]] = {}
        for topic in topics:
            groups.setdefault(topic.request_group(), []).append(topic)
        frames = []
        for group in groups.values():
            kind = group[0].kind
            self._outstanding[kind].append((action, group))
            frames.append(encode(_request(action, group), dialect=self.dialect))
        return frames

    def _answer(self, kind: str, response: Any) -> list[Any]:
        entries = getattr(response, _ENTRIES[kind])
        queue = self._outstanding[kind]
        if not queue:
            return []  # an answer to nothing we asked (getMySubscriptions from elsewhere): ignore
        action, topics = queue.popleft()
        if action is _UNSUBSCRIBE:
            return []  # the topics are already forgotten
        out: list[Any] = []
        for topic, entry in zip(topics, entries, strict=False):
            state = self._topics.get(topic)
            if state is None or state.confirmed:
                continue  # forgotten meanwhile, or an answer to a repeated request
            if entry.subscription_status is _SUCCESS:
                state.confirmed, state.uid, state.subscription_id = (
                    True,
                    entry.instrument_uid,
                    entry.subscription_id,
                )
                route = topic.route(entry.instrument_uid)
                self._routes[route] = (*self._routes.get(route, ()), topic)
                if state.refs > 0:
                    out.append(
                        Confirmed(topic, entry.subscription_id, entry.instrument_uid, response.tracking_id)
                    )
            else:
                del self._topics[topic]
                if state.refs > 0:
                    out.append(Rejected(topic, entry.subscription_status, response.tracking_id))
        frames = self._settle()
        if frames:
            out.append(Send(tuple(frames)))
        return out


_RESPONSE_KINDS = {
    m.SubscribeCandlesResponse: "candles",
    m.SubscribeOrderBookResponse: "order_books",
    m.SubscribeTradesResponse: "trades",
    m.SubscribeInfoResponse: "info",
    m.SubscribeLastPriceResponse: "last_prices",
}
_ENTRIES = {
    "candles": "candles_subscriptions",
    "order_books": "order_book_subscriptions",
    "trades": "trade_subscriptions",
    "info": "info_subscriptions",
    "last_prices": "last_price_subscriptions",
}


# The route of each market event, by type: the key its subscriptions are found under.
_ROUTERS: dict[type, Any] = {
    m.OrderBook: lambda e: ("order_books", e.instrument_uid, e.depth),
    m.Trade: lambda e: ("trades", e.instrument_uid),
    m.OpenInterest: lambda e: ("trades", e.instrument_uid),
    m.LastPrice: lambda e: ("last_prices", e.instrument_uid),
    m.Candle: lambda e: ("candles", e.instrument_uid, e.interval),
    m.TradingStatus: lambda e: ("info", e.instrument_uid),
}


def _request(action: m.SubscriptionAction, topics: list[Topic]) -> Any:
    first = topics[0]
    kind = first.kind
    if kind == "candles":
        return m.SubscribeCandlesRequest(
            subscription_action=action,
            instruments=tuple(
                m.CandleInstrument(instrument_id=t.instrument_id, interval=t.interval) for t in topics
            ),
            waiting_close=first.waiting_close,
            candle_source_type=first.candle_source,
        )
    if kind == "order_books":
        return m.SubscribeOrderBookRequest(
            subscription_action=action,
            instruments=tuple(
                m.OrderBookInstrument(
                    instrument_id=t.instrument_id, depth=t.depth, order_book_type=t.book_type
                )
                for t in topics
            ),
        )
    if kind == "trades":
        return m.SubscribeTradesRequest(
            subscription_action=action,
            instruments=tuple(m.TradeInstrument(instrument_id=t.instrument_id) for t in topics),
            trade_source=first.trade_source,
            with_open_interest=first.with_open_interest,
        )
    if kind == "info":
        return m.SubscribeInfoRequest(
            subscription_action=action,
            instruments=tuple(m.InfoInstrument(instrument_id=t.instrument_id) for t in topics),
        )
    return m.SubscribeLastPriceRequest(
        subscription_action=action,
        instruments=tuple(m.LastPriceInstrument(instrument_id=t.instrument_id) for t in topics),
    )
