"""The unary methods over the REST gateway (JSON over HTTP/1.1, urllib3), for gap recovery.

``RestClient(base_url, token).call(Unary.GET_ORDERS, GetOrdersRequest(account_id=...))`` posts the
request's JSON to ``<base_url><package>.<Service>/<Method>`` and returns the decoded answer.

Rules:

* One ``urllib3.PoolManager`` per client, shared by every thread: calls may come from any thread.
* Every call has a timeout (connect and read, ``timeout`` seconds each) and never follows a redirect
  (a redirect could carry the token to another host).
* TLS certificates are always verified for ``https://``; there is no option to turn that off. Plain
  ``http://`` is refused except to a loopback host (the simulator), so the token never travels in
  clear over a network.
* The token travels only in the ``Authorization`` header. It is never logged, never put in an error,
  and never shown by ``repr``.
* Errors are the :mod:`rxinvest.errors` tree, mapped from the API code the gateway puts in its body
  (``{"code": <gRPC code>, "message": "<API code>"}``), else from the HTTP status (see
  :func:`classify_rest`). What a new attempt may fix (5xx, API codes 70001-70003, a broken or silent
  connection) is retried ``retries`` times with an exponential backoff that honours ``Retry-After``
  (bounded by ``max_delay``), then raised; the rest is raised at once.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from rxinvest import model as m
from rxinvest.errors import (
    ApiError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLostError,
    PermissionDeniedError,
    RateLimitedError,
    RxInvestError,
)
from rxinvest.protocol.closing import RETRY_AFTER, Backoff
from rxinvest.protocol.recovery import NOT_FOUND_CODES
from rxinvest.wire import Unary, decode_unary, decode_unary_error, encode_unary

__all__ = ["RestClient", "classify_rest", "retry_after_seconds"]

log = logging.getLogger("rxinvest.transport.rest")

#: API codes of the API's internal errors: a new attempt may succeed.
_INTERNAL_CODES = frozenset({"70001", "70002", "70003"})
#: The most bytes an answer may have: an operations page of 1 000 items is a few megabytes.
MAX_BODY = 64 << 20
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# gRPC status codes the gateway puts in an error body's "code".
_GRPC_NOT_FOUND, _GRPC_PERMISSION, _GRPC_EXHAUSTED, _GRPC_UNAUTHENTICATED = 5, 7, 8, 16
_GRPC_RETRYABLE = frozenset({13, 14})  # INTERNAL, UNAVAILABLE


def classify_rest(
    method: str, status: int, error: m.RpcStatus, *, tracking_id: str = "", retry_after: float | None = None
) -> tuple[RxInvestError, bool]:
    """The error a failed call of ``method`` stands for, and whether a new attempt may help. Pure.

    ``status`` is the HTTP status, ``error`` the body as :func:`rxinvest.wire.decode_unary_error`
    reads it (its ``message`` is the API code when the gateway gave one), ``retry_after`` the seconds
    of a ``Retry-After`` header. The API code decides first, then the gRPC code, then the status:

    * 40003, UNAUTHENTICATED, 401: :class:`AuthenticationError` (final);
    * 40002, PERMISSION_DENIED, 403: :class:`PermissionDeniedError` (final);
    * 8000x, RESOURCE_EXHAUSTED, 429: :class:`RateLimitedError` with ``retry_after`` (final here: the
      API recounts requests once a minute, longer than a call should wait);
    * 50004, 50005: :class:`ApiError` with that code (final: the account or order is not there);
      a 404 without an API error body is a wrong base URL: :class:`ConfigurationError` (final);
    * 70001-70003, INTERNAL, UNAVAILABLE, any 5xx: :class:`ApiError` (retried);
    * anything else (invalid arguments, 30xxx ...): :class:`ApiError` (final).
    """
    code = error.message if error.message.isdigit() and len(error.message) == 5 else ""
    grpc = error.code
    text = f"{method} failed with HTTP {status}"
    if error.details:  # the gateway's description, as {"description": "..."}: shown as it came
        text += f": {error.details[0]}"
    elif error.message and not code:
        text += f": {error.message}"
    if code == "40003" or (not code and (grpc == _GRPC_UNAUTHENTICATED or status == 401)):
        return AuthenticationError(text, code=code or str(status), tracking_id=tracking_id), False
    if code == "40002" or (not code and (grpc == _GRPC_PERMISSION or status == 403)):
        return PermissionDeniedError(text, code=code or str(status), tracking_id=tracking_id), False
    if code.startswith("8000") or (not code and (grpc == _GRPC_EXHAUSTED or status == 429)):
        wait = retry_after if retry_after is not None else RETRY_AFTER.get(code, 0.0)
        error_code = code or str(status)
        return RateLimitedError(text, code=error_code, tracking_id=tracking_id, retry_after=wait), False
    if code in NOT_FOUND_CODES:
        return ApiError(text, code=code, tracking_id=tracking_id), False
    if status == 404 and not code and grpc != _GRPC_NOT_FOUND:
        return ConfigurationError(f"{method}: no such method at the REST base URL (HTTP 404)"), False
    retry = code in _INTERNAL_CODES or (not code and (grpc in _GRPC_RETRYABLE or status >= 500))
    return ApiError(text, code=code or str(status), tracking_id=tracking_id), retry


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date), None if absent
    or unreadable; never negative. Pure but for ``now`` (the current time when not given)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class RestClient:
    """Calls the unary methods on ``base_url`` (``https://.../rest/``, or ``http://`` to loopback).

    Thread-safe. ``app_name`` is sent as ``x-app-name``; ``timeout`` bounds connecting and each read
    of a call (seconds); ``retries`` is how many times a retryable failure is tried again, after a
    pause of ``backoff`` seconds doubling each time, or the server's ``Retry-After`` if longer, never
    more than ``max_delay``. A bad argument is a :class:`~rxinvest.errors.ConfigurationError`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        app_name: str | None = "rxinvest",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_delay: float = 10.0,
    ) -> None:
        self.base_url = _checked_url(base_url)
        if not isinstance(token, str) or not token:
            raise ConfigurationError("a REST client needs a token")
        for name, value in (("timeout", timeout), ("backoff", backoff), ("max_delay", max_delay)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, not {retries!r}")
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        if app_name:
            headers["x-app-name"] = app_name
        self._headers = _Headers(headers)
        self.timeout = float(timeout)
        self.retries = retries
        self._backoff, self._max_delay = float(backoff), float(max_delay)
        # CERT_REQUIRED with the system's trust store: urllib3's default too, said here so that no
        # change of default can ever turn verification off.
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=8, cert_reqs="CERT_REQUIRED")
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self.calls = 0  # calls made (each counted once, however many attempts it took)
        self.attempts = 0  # HTTP requests sent
        self.failures = 0  # calls that raised

    def __repr__(self) -> str:  # the token stays out
        return f"<RestClient {self.base_url}{' closed' if self._closing.is_set() else ''}>"

    def close(self) -> None:
        """No more calls: a call waiting to retry gives up at once (ClientClosedError); one waiting for
        an answer ends within its timeout. Idempotent."""
        self._closing.set()
        self._pool.clear()

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    def call(self, method: Unary, request: Any) -> Any:
        """Call ``method`` with ``request`` (its request class of :data:`rxinvest.wire.UNARY_TYPES`)
        and return the decoded answer. Raises the mapped error (see :func:`classify_rest`) once
        retries are used up, :class:`~rxinvest.errors.DecodeError` for an answer that is not the
        method's, :class:`~rxinvest.errors.ClientClosedError` after :meth:`close`."""
        method = Unary(method)
        body = encode_unary(request)
        url = self.base_url + method.path
        with self._lock:
            self.calls += 1
        backoff = Backoff(initial=self._backoff, maximum=self._max_delay)
        try:
            for attempt in range(self.retries + 1):
                if self._closing.is_set():
                    raise ClientClosedError("the REST client is closed")
                try:
                    return self._attempt(method, url, body)
                except _Failed as failed:
                    if not failed.retry or attempt == self.retries:
                        raise failed.error from None  # what failed is in the message; no urllib3 noise
                    pause = min(self._max_delay, max(backoff.next(), failed.wait))
                    log.warning(
                        "%s; attempt %d of %d in %.2f s", failed.error, attempt + 2, self.retries + 1, pause
                    )
                if self._pause(pause):
                    raise ClientClosedError("the REST client is closed")
            raise AssertionError("unreachable")  # pragma: no cover
        except RxInvestError:
            with self._lock:
                self.failures += 1
            raise

    def _pause(self, seconds: float) -> bool:
        """Wait between attempts; True if the client was closed meanwhile."""
        return self._closing.wait(seconds)

    def _attempt(self, method: Unary, url: str, body: bytes) -> Any:
        """One HTTP request: the answer, or :class:`_Failed`. A malformed answer is a DecodeError."""
        with self._lock:
            self.attempts += 1
        started = time.monotonic()
        what, timeout = method.value, self.timeout
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=self._headers.reveal(),
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                retries=False,  # ours, by API code: see call()
                redirect=False,
                preload_content=False,
            )
        except SSLError as exc:  # a certificate that does not verify: trying again cannot help
            raise _Failed(ConnectionLostError(f"{what}: TLS failed for {self.base_url}: {exc}")) from None
        except NewConnectionError:  # before the timeouts: urllib3 makes it a ConnectTimeoutError too
            lost = ConnectionLostError(f"{what}: cannot reach {self.base_url}: the connection was refused")
            raise _Failed(lost, retry=True) from None
        except Urllib3Timeout:
            lost = ConnectionLostError(f"{what}: no answer from {self.base_url} in {timeout:g} s")
            raise _Failed(lost, retry=True) from None
        except HTTPError as exc:
            lost = ConnectionLostError(f"{what}: cannot reach {self.base_url}: {type(exc).__name__}")
            raise _Failed(lost, retry=True) from None
        try:
            data = response.read(MAX_BODY + 1)
        except Urllib3Timeout:
            lost = ConnectionLostError(f"{what}: the answer stalled for {timeout:g} s")
            raise _Failed(lost, retry=True) from None
        except HTTPError as exc:
            lost = ConnectionLostError(f"{what}: the answer broke off: {type(exc).__name__}")
            raise _Failed(lost, retry=True) from None
        finally:
            response.release_conn()
        status = response.status
        log.debug("%s -> HTTP %d in %.3f s", what, status, time.monotonic() - started)
        if len(data) > MAX_BODY:
            raise _Failed(ApiError(f"{what}: an answer over {MAX_BODY} bytes was refused"))
        if status == 200:
            return decode_unary(method, data)
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        error, retry = classify_rest(
            what,
            status,
            decode_unary_error(data),
            tracking_id=response.headers.get("x-tracking-id", ""),
            retry_after=wait,
        )
        raise _Failed(error, retry=retry, wait=wait or 0.0)


class _Failed(Exception):
    """One attempt failed: the error to raise, whether to try again, and after how long at least."""

    def __init__(self, error: RxInvestError, *, retry: bool = False, wait: float = 0.0) -> None:
        super().__init__(str(error))
        self.error, self.retry, self.wait = error, retry, wait


class _Headers:
    """Request headers with the token: shown as ``***`` wherever printed or put in a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: dict[str, str]) -> None:
        self._value = value

    def reveal(self) -> dict[str, str]:
        return dict(self._value)

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _checked_url(base_url: object) -> str:
    """``base_url`` ending in ``/``: https anywhere, http only to loopback; else ConfigurationError."""
    if not isinstance(base_url, str):
        raise ConfigurationError(f"not a REST base URL: {base_url!r}")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigurationError(f"not a REST base URL: {base_url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigurationError(f"expected an http(s):// REST base URL, not {base_url!r}")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigurationError(
            f"plain http would send the token in clear: use https for {parts.hostname}, not {base_url!r}"
        )
    return base_url if base_url.endswith("/") else base_url + "/"
