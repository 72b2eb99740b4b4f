"""What a close code or a refused handshake means, and the pause before trying again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConnectionLostError,
    PermissionDeniedError,
    RateLimitedError,
)
from rxinvest.protocol import Backoff, classify_close, classify_handshake


@pytest.mark.parametrize(
    ("code", "reason", "kind", "retry", "api_code"),
    [
        (4016, "UNAUTHENTICATED: 40003 token missing", AuthenticationError, False, "40003"),
        (4007, "PERMISSION_DENIED", PermissionDeniedError, False, "4007"),
        (4003, "INVALID_ARGUMENT: 30052 bad", ApiError, False, "30052"),
        (4008, "RESOURCE_EXHAUSTED: 80004 no subscriptions", RateLimitedError, True, "80004"),
        (1011, "internal", ConnectionLostError, True, None),
        (None, "", ConnectionLostError, True, None),
    ],
)
def test_close_codes(code: int | None, reason: str, kind: type, retry: bool, api_code: str | None) -> None:
    error, retrying = classify_close(code, reason)
    assert type(error) is kind
    assert retrying is retry
    if api_code is not None:
        assert error.code == api_code  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "kind", "retry"),
    [
        (401, AuthenticationError, False),
        (403, AuthenticationError, False),
        (404, ConfigurationError, False),
        (502, ConnectionLostError, True),
    ],
)
def test_refused_handshakes(status: int, kind: type, retry: bool) -> None:
    error, retrying = classify_handshake(status, "ws://127.0.0.1:1/ws/x")
    assert type(error) is kind
    assert retrying is retry


@given(st.integers(min_value=1, max_value=40))
def test_backoff_grows_to_its_maximum_and_resets(attempts: int) -> None:
    backoff = Backoff(initial=0.1, maximum=10.0, factor=2.0)
    delays = [backoff.next() for _ in range(attempts)]
    for attempt, delay in enumerate(delays):
        nominal = min(10.0, 0.1 * 2.0**attempt)
        assert 0.8 * nominal <= delay <= 1.2 * nominal  # +-20 % jitter around the nominal pause
    backoff.reset()
    assert 0.08 <= backoff.next() <= 0.12
