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
    THROTTLE (the answer says TOO_MANY_REQUESTS): REQUESTED -> UNSENT, ABANDONED -> FORGOTTEN.
    MISSING (getMySubscriptions does not list it): CONFIRMED -> UNSENT.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Any, TypeVar

import attrs

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import BOOK_DEPTHS, INTERVAL_LENGTH, Kind

__all__ = [
    "TRANSITIONS",
    "WANTED",
    "Topic",
    "TopicEvent",
    "TopicState",
    "advance",
    "interval_of",
    "member_of",
    "next_state",
]


def _kind(name: str) -> Kind:
    return Kind.parse(name)


def _exactly(*types: type | None) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    """A validator: the value's type is one of ``types`` exactly (``True`` is not an ``int``, ``10.0``
    is not a depth), else ConfigurationError naming the field and what it takes."""
    allowed = tuple(type(None) if t is None else t for t in types)
    names = " or ".join("None" if t is None else t.__name__ for t in types)

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) not in allowed:
            raise ConfigurationError(f"{attribute.name} must be {names}, not {value!r}")

    return check


_M = TypeVar("_M", bound=enum.Enum)


@attrs.frozen(cache_hash=True)  # hashed for every event routed: enums hash slowly in Python
class Topic:
    """What a subscriber asks for: one instrument, one kind, its parameters.

    ``kind`` is a :class:`~rxinvest.model.Kind` (its name is accepted too). ``instrument_id`` is as
    the user gave it (FIGI, uid or ``TICKER_CLASSCODE``). Parameters carry the proto field names;
    those that do not apply to the kind stay at their defaults. Every field is checked here, so a
    topic that exists can always be encoded: :class:`~rxinvest.errors.ConfigurationError` for an
    unknown kind, a value of the wrong type (enums must be members, flags ``bool``, the depth an
    ``int``), an empty instrument id, a book depth the API does not serve, or candles without an
    interval.
    """

    kind: Kind = attrs.field(converter=_kind)
    instrument_id: str = attrs.field(validator=_exactly(str))
    interval: m.SubscriptionInterval = attrs.field(
        default=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED,
        validator=_exactly(m.SubscriptionInterval),
    )
    waiting_close: bool = attrs.field(default=False, validator=_exactly(bool))
    candle_source_type: m.CandleSourceFilter | None = attrs.field(
        default=None, validator=_exactly(m.CandleSourceFilter, None)
    )
    depth: int = attrs.field(default=0, validator=_exactly(int))
    order_book_type: m.OrderBookType = attrs.field(
        default=m.OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED, validator=_exactly(m.OrderBookType)
    )
    trade_source: m.TradeSourceType = attrs.field(
        default=m.TradeSourceType.TRADE_SOURCE_UNSPECIFIED, validator=_exactly(m.TradeSourceType)
    )
    with_open_interest: bool = attrs.field(default=False, validator=_exactly(bool))

    def __attrs_post_init__(self) -> None:
        if not self.instrument_id.strip():
            raise ConfigurationError("an instrument id must not be empty")
        if self.kind is Kind.ORDER_BOOKS and self.depth not in BOOK_DEPTHS:
            raise ConfigurationError(f"depth must be one of {BOOK_DEPTHS}, not {self.depth!r}")
        if (
            self.kind is Kind.CANDLES
            and self.interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED
        ):
            raise ConfigurationError("a candle interval is required")

    def __str__(self) -> str:
        """Compact, for logs and statuses: ``order_books SBER_TQBR depth=20``."""
        params = " ".join(
            f"{name}={_short(getattr(self, name))}"
            for name in (*self.kind.spec.instrument_params, *self.kind.spec.request_params)
            if getattr(self, name) != attrs.fields_dict(Topic)[name].default
        )
        return f"{self.kind.value} {self.instrument_id}" + (f" {params}" if params else "")

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
    THROTTLE = "throttle"  # remote: its answer entry says TOO_MANY_REQUESTS: ask again later
    MISSING = "missing"  # remote: getMySubscriptions does not list it: ask again
    RECONNECT = "reconnect"  # a new connection opened


_S, _E = TopicState, TopicEvent

