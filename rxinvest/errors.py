"""The exception tree of rxinvest: every error the library raises derives from ``RxInvestError``.

::

    RxInvestError
    ├── ConfigurationError (also ValueError)   a bad argument or setting, found before any I/O
    ├── WireError                              the JSON wire codec
    │   ├── DecodeError (also ValueError)      a received frame is malformed; carries ``raw``
    │   └── EncodeError (also ValueError)      a value cannot be written on the wire
    ├── TransportError                         the WebSocket connection
    │   ├── ConnectionLostError                broken from outside: retryable
    │   └── ClientClosedError                  closed by you (``Client.close()``)
    └── ApiError                               the API said no; carries code, message, tracking id
        ├── AuthenticationError                missing or invalid token (4016, 40003): not retried
        ├── PermissionDeniedError              the token may not do this (40002)
        ├── RateLimitedError                   too many streams or requests (4008, 8000x)
        └── SubscriptionRejectedError          one instrument or account refused, with its status

Third-party exceptions (msgspec's, websocket-client's, attrs') are translated where they occur, with
``raise ... from``, and never reach users. No error text ever contains a token.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectionLostError",
    "DecodeError",
    "EncodeError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RxInvestError",
    "SubscriptionRejectedError",
    "TransportError",
    "WireError",
]

#: How many characters of a bad frame a ``DecodeError`` keeps (frames can be megabytes).
RAW_LIMIT = 256


class RxInvestError(Exception):
    """Base of every rxinvest error."""


class ConfigurationError(RxInvestError, ValueError):
    """A bad argument or setting (unknown stream name, dialect, target ...)."""


class WireError(RxInvestError):
    """Base of the JSON codec's errors."""


class DecodeError(WireError, ValueError):
    """A frame is not a valid message of its stream.

    ``raw`` holds the first ``RAW_LIMIT`` characters of the frame (bytes decoded as UTF-8 with
    replacement), followed by ``…`` when it was cut.
    """

    def __init__(self, reason: str, raw: str | bytes | bytearray | memoryview = "") -> None:
        self.reason = reason
        self.raw = _truncate(raw)
        super().__init__(f"{reason}; frame: {self.raw!r}" if self.raw else reason)


class EncodeError(WireError, ValueError):
    """A model value cannot be encoded (naive datetime, more than 9 decimals, int out of range ...)."""


class TransportError(RxInvestError):
    """The WebSocket connection failed or ended."""


class ConnectionLostError(TransportError):
    """The connection broke from outside (network, server close): a new connection may work.

    ``code`` and ``reason`` are the WebSocket close code and reason when the server sent them.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(message)


class ClientClosedError(TransportError):
    """The client was closed by its owner; nothing more will arrive."""


class ApiError(RxInvestError):
    """The API refused something. ``code`` is the API's error code (``"40003"``, ``"80002"``) or
    the WebSocket close code as text; ``tracking_id`` identifies the request for support."""

    def __init__(self, message: str, *, code: str = "", tracking_id: str = "") -> None:
        self.code = code
        self.message = message
        self.tracking_id = tracking_id
        super().__init__(f"{message} (code {code})" if code else message)


class AuthenticationError(ApiError):
    """The token is missing, invalid or expired. Retrying cannot help."""


class PermissionDeniedError(ApiError):
    """The token is valid but may not do this (a read-only token on an account stream ...)."""


class RateLimitedError(ApiError):
    """Too many open streams or requests for this token (close 4008, API codes 80001/80002)."""


class SubscriptionRejectedError(ApiError):
    """The API refused one subscription; other subscriptions on the stream are unaffected.

    ``status`` is the ``SubscriptionStatus`` (market data) or the account status member; ``target``
    the instrument id or account id as you gave it.
    """

    def __init__(self, message: str, *, status: Any, target: str, tracking_id: str = "") -> None:
        self.status = status
        self.target = target
        super().__init__(message, code=getattr(status, "name", str(status)), tracking_id=tracking_id)


def _truncate(raw: str | bytes | bytearray | memoryview) -> str:
    cut = raw[: RAW_LIMIT + 1]
    text = cut if isinstance(cut, str) else bytes(cut).decode("utf-8", "replace")
    return text[:RAW_LIMIT] + "…" if len(text) > RAW_LIMIT else text
