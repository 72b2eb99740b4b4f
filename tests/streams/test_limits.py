"""Limits the API enforces by counting: a stream-count refusal is not retried before the recount."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.sync.server import ServerConnection, serve
from websockets.typing import Subprotocol

import rxinvest
from rxinvest.errors import RateLimitedError
from rxinvest.protocol import classify_close, closing

from .test_client import Collector, watch


@pytest.mark.parametrize(
    ("reason", "wait"),
    [("RESOURCE_EXHAUSTED: 80001", 120.0), ("80002", 60.0), ("80004 no subscriptions", 0.0)],
)
def test_a_limit_says_when_trying_again_can_work(reason: str, wait: float) -> None:
    error, retry = classify_close(4008, reason)
    assert isinstance(error, RateLimitedError) and retry
    assert error.retry_after == wait


@pytest.fixture
def refusing() -> Iterator[tuple[str, list[float]]]:
    """A loopback server that closes every connection with 4008 "80001" (too many streams)."""
    opened: list[float] = []

    def handler(ws: ServerConnection) -> None:
        opened.append(time.monotonic())
        ws.close(4008, "RESOURCE_EXHAUSTED: 80001")

    with serve(handler, "127.0.0.1", 0, subprotocols=[Subprotocol("json")]) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/ws/", opened
        server.shutdown()
        thread.join(5)


def test_too_many_streams_waits_for_the_recount(
    refusing: tuple[str, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, opened = refusing
    monkeypatch.setitem(closing.RETRY_AFTER, "80001", 1.0)  # the API's 120 s, scaled down for a test
    with rxinvest.connect("t", target=url) as client:
        statuses: list[object] = []
        client.statuses.subscribe(statuses.append)
        watch(client.market_data.last_prices("SBER_TQBR"), Collector())
        deadline = time.monotonic() + 10
        while len(opened) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(opened) >= 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(opened)]
    assert all(gap >= 0.95 for gap in gaps[:2]), gaps  # never before the recount (the usual backoff: 0.1 s)
