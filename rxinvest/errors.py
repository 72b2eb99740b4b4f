"""The exception tree of rxinvest: every error the library raises derives from ``RxInvestError``.

::

    RxInvestError
    ├── ConfigurationError (also ValueError)   a bad argument or setting, found before any I/O
    ├── WireError                              the JSON wire codec
    │   ├── DecodeError (also ValueError)      a received frame is malformed; carries ``raw``
    │   └── EncodeError (also ValueError)      a value cannot be written on the wire
    ├── TransportError                         the WebSocket connection
    │   ├── ConnectionLostError                broken from outside: retryable
    │   ├── ConnectionFailedError              never connected within ``open_timeout``; carries ``cause``
    │   └── ClientClosedError                  closed by you (``Client.close()``)
    ├── ApiError                               the API said no; carries code, message, tracking id
    │   ├── AuthenticationError                missing or invalid token (4016, 40003): not retried
    │   ├── PermissionDeniedError              the token may not do this (40002)
    │   ├── RateLimitedError                   too many streams or requests (4008, 8000x)
    │   └── SubscriptionRejectedError          one instrument or account refused, with its status
    ├── RecordingError                         a recording (:mod:`rxinvest.replay`) cannot be written or read
    │   └── CorruptRecordingError (also ValueError)  a line is not a record; carries ``line`` (1-based)
    ├── BusError                               the NATS bus (:mod:`rxinvest.bus`): no server, no gateway
    ├── DataIntegrityError                     the data contradicts itself; carries ``instrument``
    │   ├── BookIntegrityError                 an order book is crossed, unsorted or inconsistent
    │   └── ReconciliationError                positions disagree with the fills that made them
    └── InternalError                          a bug in rxinvest, caught: reported, the stream reopened

Argument errors are ``ConfigurationError`` everywhere, the simulator's options included; nothing
public raises a bare ``ValueError`` or ``TypeError``. A data-integrity error is reported in-band or
through ``on_error`` by the operator that found it; the stream it came from goes on.

Third-party exceptions (msgspec's, websocket-client's, attrs') are translated where they occur, with
``raise ... from``, and never reach users. No error text ever contains a token.
"""

from __future__ import annotations

import enum

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BookIntegrityError",
    "BusError",
    "ClientClosedError",
    "ConfigurationError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "CorruptRecordingError",
    "DataIntegrityError",
    "DecodeError",
    "EncodeError",
    "InternalError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ReconciliationError",
    "RecordingError",
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


class ConnectionFailedError(TransportError):
    """No connection to the target ever opened within ``open_timeout``: a wrong address, no network,
    a firewall. ``cause`` is the last attempt's error (its text names what failed)."""

    def __init__(self, message: str, *, cause: RxInvestError) -> None:
        self.cause = cause
        super().__init__(f"{message}: {cause}")


class ClientClosedError(TransportError):
    """The client was closed by its owner; nothing more will arrive."""


class ApiError(RxInvestError):
    """The API refused something. ``code`` is the API's error code (``"40003"``, ``"80002"``) or
    the WebSocket close code as text; ``tracking_id`` identifies the request for support."""

    def __init__(self, message: str, *, code: str = "", tracking_id: str = "") -> None:
        self.code = code
        self.message = message
        self.tracking_id = tracking_id
        # Each thing said once: the code is added only where the message does not already hold it.
        super().__init__(f"{message} (code {code})" if code and code not in message else message)


class AuthenticationError(ApiError):
    """The token is missing, invalid or expired. Retrying cannot help."""


class PermissionDeniedError(ApiError):
    """The token is valid but may not do this (a read-only token on an account stream ...)."""


class RateLimitedError(ApiError):
    """Too many open streams or requests for this token (close 4008, API codes 80001/80002).

    ``retry_after`` is how many seconds a new attempt must wait to stand a chance (0: no reason to
    wait longer than the usual backoff): the API counts open streams every 2 minutes and requests
    per minute.
    """

    def __init__(
        self, message: str, *, code: str = "", tracking_id: str = "", retry_after: float = 0.0
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code, tracking_id=tracking_id)


class SubscriptionRejectedError(ApiError):
    """The API refused one subscription; other subscriptions on the stream are unaffected.

    ``status`` is the API's status member: a ``SubscriptionStatus`` (market data) or the account
    stream's own status enum; ``code`` is its name. ``target`` is the instrument id or account id as
    you gave it.
    """

    def __init__(self, message: str, *, status: enum.Enum, target: str, tracking_id: str = "") -> None:
        self.status = status
        self.target = target
        super().__init__(message, code=status.name, tracking_id=tracking_id)


class RecordingError(RxInvestError):
    """A recording cannot be written (the file cannot be opened) or read."""


class CorruptRecordingError(RecordingError, ValueError):
    """A line of a recording is not a record (or its compressed block is damaged).

    ``line`` is the 1-based number of the bad line (for a damaged block: the first line it would
    have held); ``path`` the file. A file merely cut short (a recorder killed mid-write) is not
    corrupt: reading it ends with a :class:`~rxinvest.replay.Truncated` record instead.
    """

    def __init__(self, message: str, *, line: int, path: str = "") -> None:
        super().__init__(f"{path}: line {line}: {message}" if path else f"line {line}: {message}")
        self.line = line
        self.path = path


class BusError(RxInvestError):
    """The NATS bus (:mod:`rxinvest.bus`) cannot do what was asked: no NATS server answers, no
    gateway answers a demand, the ``nats-server`` binary is missing, a lease was lost."""


class DataIntegrityError(RxInvestError):
    """Events contradict themselves or each other. ``instrument`` is the instrument uid or account id
    concerned (empty when unknown)."""

    def __init__(self, message: str, *, instrument: str = "") -> None:
        self.instrument = instrument
        super().__init__(message)


class BookIntegrityError(DataIntegrityError):
    """An order book cannot be right: crossed (best bid at or above best ask), levels out of order,
    or flagged inconsistent by the exchange."""


class ReconciliationError(DataIntegrityError):
    """The positions the API reports disagree with the fills and movements that should make them."""


def _truncate(raw: str | bytes | bytearray | memoryview) -> str:
    cut = raw[: RAW_LIMIT + 1]
    text = cut if isinstance(cut, str) else bytes(cut).decode("utf-8", "replace")
    return text[:RAW_LIMIT] + "…" if len(text) > RAW_LIMIT else text


class InternalError(RxInvestError):
    """A bug in rxinvest, caught where it happened: it is logged with its traceback, reported on
    ``client.statuses``, and the connection it broke is opened anew. Please report it."""
