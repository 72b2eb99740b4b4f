"""Lifecycle events of the client, delivered on ``Client.statuses`` (not wire messages)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from rxinvest.errors import RxInvestError
from rxinvest.protocol import Topic

__all__ = ["ConnectionState", "ConnectionStatus", "Metrics", "SubscriptionCheck", "SubscriptionStatus"]


class ConnectionState(enum.StrEnum):
    """Where one stream connection is. A ``StrEnum``: ``state == "connected"`` holds too.

    ``IDLE`` and ``CONNECTING`` are never announced on ``Client.statuses``; the others are, as
    they are reached.
    """

    IDLE = "idle"  # no transport: nobody subscribed yet, or it ended and a subscriber may start it
    CONNECTING = "connecting"  # a transport runs; the connection is not open yet
    CONNECTED = "connected"  # open; every wanted subscription has been requested on it
    RECONNECTING = "reconnecting"  # lost (``error`` says why); a new connection follows
    DISCONNECTED = "disconnected"  # lost while nobody needed it: not re-opened
    CLOSED = "closed"  # for good: the client was closed, or the server refused for good


@attrs.frozen
class ConnectionStatus:
    """A stream connection reached ``state``: ``CONNECTED``, ``RECONNECTING`` (``error`` says why; a
    new connection follows and every subscription is made again), ``DISCONNECTED`` (not needed any
    more) or ``CLOSED`` (``error`` is None when the client was closed). ``shard`` tells the
    connections of one stream apart: market data spreads over several past 300 subscriptions."""

    stream: str
    state: ConnectionState
    error: RxInvestError | None = None
    shard: int = 0

    def __str__(self) -> str:
        name = f"{self.stream}#{self.shard}" if self.shard else self.stream
        return f"{name} {self.state.value}" + (f": {self.error}" if self.error else "")


@attrs.frozen
class SubscriptionStatus:
    """The API's answer to one subscription: ``target`` is the market-data
    :class:`~rxinvest.protocol.Topic` or the account id; ``error`` is set when ``confirmed`` is False.
    ``stream`` is the stream's method name (``"OrderStateStream"`` ...): an account id alone does not
    tell which of its streams answered."""

    target: Topic | str
    confirmed: bool
    error: RxInvestError | None
    tracking_id: str
    instrument_uid: str = ""
    stream: str = ""

    def __str__(self) -> str:
        """Compact: ``confirmed order_books SBER_TQBR depth=20``, or the refusal's error, which names
        the target once (``last_prices NOPE refused (code SUBSCRIPTION_STATUS_...)``)."""
        return f"confirmed {self.target}" if self.confirmed else str(self.error)


@attrs.frozen
class SubscriptionCheck:
    """What :meth:`Client.check <rxinvest.streams.Client.check>` found on ``connections`` open
    market-data connections: subscriptions the server had lost (``missing``: subscribed again) and
    subscriptions it held that nobody wants (``released``, named by instrument uid). ``complete``
    is False when a connection did not answer in time."""

    connections: int
    complete: bool
    missing: tuple[Topic, ...] = ()
    released: tuple[Topic, ...] = ()

    def __str__(self) -> str:
        state = "" if self.complete else " (incomplete)"
        return (
            f"{self.connections} connections checked{state}: {len(self.missing)} missing, "
            f"{len(self.released)} released"
        )


@attrs.frozen
class Metrics:
    """One snapshot of ``client.metrics()``: how the client is doing, since it started.

    * ``messages``: events received from the streams, per event class name (``"Trade"``);
      ``rates`` the same per second over the last ``interval`` seconds.
    * ``backlog``: events waiting in every subscriber's mailbox now; ``deepest`` the most any one
      subscription has waited; ``dropped`` (over a backlog limit) and ``conflated`` (replaced by a
      newer one) per delivery policy (``"all"``, ``"latest"``).
    * ``reconnects``, ``gaps`` (Gap markers after reconnects, per target), ``malformed`` frames;
      ``recovered`` account events fetched over REST after gaps, ``recoveries_failed`` gaps that
      stayed open.
    * ``requests_used`` subscription requests in the budget's window now, of ``request_budget``
      (None: unpaced); ``subscriptions`` wanted topics per market-data connection;
      ``connections`` open stream connections.
    """

    time: datetime
    interval: float
    messages: Mapping[str, int]
    rates: Mapping[str, float]
    backlog: int
    deepest: int
    dropped: Mapping[str, int]
    conflated: Mapping[str, int]
    reconnects: int
    gaps: int
    malformed: int
    recovered: int
    recoveries_failed: int
    requests_used: int
    request_budget: int | None
    subscriptions: tuple[int, ...]
    connections: int

    def __str__(self) -> str:
        """One line for logs and the demo's summary."""
        rate = sum(self.rates.values())
        return (
            f"{sum(self.messages.values())} events ({rate:.0f}/s), backlog {self.backlog}, "
            f"dropped {sum(self.dropped.values())}, conflated {sum(self.conflated.values())}, "
            f"reconnects {self.reconnects}, gaps {self.gaps} ({self.recovered} events recovered, "
            f"{self.recoveries_failed} failed), requests {self.requests_used}/"
            f"{self.request_budget or '-'}, subscriptions {list(self.subscriptions)} on "
            f"{self.connections} connections"
        )
