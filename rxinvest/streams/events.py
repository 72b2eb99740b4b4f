"""Lifecycle events of the client, delivered on ``Client.statuses`` (not wire messages)."""

from __future__ import annotations

from typing import Any

import attrs

from rxinvest.errors import RxInvestError

__all__ = ["ConnectionStatus", "SubscriptionStatus"]


@attrs.frozen
class ConnectionStatus:
    """A stream connection changed state: ``connected``, ``reconnecting`` (``error`` says why; a new
    connection follows and every subscription is made again), ``disconnected`` (not needed any more)
    or ``closed`` (for good; ``error`` is None when the client was closed)."""

    stream: str
    state: str
    error: RxInvestError | None = None


@attrs.frozen
class SubscriptionStatus:
    """The API's answer to one subscription: ``target`` is the market-data
    :class:`~rxinvest.protocol.Topic` or the account id; ``error`` is set when ``confirmed`` is False."""

    target: Any
    confirmed: bool
    error: RxInvestError | None
    tracking_id: str
    instrument_uid: str = ""
