"""What a refused or closed connection means: give up with an error, or try again after a pause. Pure.

The one place where the proxy's close codes and handshake statuses become :mod:`rxinvest.errors`.
"""

from __future__ import annotations

import attrs

from rxinvest.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    PermissionDeniedError,
    RateLimitedError,
    RxInvestError,
)

__all__ = ["RETRY_AFTER", "Backoff", "classify_close", "classify_handshake"]

#: Seconds before a new attempt can succeed, by API code: the API recounts a token's open streams
#: every 2 minutes (80001: too many streams; a stream closed just now still counts until then) and
#: its requests every minute (80002). Other codes of 4008 (80004: no subscriptions, 80005: lifetime
#: exceeded) may retry at once.
RETRY_AFTER: dict[str, float] = {"80001": 120.0, "80002": 60.0}


def classify_close(code: int | None, reason: str) -> tuple[RxInvestError, bool]:
    """The error a server close stands for, and whether a new connection may help.

    The proxy closes with 4000 + the gRPC status code and often puts the API code in the reason
    (spec §1.6): 4016 (unauthenticated), 4003 (invalid argument) and 4007 (permission) are final,
    and so is 1009 (a frame too large: sending it again cannot help); 4008 (resource exhausted: too
    many streams or requests, 80004 no subscriptions, 80005 lifetime exceeded) and everything else
    (1006 abnormal, 1011, 4004, 4013, 4014) is retried.
    """
    api_code = next(
        (word for word in reason.replace(":", " ").split() if word.isdigit() and len(word) == 5), ""
    )
    known = _KNOWN_CLOSES.get(code) if code is not None else None
    if known is not None:
        kind, default, retry = known
        # The reason already says what happened ("UNAUTHENTICATED: 40003 ..."); the default only
        # stands in for an empty one. The close code is said once, the API code once.
        message, error_code = f"closed with {code}: {reason or default}", api_code or str(code)
        if kind is RateLimitedError:
            return RateLimitedError(
                message, code=error_code, retry_after=RETRY_AFTER.get(api_code, 0.0)
            ), retry
        return kind(message, code=error_code), retry
    what = "the connection was lost" if code is None else f"the server closed the stream ({code} {reason})"
    return ConnectionLostError(what.replace(" )", ")"), code=code, reason=reason), True


# Close codes with a meaning of their own: the error, what it says without a reason, retried or not.
_KNOWN_CLOSES: dict[int, tuple[type[ApiError], str, bool]] = {
    4016: (AuthenticationError, "token missing or invalid", False),
    4007: (PermissionDeniedError, "permission denied", False),
    4003: (ApiError, "invalid request", False),
    4008: (RateLimitedError, "resource exhausted", True),
    1009: (ApiError, "a frame was too large for the server; sending it again cannot help", False),
}


def classify_handshake(status: int, url: str) -> tuple[RxInvestError, bool]:
    """The error an HTTP status refusing the WebSocket handshake stands for, and whether to retry.

    401 and 403 refuse the token (final); 404 means no such stream at ``url`` (final: a wrong base
    URL); anything else (a 5xx, a proxy in the way) is retried.
    """
    if status in (401, 403):
        return AuthenticationError(f"the server refused the token (HTTP {status})", code=str(status)), False
    if status == 404:
        return ConfigurationError(f"no such stream at {url} (HTTP 404)"), False
    return ConnectionLostError(f"handshake refused with HTTP {status}"), True


@attrs.define
class Backoff:
    """Exponential pauses between reconnection attempts, in seconds, with deterministic jitter."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0
    attempt: int = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        # +-20 %, deterministic per attempt: spreads a crowd of clients without a random generator
        return delay * (0.8 + 0.4 * ((self.attempt * 0.618033988749895) % 1.0))

    def reset(self) -> None:
        self.attempt = 0
