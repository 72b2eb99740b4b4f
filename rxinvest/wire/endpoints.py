"""Stream names and WebSocket endpoint URLs of the T-Invest JSON proxy; unary methods and REST URLs."""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

from rxinvest.errors import ConfigurationError

__all__ = [
    "PACKAGE",
    "PROD_BASE_URL",
    "PROD_REST_BASE_URL",
    "SANDBOX_BASE_URL",
    "SANDBOX_REST_BASE_URL",
    "Dialect",
    "Stream",
    "Unary",
    "endpoint_url",
    "resolve_base_url",
    "rest_base_url",
]

PACKAGE = "tinkoff.public.invest.api.contract.v1"

#: The production proxy, as the official WebSocket docs give it.
PROD_BASE_URL = "wss://invest-public-api.tinkoff.ru/ws/"
#: The sandbox proxy. No official document names one: this is the gRPC sandbox host with the
#: proxy's path, which community clients use. Pass your own base URL if it moves.
SANDBOX_BASE_URL = "wss://sandbox-invest-public-api.tinkoff.ru/ws/"
#: The production REST gateway of the unary methods: ``POST <base><Unary.path>`` with a JSON body.
PROD_REST_BASE_URL = "https://invest-public-api.tinkoff.ru/rest/"
#: The sandbox REST gateway.
SANDBOX_REST_BASE_URL = "https://sandbox-invest-public-api.tinkoff.ru/rest/"


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


class Unary(enum.StrEnum):
    """A unary method rxinvest calls over REST; the value is the proto method name.

    The request and response classes of each are :data:`rxinvest.wire.UNARY_TYPES`.
    """

    GET_ORDERS = "GetOrders"
    GET_ORDER_STATE = "GetOrderState"
    GET_OPERATIONS_BY_CURSOR = "GetOperationsByCursor"
    GET_POSITIONS = "GetPositions"
    GET_PORTFOLIO = "GetPortfolio"

    @property
    def service(self) -> str:
        """The gRPC service the method belongs to."""
        return _UNARY_SERVICES[self]

    @property
    def path(self) -> str:
        """The URL path after the ``/rest/`` base: ``<package>.<Service>/<Method>``."""
        return f"{PACKAGE}.{self.service}/{self.value}"


_UNARY_SERVICES = {
    Unary.GET_ORDERS: "OrdersService",
    Unary.GET_ORDER_STATE: "OrdersService",
    Unary.GET_OPERATIONS_BY_CURSOR: "OperationsService",
    Unary.GET_POSITIONS: "OperationsService",
    Unary.GET_PORTFOLIO: "OperationsService",
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


# The REST gateway lives on the WebSocket proxy's host, under /rest/ instead of /ws/.
_REST_SCHEMES = {"wss": "https", "ws": "http"}


def rest_base_url(ws_base_url: str) -> str:
    """The REST base URL on the host of a WebSocket base URL (as :func:`resolve_base_url` gives it).

    ``wss://host/ws/`` becomes ``https://host/rest/`` and ``ws://host:port/ws/`` becomes
    ``http://host:port/rest/``: the proxy and the gateway share a host (the production and sandbox
    bases map to :data:`PROD_REST_BASE_URL` and :data:`SANDBOX_REST_BASE_URL`). Anything else, a
    path other than ``/ws/`` included, is a :class:`ConfigurationError`. The simulator serves REST
    on a port of its own: take its ``rest_url`` rather than mapping its ``base_url``.

    >>> rest_base_url("wss://invest-public-api.tinkoff.ru/ws/")
    'https://invest-public-api.tinkoff.ru/rest/'
    """
    try:
        parts = urlsplit(ws_base_url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except (ValueError, TypeError, AttributeError):
        raise ConfigurationError(f"not a ws:// or wss:// base URL: {ws_base_url!r}") from None
    scheme = _REST_SCHEMES.get(parts.scheme)
    if (
        scheme is None
        or not parts.hostname
        or parts.path not in ("/ws/", "/ws")
        or parts.query
        or parts.fragment
    ):
        raise ConfigurationError(f"expected a ws:// or wss:// base URL ending in /ws/, not {ws_base_url!r}")
    return f"{scheme}://{parts.netloc}/rest/"
