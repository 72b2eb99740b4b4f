"""Lifecycle events of the client, delivered on ``Client.statuses`` (not wire messages)."""

from __future__ import annotations

import enum

import attrs

from rxinvest.errors import RxInvestError
from rxinvest.protocol import Topic

__all__ = ["ConnectionState", "ConnectionStatus", "SubscriptionStatus"]


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
    more) or ``CLOSED`` (``error`` is None when the client was closed)."""

    stream: str
    state: ConnectionState
    error: RxInvestError | None = None


@attrs.frozen
class SubscriptionStatus:
    """The API's answer to one subscription: ``target`` is the market-data
    :class:`~rxinvest.protocol.Topic` or the account id; ``error`` is set when ``confirmed`` is False."""

    target: Topic | str
    confirmed: bool
    error: RxInvestError | None
    tracking_id: str
    instrument_uid: str = ""
