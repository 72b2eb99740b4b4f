"""Value types shared by every stream: money, pings and the in-band error status."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

__all__ = ["INT32", "Money", "Ping", "PingDelaySettings", "PingRequest", "RpcStatus", "int32"]

# Every message class is ``@attrs.frozen(kw_only=True, weakref_slot=False)``: frozen, slotted, compared
# and hashed by value, keyword-only. Spelled out on each class so that type checkers' attrs support
# (``attrs.evolve``, ``attrs.fields``) sees them. No ``__weakref__`` slot: values are never weakly
# referenced, and without it the codec can build instances in a mutable twin of identical layout and
# then switch their class (see wire.codec).

# Field metadata key marking proto int32 fields (a JSON number on the wire, range -2**31..2**31-1).
# Every other ``int`` field of the model is a proto int64.
INT32 = "rxinvest.int32"


def int32(default: int | None = 0) -> Any:
    """An int32 field (proto3 default 0; pass ``None`` for an explicit-presence ``optional``)."""
    return attrs.field(default=default, metadata={INT32: True})


def _lower(currency: str) -> str:
    return currency.lower()


@attrs.frozen(weakref_slot=False)
class Money:
    """An exact amount of money (proto ``MoneyValue``).

    ``currency`` is stored lower-case ("rub", "usd"): the API itself mixes "RUB" and "rub", and
    lower-casing on construction makes ``Money`` values compare and hash by meaning.
    """

    amount: Decimal = Decimal(0)
    currency: str = attrs.field(default="", converter=_lower)


@attrs.frozen(kw_only=True, weakref_slot=False)
class Ping:
    """Server keep-alive, sent on every stream (default every 120 s; see ``PingDelaySettings``)."""

    time: datetime | None = None
    stream_id: str = ""
    #: Time of the client ``PingRequest`` this ping answers; ``None`` on periodic pings.
    ping_request_time: datetime | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PingRequest:
    """Client ping on MarketDataStream; the server answers with a ``Ping``."""

    time: datetime | None = None


@attrs.frozen(kw_only=True, weakref_slot=False)
class PingDelaySettings:
    """Server ping interval for MarketDataStream, in milliseconds (5 000-180 000; ``None``: default)."""

    ping_delay_ms: int | None = int32(None)


@attrs.frozen(kw_only=True, weakref_slot=False)
class RpcStatus:
    """A stream-level error the proxy sends in-band (a ``google.rpc.Status``-like object).

    ``code`` is the gRPC status code (8 = RESOURCE_EXHAUSTED, ...); ``message`` usually holds the
    numeric API error code as text (``"80004"``); ``details`` holds each detail object as compact
    JSON text with sorted keys.
    """

    code: int = int32()
    message: str = ""
    details: tuple[str, ...] = ()
