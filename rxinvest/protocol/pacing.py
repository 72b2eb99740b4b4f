"""How fast subscription requests may leave, and how many MarketDataStream connections a token may
hold: pure arithmetic on injected times, shared by the connections of one client.

Rules (``../shared/spec`` §1.7, as the API states them and as users meet them):

* The API takes at most 100 subscription requests a minute (whether per token or per stream is not
  documented): past it, every entry of a request comes back TOO_MANY_REQUESTS. A
  :class:`RequestBudget` keeps a client *under* its limit over any sliding window, for every
  connection of the token together (the safe reading). A request waits for the budget instead of
  being refused by the server.
* When the server refuses anyway (another program on the token, a stricter proxy), a
  :class:`Throttle` holds the connection's requests back for a while that doubles with each refusal
  in a row (1 s up to 60 s) and starts over at the next request the server takes.
* A MarketDataStream holds at most 300 counted subscriptions (candles, books, trades; statuses and
  last prices are not counted). A token opens at most 16 MarketDataStreams at grades 1-4; the open
  count refreshes every 2 minutes, so :class:`ShardPlan` keeps one stream in reserve by default (a
  reconnect must not be refused). Topics beyond one connection's room go to the next connection,
  opened only when needed; a topic already held stays where it is (never moved while live). Where the
  server's count is stricter than ours (it refuses with LIMIT_IS_EXCEEDED: whether last prices count
  is undocumented), that connection takes nothing new until something leaves it, and the refused
  topic goes to the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from rxinvest.errors import ConfigurationError
from rxinvest.protocol.topic import Topic

__all__ = [
    "DEFAULT_REQUESTS_PER_MINUTE",
    "DEFAULT_STREAM_BUDGET",
    "SUBSCRIPTIONS_PER_STREAM",
    "Limits",
    "RequestBudget",
    "ShardPlan",
    "Throttle",
]

#: Subscription requests a client sends in any minute by default: the API's 100, less a margin for
#: getMySubscriptions checks and for the clock skew between us and the server.
DEFAULT_REQUESTS_PER_MINUTE = 90
#: Counted subscriptions (candles, order books, trades together) one MarketDataStream holds.
SUBSCRIPTIONS_PER_STREAM = 300
#: MarketDataStreams a client opens at most: the grade 1-4 limit of 16, less one kept for reconnects.
DEFAULT_STREAM_BUDGET = 15


@attrs.frozen
class Limits:
    """The API limits a client keeps to, per token (``connect(limits=...)``).

    * ``requests`` subscription requests in any ``window`` seconds (default 90 a minute, under the
      API's 100; None: unpaced, for a server without the limit);
    * ``streams``: MarketDataStream connections at most (default 15: grade 1-4's 16, less one kept
      for reconnects; grade 5 allows 64); ``subscriptions`` counted subscriptions a connection holds.
    * ``linger``: seconds a subscribe or dispose waits for others of its burst, to share their
      requests (a loop over 100 sources then costs a request or two, not 100 of the budget).
    """

    requests: int | None = DEFAULT_REQUESTS_PER_MINUTE
    window: float = 60.0
    streams: int = DEFAULT_STREAM_BUDGET
    subscriptions: int = SUBSCRIPTIONS_PER_STREAM
    linger: float = 0.02

    def __attrs_post_init__(self) -> None:
        if self.requests is not None:
            RequestBudget(self.requests, self.window)  # the same checks, once, at the call
        ShardPlan(self.subscriptions, self.streams)
        if type(self.linger) not in (int, float) or not 0 <= self.linger <= 5:
            raise ConfigurationError(f"linger must be 0 to 5 seconds, not {self.linger!r}")

    @property
    def plan(self) -> ShardPlan:
        return ShardPlan(self.subscriptions, self.streams)


class RequestBudget:
    """At most ``limit`` requests in any ``window`` seconds (a sliding window of send times).

    Not thread-safe: the client shares one between its connections under a lock of its own.
    """

    def __init__(self, limit: int = DEFAULT_REQUESTS_PER_MINUTE, window: float = 60.0) -> None:
        if type(limit) is not int or limit < 1:
            raise ConfigurationError(f"a request budget needs a limit of at least 1, not {limit!r}")
        if type(window) not in (int, float) or not window > 0:
            raise ConfigurationError(f"a request budget needs a window of seconds > 0, not {window!r}")
        self.limit = limit
        self.window = timedelta(seconds=window)
        self._sent: deque[datetime] = deque()  # send times inside the window, oldest first

    def __repr__(self) -> str:
        return f"RequestBudget(limit={self.limit}, window={self.window.total_seconds():g})"

    def _expire(self, now: datetime) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def used(self, now: datetime) -> int:
        """Requests sent in the window that ends at ``now``."""
        self._expire(now)
        return len(self._sent)

    def take(self, now: datetime, wanted: int) -> int:
        """Record up to ``wanted`` requests sent at ``now``; returns how many may go (0 to wanted)."""
        self._expire(now)
        granted = max(0, min(wanted, self.limit - len(self._sent)))
        self._sent.extend([now] * granted)
        return granted

    def next_free(self, now: datetime) -> datetime:
        """When one more request may go (``now`` if it may already)."""
        self._expire(now)
        return now if len(self._sent) < self.limit else self._sent[0] + self.window


@attrs.define
class Throttle:
    """Back-off after the server refused requests as too many: 1 s, doubling to 60 s at most."""

    first: float = 1.0
    cap: float = 60.0
    until: datetime | None = None
    _delay: float = 0.0

    def refused(self, now: datetime) -> None:
        self._delay = min(self.cap, self._delay * 2 or self.first)
        self.until = now + timedelta(seconds=self._delay)

    def accepted(self) -> None:
        self._delay, self.until = 0.0, None

    def holds(self, now: datetime) -> bool:
        return self.until is not None and now < self.until


@attrs.frozen
class ShardPlan:
    """Where new topics go among a token's MarketDataStream connections (pure).

    ``capacity`` counted subscriptions a connection, ``streams`` connections at most.
    """

    capacity: int = SUBSCRIPTIONS_PER_STREAM
    streams: int = DEFAULT_STREAM_BUDGET

    def __attrs_post_init__(self) -> None:
        for name in ("capacity", "streams"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an int of at least 1, not {value!r}")

    def place(
        self,
        topics: Iterable[Topic],
        held: Sequence[Mapping[Topic, object]],
        full: Collection[int] = (),
    ) -> tuple[dict[int, list[Topic]], list[Topic]]:
        """Connections for ``topics``, given what each connection holds now (``held[i]``: its
        topics; only the keys are read) and which ones the server said are ``full``; returns
        ``(connection index -> topics, topics with no room)``.

        A topic held already goes to its connection (one server subscription, counted once). Else
        it goes to the first connection, in index order, that is not full and, for a counted topic,
        has room (so the holes that disposing leaves fill first); then to a new connection while the
        budget allows; past it, it has no room.
        """
        load = [sum(1 for t in topics_held if t.kind.spec.counted) for topics_held in held]
        where: dict[int, list[Topic]] = {}
        placed: dict[Topic, int] = {}
        no_room: list[Topic] = []
        for topic in topics:
            index = placed.get(topic)
            if index is None:
                index = next((i for i, topics_held in enumerate(held) if topic in topics_held), None)
            if index is None:
                counted = topic.kind.spec.counted
                index = next(
                    (
                        i
                        for i, used in enumerate(load)
                        if i not in full and (not counted or used < self.capacity)
                    ),
                    None,
                )
                if index is None and len(load) < self.streams:
                    index = len(load)
                    load.append(0)
                if index is None:
                    no_room.append(topic)
                    continue
                load[index] += counted
            placed[topic] = index
            where.setdefault(index, []).append(topic)
        return where, no_room