#: The whole lifecycle: ``TRANSITIONS[state][event]`` is the next state; a missing pair is not a move.
TRANSITIONS: dict[TopicState, dict[TopicEvent, TopicState]] = {
    _S.UNSENT: {_E.SEND: _S.REQUESTED, _E.UNWANT: _S.FORGOTTEN, _E.RECONNECT: _S.UNSENT},
    _S.REQUESTED: {
        _E.ACCEPT: _S.CONFIRMED,
        _E.REFUSE: _S.REJECTED,
        _E.THROTTLE: _S.UNSENT,
        _E.UNWANT: _S.ABANDONED,
        _E.RECONNECT: _S.UNSENT,
    },
    _S.CONFIRMED: {_E.UNWANT: _S.RELEASING, _E.MISSING: _S.UNSENT, _E.RECONNECT: _S.UNSENT},
    _S.ABANDONED: {
        _E.WANT: _S.REQUESTED,
        _E.ACCEPT: _S.RELEASING,
        _E.REFUSE: _S.REJECTED,
        _E.THROTTLE: _S.FORGOTTEN,
        _E.RECONNECT: _S.FORGOTTEN,
    },
    _S.RELEASING: {_E.WANT: _S.CONFIRMED, _E.LET_GO: _S.FORGOTTEN, _E.RECONNECT: _S.FORGOTTEN},
    _S.REJECTED: {},
    _S.FORGOTTEN: {},
}

#: The states in which a topic has subscribers (rule 2).
WANTED = frozenset({_S.UNSENT, _S.REQUESTED, _S.CONFIRMED})
_REMOTE = frozenset({_E.ACCEPT, _E.REFUSE, _E.THROTTLE, _E.MISSING})


def next_state(state: TopicState, event: TopicEvent) -> TopicState | None:
    """The state after ``event``, or None when the table has no such move."""
    return TRANSITIONS[state].get(event)


def advance(state: TopicState, event: TopicEvent) -> TopicState:
    """The state after a local ``event`` (rule 3: a move the table lacks is a bug, not an input)."""
    after = TRANSITIONS[state].get(event)
    if after is None or event in _REMOTE:
        raise AssertionError(f"no move from {state.name} on {event.name}")
    return after


def _short(value: object) -> str:
    """An enum member without its type prefix (``ONE_MINUTE``); anything else as ``str``."""
    if isinstance(value, enum.Enum):
        return _SHORT_NAMES.get(type(value), {}).get(value, value.name)
    return str(value)


def _prefix(cls: type[enum.Enum]) -> str:
    names = [member.name for member in cls]
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


_SHORT_NAMES: dict[type, dict[Any, str]] = {
    cls: {member: member.name.removeprefix(_prefix(cls)) for member in cls}
    for cls in (m.SubscriptionInterval, m.OrderBookType, m.TradeSourceType, m.CandleSourceFilter)
}


# --- what users may write for a parameter ------------------------------------------------------------


def member_of(cls: type[_M], value: object, what: str) -> _M:
    """``value`` as a member of ``cls``: the member itself, its name, or its name without the type's
    prefix in any case (``"exchange"`` for ``ORDERBOOK_TYPE_EXCHANGE``); ConfigurationError else."""
    if type(value) is cls:
        return value
    if isinstance(value, str):
        name = value.strip().upper()
        for member in cls:
            if name in (member.name, _SHORT_NAMES[cls][member]):
                return member
    choices = ", ".join(_SHORT_NAMES[cls][member] for member in cls)
    raise ConfigurationError(f"{what} must be {cls.__name__} or one of {choices}, not {value!r}")


_LENGTHS = {length: interval for interval, length in INTERVAL_LENGTH.items()}
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400, "w": 604_800}
_LENGTH_TEXT = re.compile(r"^(\d+)\s*(s|m|min|h|d|w|mo)$")


def interval_of(value: object) -> m.SubscriptionInterval:
    """A candle interval from what users write: a ``SubscriptionInterval``, its name
    (``"ONE_MINUTE"``, ``"2_min"``), a length (``"1m"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"1w"``,
    ``"1mo"``) or a ``timedelta`` of one of the API's intervals. ConfigurationError otherwise,
    UNSPECIFIED included."""
    interval: m.SubscriptionInterval | None = None
    if type(value) is m.SubscriptionInterval:
        interval = value
    elif isinstance(value, timedelta):
        interval = _LENGTHS.get(value)
    elif isinstance(value, str):
        match = _LENGTH_TEXT.match(value.strip().lower())
        if match and match[2] == "mo":
            interval = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_MONTH if match[1] == "1" else None
        elif match:
            interval = _LENGTHS.get(timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]]))
        else:
            try:
                interval = member_of(m.SubscriptionInterval, value, "interval")
            except ConfigurationError:
                interval = None
    if interval is None or interval is m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_UNSPECIFIED:
        raise ConfigurationError(
            f"unknown candle interval {value!r}: give a SubscriptionInterval, its name (ONE_MINUTE), "
            "a length such as '1m', '5m', '1h', '1d', '1w', '1mo', or a timedelta of one of those"
        )
    return interval
