"""The REST client against a loopback ``http.server`` the test scripts: answers, error mapping,
retries with Retry-After, timeouts, TLS, closing, and the token kept out of every text."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
import traceback
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rxinvest import model as m
from rxinvest.errors import (
    ApiError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLostError,
    DecodeError,
    PermissionDeniedError,
    RateLimitedError,
)
from rxinvest.transport import RestClient
from rxinvest.transport.rest import classify_rest, retry_after_seconds
from rxinvest.wire import Unary

TOKEN = "t.SECRET-token-0123456789"
WAIT = 10.0
ORDERS_PATH = "/rest/tinkoff.public.invest.api.contract.v1.OrdersService/GetOrders"


class Reply:
    """One scripted answer: status, body, headers, and a delay before it (seconds)."""

    def __init__(
        self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None, delay: float = 0
    ):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
        self.headers = headers or {}
        self.delay = delay


class FakeGateway:
    """A loopback HTTP server answering each request with the next scripted :class:`Reply` (the last
    one again when the script runs out), recording what it received."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [Reply()]
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with gateway.lock:
                    gateway.requests.append((self.path, dict(self.headers.items()), body))
                    reply = gateway.replies.pop(0) if len(gateway.replies) > 1 else gateway.replies[0]
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                    self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/rest/"

    def __enter__(self) -> FakeGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def recorded_pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Pauses between attempts, recorded instead of slept."""
    pauses: list[float] = []

    def pause(self: RestClient, seconds: float) -> bool:
        pauses.append(seconds)
        return self.closed

    monkeypatch.setattr(RestClient, "_pause", pause)
    return pauses


ORDERS_ANSWER = {
    "orders": [
        {
            "orderId": "49000000001",
            "executionReportStatus": "EXECUTION_REPORT_STATUS_PARTIALLYFILL",
            "lotsRequested": "3",
            "lotsExecuted": "1",
            "direction": "ORDER_DIRECTION_BUY",
            "initialSecurityPrice": {"currency": "rub", "units": "250", "nano": 500000000},
            "stages": [
                {"quantity": "1", "tradeId": "7600000001", "price": {"currency": "rub", "units": "250"}}
            ],
        }
    ]
}


def test_a_call_posts_json_with_the_headers_and_decodes_the_answer() -> None:
    with FakeGateway(Reply(200, ORDERS_ANSWER)) as gateway:
        client = RestClient(gateway.url, TOKEN, app_name="me.rxinvest")
        answer = client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="2000000001"))
        client.close()
    assert isinstance(answer, m.GetOrdersResponse)
    (order,) = answer.orders
    assert order.order_id == "49000000001"
    assert order.lots_requested == 3
    assert order.execution_report_status is m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_PARTIALLYFILL
    assert order.initial_security_price == m.Money(Decimal("250.5"), "rub")
    assert order.stages[0].trade_id == "7600000001"
    ((path, headers, body),) = gateway.requests
    assert path == ORDERS_PATH
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["authorization"] == f"Bearer {TOKEN}"
    assert lowered["x-app-name"] == "me.rxinvest"
    assert lowered["content-type"] == "application/json"
    assert json.loads(body) == {"accountId": "2000000001"}
    assert (client.calls, client.attempts, client.failures) == (1, 1, 0)


def test_the_operations_request_writes_from_under_its_proto_name() -> None:
    page = {"hasNext": False, "nextCursor": "", "items": []}
    since = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
    with FakeGateway(Reply(200, page)) as gateway:
        client = RestClient(gateway.url, TOKEN)
        request = m.GetOperationsByCursorRequest(account_id="a", from_=since, limit=1000)
        assert client.call(Unary.GET_OPERATIONS_BY_CURSOR, request) == m.GetOperationsByCursorResponse()
    ((path, _, body),) = gateway.requests
    assert path.endswith("OperationsService/GetOperationsByCursor")
    sent = json.loads(body)
    assert sent["from"] == "2025-11-21T10:00:00Z"
    assert sent["limit"] == 1000


def _error(grpc: int, api: str, description: str = "") -> dict[str, Any]:
    return {"code": grpc, "message": api, "description": description}


@pytest.mark.parametrize(
    ("reply", "kind", "code", "attempts"),
    [
        (
            Reply(401, _error(16, "40003", "authentication token is missing or invalid")),
            AuthenticationError,
            "40003",
            1,
        ),
        (Reply(401, b""), AuthenticationError, "401", 1),
        (Reply(403, _error(7, "40002", "insufficient privileges")), PermissionDeniedError, "40002", 1),
        (Reply(429, _error(8, "80002", "request limit exceeded")), RateLimitedError, "80002", 1),
        (Reply(429, b"Too Many Requests"), RateLimitedError, "429", 1),
        (Reply(404, _error(5, "50005", "order not found")), ApiError, "50005", 1),
        (Reply(404, _error(5, "50004", "account not found")), ApiError, "50004", 1),
        (Reply(400, _error(3, "30057", "invalid order id")), ApiError, "30057", 1),
        (Reply(500, _error(13, "70001", "internal error")), ApiError, "70001", 4),
        (Reply(500, _error(13, "70003", "internal error")), ApiError, "70003", 4),
        (Reply(503, b"<html>upstream unavailable</html>"), ApiError, "503", 4),
        (Reply(502, b""), ApiError, "502", 4),
    ],
)
def test_errors_map_by_api_code_and_only_internal_ones_are_retried(
    recorded_pauses: list[float], reply: Reply, kind: type[Exception], code: str, attempts: int
) -> None:
    with FakeGateway(reply) as gateway:
        client = RestClient(gateway.url, TOKEN, retries=3)
        with pytest.raises(kind) as caught:
            client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
    error = caught.value
    assert type(error) is kind  # not a subclass standing in for another kind
    assert isinstance(error, ApiError)
    assert error.code == code
    assert "GetOrders" in str(error)
    assert len(gateway.requests) == attempts
    assert len(recorded_pauses) == attempts - 1
    assert (client.calls, client.attempts, client.failures) == (1, attempts, 1)


def test_a_rate_limit_tells_how_long_to_wait(recorded_pauses: list[float]) -> None:
    with FakeGateway(Reply(429, _error(8, "80002"))) as gateway:
        client = RestClient(gateway.url, TOKEN)
        with pytest.raises(RateLimitedError) as caught:
            client.call(Unary.GET_PORTFOLIO, m.PortfolioRequest(account_id="a"))
    assert caught.value.retry_after == 60.0  # the API recounts requests once a minute
    with FakeGateway(Reply(429, _error(8, "80002"), {"Retry-After": "7"})) as gateway:
        client = RestClient(gateway.url, TOKEN)
        with pytest.raises(RateLimitedError) as caught:
            client.call(Unary.GET_PORTFOLIO, m.PortfolioRequest(account_id="a"))
    assert caught.value.retry_after == 7.0
    assert recorded_pauses == []  # raised, not retried


def test_a_404_without_an_api_error_is_a_wrong_base_url() -> None:
    with FakeGateway(Reply(404, b"<html>not found</html>")) as gateway:
        client = RestClient(gateway.url, TOKEN)
        with pytest.raises(ConfigurationError, match="no such method"):
            client.call(Unary.GET_POSITIONS, m.GetPositionsRequest(account_id="a"))


def test_retries_honour_retry_after_within_the_bound(recorded_pauses: list[float]) -> None:
    replies = (
        Reply(503, _error(14, "70002"), {"Retry-After": "1000"}),  # far too long: capped at max_delay
        Reply(503, _error(14, "70002"), {"Retry-After": "0.3"}),  # longer than the backoff: honoured
        Reply(503, _error(14, "70002")),  # no header: the backoff
        Reply(200, {"money": [{"currency": "rub", "units": "5"}]}),
    )
    with FakeGateway(*replies) as gateway:
        client = RestClient(gateway.url, TOKEN, retries=3, backoff=0.01, max_delay=0.5)
        answer = client.call(Unary.GET_POSITIONS, m.GetPositionsRequest(account_id="a"))
    assert answer.money == (m.Money(Decimal(5), "rub"),)
    assert len(gateway.requests) == 4
    first, second, third = recorded_pauses
    assert first == 0.5
    assert second == pytest.approx(0.3)
    assert 0 < third <= 0.5
    assert third < 0.3  # the backoff alone: 0.01 doubled twice, with at most 20 % jitter
    assert (client.calls, client.attempts, client.failures) == (1, 4, 0)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
    assert retry_after_seconds("12", now) == 12.0
    assert retry_after_seconds("0.5", now) == 0.5
    assert retry_after_seconds("-3", now) == 0.0
    assert retry_after_seconds("Fri, 21 Nov 2025 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Fri, 21 Nov 2025 09:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_classify_rest_decides_by_api_code_before_status() -> None:
    # A gateway that puts a permission code under a 500 is believed by its code: final.
    error, retry = classify_rest("GetOrders", 500, m.RpcStatus(code=7, message="40002"))
    assert type(error) is PermissionDeniedError
    assert not retry
    error, retry = classify_rest("GetOrders", 400, m.RpcStatus(code=13, message="70001"))
    assert type(error) is ApiError
    assert retry
    error, retry = classify_rest("GetOrders", 200, m.RpcStatus(code=16))
    assert type(error) is AuthenticationError
    error, retry = classify_rest("GetOrders", 400, m.RpcStatus(code=8, message=""), retry_after=3.0)
    assert type(error) is RateLimitedError
    assert error.retry_after == 3.0


def test_a_silent_server_times_out_and_is_retried_then_raised(recorded_pauses: list[float]) -> None:
    with FakeGateway(Reply(200, {}, delay=2.0)) as gateway:
        client = RestClient(gateway.url, TOKEN, timeout=0.2, retries=1)
        with pytest.raises(ConnectionLostError, match="no answer"):
            client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
    assert len(gateway.requests) == 2
    assert len(recorded_pauses) == 1


def test_a_refused_connection_is_retried_then_raised(recorded_pauses: list[float]) -> None:
    with FakeGateway() as gateway:
        url = gateway.url
    client = RestClient(url, TOKEN, retries=2)  # nothing listens there any more
    with pytest.raises(ConnectionLostError, match="cannot reach"):
        client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
    assert client.attempts == 3


def test_a_malformed_answer_is_a_decode_error_not_retried() -> None:
    with FakeGateway(Reply(200, b"[1, 2")) as gateway:
        client = RestClient(gateway.url, TOKEN)
        with pytest.raises(DecodeError):
            client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
    assert len(gateway.requests) == 1


def test_the_token_never_shows_in_errors_tracebacks_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replies = [
        Reply(401, _error(16, "40003", "bad token")),
        Reply(500, _error(13, "70001", "boom")),
        Reply(200, b"not json"),
        Reply(200, {}, delay=1.0),
    ]
    texts: list[str] = []
    for reply in replies:
        with FakeGateway(reply) as gateway:
            client = RestClient(gateway.url, TOKEN, timeout=0.2, retries=1, backoff=0.01)
            texts += [repr(client), str(client), repr(vars(client))]
            try:
                client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
            except Exception as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
            else:
                raise AssertionError(f"{reply.status} did not raise")
            client.close()
    texts += [record.getMessage() for record in caplog.records]
    assert any("70001" in text for text in texts)  # the texts are the real ones
    leaks = [text for text in texts if "SECRET" in text]
    assert not leaks


def test_plain_http_is_refused_off_loopback_and_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="clear"):
        RestClient("http://invest-public-api.tinkoff.ru/rest/", TOKEN)
    for url in ("ftp://127.0.0.1/rest/", "127.0.0.1/rest", "http://127.0.0.1:99999/rest/", 42):
        with pytest.raises(ConfigurationError):
            RestClient(url, TOKEN)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="token"):
        RestClient("https://example.invalid/rest/", "")
    for options in ({"timeout": 0}, {"timeout": None}, {"retries": -1}, {"retries": 1.5}, {"max_delay": 0}):
        with pytest.raises(ConfigurationError):
            RestClient("https://example.invalid/rest/", TOKEN, **options)  # type: ignore[arg-type]
    client = RestClient("https://example.invalid/rest", TOKEN)
    assert client.base_url == "https://example.invalid/rest/"


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_certificates_are_verified(self_signed: tuple[Path, Path], recorded_pauses: list[float]) -> None:
    cert, key = self_signed
    with FakeGateway(Reply(200, ORDERS_ANSWER)) as gateway:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        gateway.server.socket = context.wrap_socket(gateway.server.socket, server_side=True)
        client = RestClient(gateway.url.replace("http://", "https://"), TOKEN)
        with pytest.raises(ConnectionLostError, match="TLS"):
            client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
    assert gateway.requests == []  # nothing, the token least of all, went to an unverified server
    assert recorded_pauses == []  # a certificate that does not verify is not retried


def test_close_ends_a_call_waiting_to_retry() -> None:
    with FakeGateway(Reply(503, _error(14, "70002"), {"Retry-After": "30"})) as gateway:
        client = RestClient(gateway.url, TOKEN, retries=3, max_delay=30)
        caught: list[BaseException] = []

        def run() -> None:
            try:
                client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
            except BaseException as exc:
                caught.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + WAIT
        while not gateway.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        client.close()
        worker.join(WAIT)
        assert not worker.is_alive()
    assert len(caught) == 1
    assert isinstance(caught[0], ClientClosedError)
    with pytest.raises(ClientClosedError):
        client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))


def test_calls_from_many_threads_share_one_client() -> None:
    with FakeGateway(Reply(200, ORDERS_ANSWER)) as gateway:
        client = RestClient(gateway.url, TOKEN)
        answers: list[Any] = []
        lock = threading.Lock()

        def run() -> None:
            for _ in range(10):
                answer = client.call(Unary.GET_ORDERS, m.GetOrdersRequest(account_id="a"))
                with lock:
                    answers.append(answer)

        workers = [threading.Thread(target=run) for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(WAIT)
        client.close()
    assert len(answers) == 80
    assert all(answer.orders[0].order_id == "49000000001" for answer in answers)
    assert len(gateway.requests) == 80
    assert (client.calls, client.attempts) == (80, 80)
