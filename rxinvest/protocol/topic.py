"""A market-data :class:`Topic`, and its lifecycle on one connection as an explicit state machine.

Rules of this module (stated first, as h11's ``_state.py`` does):

1. Every topic a session knows is in exactly one :class:`TopicState`; the session changes it only
   through :func:`advance` (local events) and :func:`next_state` (answers), so the only moves are
   the rows of :data:`TRANSITIONS`.
2. A topic is *wanted* (has subscribers) exactly in UNSENT, REQUESTED and CONFIRMED; it has none in
   ABANDONED and RELEASING. REJECTED and FORGOTTEN are terminal: the session drops the topic, and a
   later subscriber starts a new life in UNSENT.
3. Local events (WANT, UNWANT, SEND, LET_GO, RECONNECT) come from the owner and must fit the table:
   anything else is a bug and raises ``AssertionError``. Remote events (ACCEPT, REFUSE: the server's
   answer) that do not fit, such as an answer to a request repeated before a reconnect, are ignored:
   the server can never put the session in a state the table does not have.

Theory of operation. A SUBSCRIBE costs one of 100 requests a minute and an answer that comes later,
in request order, one entry per instrument. A topic is UNSENT until its request leaves, REQUESTED
until its entry comes back, then CONFIRMED (events are routed to it) or REJECTED. When its last
subscriber leaves, it cannot simply be unsubscribed: while its own answer is on the way it is
ABANDONED (the answer still has to be read), and once confirmed it is RELEASING until no pending
answer could name the same instrument under another id (``SBER_TQBR`` and its uid share one server
subscription). Then it is let go (LET_GO): UNSUBSCRIBE is sent unless another wanted topic holds the
same subscription. A new connection (RECONNECT) starts over: wanted topics are UNSENT again, the
others are forgotten, since the server kept nothing.

::

      first subscriber
             │
             v
          UNSENT ───SEND───> REQUESTED ───ACCEPT───> CONFIRMED
             │                 │    │   ^               │   ^
           UNWANT           REFUSE UNWANT WANT        UNWANT WANT
             v                 v    v   │               v   │
         FORGOTTEN        REJECTED  ABANDONED ──ACCEPT──> RELEASING ──LET_GO──> FORGOTTEN
                              ^         │
                              └─REFUSE──┘

    RECONNECT: UNSENT, REQUESTED, CONFIRMED -> UNSENT; ABANDONED, RELEASING -> FORGOTTEN.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Any

import attrs

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import BOOK_DEPTHS, Kind

__all__ = ["TRANSITIONS", "WANTED", "Topic", "TopicEvent", "TopicState", "advance", "next_state"]


def _kind(name: str) -> Kind:
    return Kind.parse(name)


@attrs.frozen(cache_hash=True)  # hashed for every event routed: enums hash slowly in Python
class Topic:
    """What a subscriber asks for: one instrument, one kind, its parameters.

    ``kind`` is a :class:`~rxinvest.model.Kind` (its name is accepted too). ``instrument_id`` is as
    the user gave it (FIGI, uid or ``TICKER_CLASSCODE``). Parameters carry the proto field names;
    those that do not apply to the kind stay at their defaults. Raises
    :class:`~rxinvest.errors.ConfigurationError` for an unknown kind, a book depth the API does not
    serve, or candles without an interval.
    """

    kind: Kind = attrs.field(converter=_kind)
    instrument_id: str
    interval: m.SubscriptionInterval = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
    waiting_close: bool = False
    candle_source_type: m.CandleSourceFilter | None = None
    depth: int = 0
    order_book_type: m.OrderBookType = m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    trade_source: m.TradeSourceType = m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED
    with_open_interest: bool = False

    def __attrs_post_init__(self) -> None:
        if self.kind is Kind.ORDER_BOOKS and self.depth not in BOOK_DEPTHS:
            raise ConfigurationError(f"depth must be one of {BOOK_DEPTHS}, not {self.depth!r}")
        if (
            self.kind is Kind.CANDLES
            and self.interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
        ):
            raise ConfigurationError("a candle interval is required")

    def request_group(self) -> tuple[Any, ...]:
        """Topics with equal groups travel in one request (the request-level parameters agree)."""
        return (self.kind, *(getattr(self, name) for name in self.kind.spec.request_params))

    def route(self, uid: str) -> Hashable:
        """The key, among the routes of its kind, by which this topic's events are recognised once its
        instrument uid is known: the uid, or (uid, the kind's ``route`` parameter). The session
        computes the same key from each market event."""
        attribute = self.kind.spec.route
        return uid if attribute is None else (uid, getattr(self, attribute))


class TopicState(enum.Enum):
    UNSENT = "unsent"  # wanted; its SUBSCRIBE waits for the next request or connection
    REQUESTED = "requested"  # wanted; SUBSCRIBE sent, the answer has not come
    CONFIRMED = "confirmed"  # wanted; the server holds it and its events are routed to it
    ABANDONED = "abandoned"  # unwanted before its answer came: the answer must still be read
    RELEASING = "releasing"  # unwanted and confirmed: held while an answer could share it
    REJECTED = "rejected"  # terminal: the API refused it
    FORGOTTEN = "forgotten"  # terminal: let go (UNSUBSCRIBE sent if nobody shares it)


class TopicEvent(enum.Enum):
    WANT = "want"  # the first subscriber came (a new topic starts UNSENT instead)
    UNWANT = "unwant"  # the last subscriber left
    SEND = "send"  # its SUBSCRIBE left in a request
    ACCEPT = "accept"  # remote: its answer entry says SUCCESS
    REFUSE = "refuse"  # remote: its answer entry names another status
    LET_GO = "let_go"  # no pending answer can share it: release it now
    RECONNECT = "reconnect"  # a new connection opened


_S, _E = TopicState, TopicEvent

#: The whole lifecycle: ``TRANSITIONS[state][event]`` is the next state; a missing pair is not a move.
TRANSITIONS: dict[TopicState, dict[TopicEvent, TopicState]] = {
    _S.UNSENT: {_E.SEND: _S.REQUESTED, _E.UNWANT: _S.FORGOTTEN, _E.RECONNECT: _S.UNSENT},
    _S.REQUESTED: {
        _E.ACCEPT: _S.CONFIRMED,
        _E.REFUSE: _S.REJECTED,
        _E.UNWANT: _S.ABANDONED,
        _E.RECONNECT: _S.UNSENT,
    },
    _S.CONFIRMED: {_E.UNWANT: _S.RELEASING, _E.RECONNECT: _S.UNSENT},
    _S.ABANDONED: {
        _E.WANT: _S.REQUESTED,
        _E.ACCEPT: _S.RELEASING,
        _E.REFUSE: _S.REJECTED,
        _E.RECONNECT: _S.FORGOTTEN,
    },
    _S.RELEASING: {_E.WANT: _S.CONFIRMED, _E.LET_GO: _S.FORGOTTEN, _E.RECONNECT: _S.FORGOTTEN},
    _S.REJECTED: {},
    _S.FORGOTTEN: {},
}

#: The states in which a topic has subscribers (rule 2).
WANTED = frozenset({_S.UNSENT, _S.REQUESTED, _S.CONFIRMED})
_REMOTE = frozenset({_E.ACCEPT, _E.REFUSE})


def next_state(state: TopicState, event: TopicEvent) -> TopicState | None:
    """The state after ``event``, or None when the table has no such move."""
    return TRANSITIONS[state].get(event)


def advance(state: TopicState, event: TopicEvent) -> TopicState:
    """The state after a local ``event`` (rule 3: a move the table lacks is a bug, not an input)."""
    after = TRANSITIONS[state].get(event)
    if after is None or event in _REMOTE:
        raise AssertionError(f"no move from {state.name} on {event.name}")
    return after
