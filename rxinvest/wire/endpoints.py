"""Stream names and WebSocket endpoint URLs of the T-Invest JSON proxy."""

from __future__ import annotations

import enum

from rxinvest.errors import ConfigurationError

__all__ = [
    "PACKAGE",
    "PROD_BASE_URL",
    "SANDBOX_BASE_URL",
    "Dialect",
    "Stream",
    "endpoint_url",
    "resolve_base_url",
]

PACKAGE = "tinkoff.public.invest.api.contract.v1"

#: The production proxy, as the official WebSocket docs give it.
PROD_BASE_URL = "wss://invest-public-api.tinkoff.ru/ws/"
#: The sandbox proxy. No official document names one: this is the gRPC sandbox host with the
#: proxy's path, which community clients use. Pass your own base URL if it moves.
SANDBOX_BASE_URL = "wss://sandbox-invest-public-api.tinkoff.ru/ws/"


class Stream(enum.StrEnum):
    """A streaming method of the proxy; the value is the proto method name."""

    MARKET_DATA = "MarketDataStream"
    MARKET_DATA_SERVER_SIDE = "MarketDataServerSideStream"
    ORDER_STATE = "OrderStateStream"
    TRADES = "TradesStream"
    PORTFOLIO = "PortfolioStream"
    POSITIONS = "PositionsStream"

    @property
    def service(self) -> str:
        """The gRPC service the method belongs to."""
        return _SERVICES[self]

    @property
    def path(self) -> str:
        """The URL path after the ``/ws/`` base: ``<package>.<Service>/<Method>``."""
        return f"{PACKAGE}.{self.service}/{self.value}"

    @classmethod
    def parse(cls, name: str) -> Stream:
        """``Stream(name)`` with a :class:`ConfigurationError` listing the valid names."""
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ConfigurationError(f"unknown stream {name!r}; expected one of: {valid}") from None


_SERVICES = {
    Stream.MARKET_DATA: "MarketDataStreamService",
    Stream.MARKET_DATA_SERVER_SIDE: "MarketDataStreamService",
    Stream.ORDER_STATE: "OrdersStreamService",
    Stream.TRADES: "OrdersStreamService",
    Stream.PORTFOLIO: "OperationsStreamService",
    Stream.POSITIONS: "OperationsStreamService",
}


class Dialect(enum.StrEnum):
    """The WebSocket subprotocol, which decides the key style of server frames."""

    JSON = "json"  # lowerCamelCase keys (proto3 JSON default)
    JSON_PROTO = "json-proto"  # proto field names

    @classmethod
    def parse(cls, name: str) -> Dialect:
        try:
            return cls(name)
        except ValueError:
            raise ConfigurationError(f"unknown dialect {name!r}; expected 'json' or 'json-proto'") from None


def resolve_base_url(target: str) -> str:
    """The ``/ws/`` base URL for ``"prod"``, ``"sandbox"`` or a custom ``ws://`` / ``wss://`` base."""
    if target == "prod":
        return PROD_BASE_URL
    if target == "sandbox":
        return SANDBOX_BASE_URL
    if target.startswith(("ws://", "wss://")):
        return target if target.endswith("/") else target + "/"
    raise ConfigurationError(
        f"target must be 'prod', 'sandbox' or a ws:// or wss:// base URL, not {target!r}"
    )


def endpoint_url(stream: str, target: str = "prod") -> str:
    """The full WebSocket URL of ``stream`` at ``target`` (see :func:`resolve_base_url`).

    >>> endpoint_url("MarketDataStream")
    'wss://invest-public-api.tinkoff.ru/ws/tinkoff.public.invest.api.contract.v1.MarketDataStreamService/MarketDataStream'
    """
    return resolve_base_url(target) + Stream.parse(stream).path
