"""What a protocol session reports: one class per outcome, and the :data:`Outcome` union.

A session's ``receive(frame, now)`` returns a list of these, in the order they happened. They are
plain values, built on the reader thread for every frame, so the common one (:class:`Delivered`) is a
named tuple. Outcomes that mean an error carry the ready :mod:`rxinvest.errors` exception: the
mapping of API answers and codes to errors happens here, in ``protocol/``, and the Rx layer only
delivers it.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, TypeAlias

import attrs

from rxinvest import model as m
from rxinvest.errors import ApiError, DecodeError, RxInvestError
from rxinvest.protocol.topic import Topic

__all__ = [
    "AccountAccepted",
    "AccountOutcome",
    "AccountRejected",
    "AccountStatus",
    "Checked",
    "Confirmed",
    "Delivered",
    "Malformed",
    "MarketDataOutcome",
    "Outcome",
    "Rejected",
    "Send",
    "StreamEvent",
    "StreamFailed",
]

#: An event of a stream, as the codec decodes it: market data, or an account stream's data.
StreamEvent: TypeAlias = (
    m.OrderBook
    | m.Trade
    | m.OpenInterest
    | m.LastPrice
    | m.Candle
    | m.TradingStatus
    | m.OrderState
    | m.OrderTrades
    | m.PositionData
    | m.PositionsResponse
    | m.PortfolioResponse
)
#: The per-account status member of an account stream's answer.
AccountStatus: TypeAlias = (
    m.ResultSubscriptionStatus | m.PortfolioSubscriptionStatus | m.PositionsAccountSubscriptionStatus
)


class Delivered(NamedTuple):
    """An event for the subscribers of ``topics`` (account streams: every subscriber, ``topics=()``)."""

    topics: tuple[Topic, ...]
    event: StreamEvent


@attrs.frozen
class Confirmed:
    """The API holds ``topic``: its events will come, routed by ``instrument_uid``. ``gap`` is
    (since, until) when the topic was live on a connection that was lost: its events between those
    times may be missing."""

    topic: Topic
    subscription_id: str
    instrument_uid: str
    tracking_id: str
    gap: tuple[datetime, datetime] | None = None


@attrs.frozen
class Rejected:
    """``topic`` is forgotten (subscribe again to retry): the API refused it (``status``), or it
    could not even be sent (``status`` None, ``error`` says why). ``error`` is what its subscribers
    get."""

    topic: Topic
    status: m.SubscriptionStatus | None
    tracking_id: str
    error: RxInvestError


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


@attrs.frozen
class Checked:
    """A getMySubscriptions check of one connection ended, begun at ``since``.

    ``complete`` is False when the server's listing did not end within the check's timeout: then
    nothing was repaired. Otherwise ``missing`` are the confirmed topics the server no longer held
    (subscribed again: their next :class:`Confirmed` carries a gap) and ``extra`` the server's
    subscriptions nobody wants, named by instrument uid (released).
    """

    since: datetime
    complete: bool
    missing: tuple[Topic, ...] = ()
    extra: tuple[Topic, ...] = ()


@attrs.frozen
class AccountAccepted:
    """The API streams ``account_id``'s events from now on. ``gap`` is (since, until) when the
    account was streamed on a connection that was lost: its events between may be missing."""

    account_id: str
    tracking_id: str
    gap: tuple[datetime, datetime] | None = None


@attrs.frozen
class AccountRejected:
    """The API refused ``account_id``. ``status`` is the stream's status member, ``code`` the API
    error code when it gave one (``"40002"``: no rights, ``"50004"``: no such account), and
    ``error`` what the subscribers get (``PermissionDeniedError`` for 40002, else
    ``SubscriptionRejectedError``)."""

    account_id: str
    status: AccountStatus
    code: str
    message: str
    tracking_id: str
    error: ApiError


#: What a MarketDataStream session reports.
MarketDataOutcome: TypeAlias = Delivered | Confirmed | Rejected | Checked | StreamFailed | Malformed | Send
#: What an account-stream session reports.
AccountOutcome: TypeAlias = Delivered | AccountAccepted | AccountRejected | StreamFailed | Malformed | Send
#: Anything a session reports.
Outcome: TypeAlias = MarketDataOutcome | AccountOutcome
