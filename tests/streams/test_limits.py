"""Limits the API enforces by counting: a stream-count refusal is not retried before the recount."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import ServerConnection, serve
from websockets.typing import Subprotocol

import rxinvest
from rxinvest import model as m
from rxinvest.errors import RateLimitedError
from rxinvest.protocol import classify_close, closing
from rxinvest.sim import Faults, Simulator
from rxinvest.sim import serve as serve_sim
from rxinvest.streams import SubscriptionStatus
from rxinvest.transport import WebSocketTransport
from rxinvest.wire import Stream

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


# --- sharding, pacing and repair, against the simulator ---------------------------------------------


class Recording:
    """A transport factory that records every frame the client sends, with its send time: an
    oracle of what left, kept at the socket's edge, apart from the pacing code."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []
        self.transports: list[WebSocketTransport] = []
        self._lock = threading.Lock()

    def __call__(self, listener: Any, *, stream: Stream, url: str) -> WebSocketTransport:
        transport = WebSocketTransport(
            url, listener, token=self.token, dialect="json", name=f"test-{stream.value}"
        )
        send = transport.send

        def recorded(frames: list[str]) -> None:
            with self._lock:
                self.sent += [(time.monotonic(), frame) for frame in frames]
            send(frames)

        transport.send = recorded  # type: ignore[method-assign]
        self.transports.append(transport)
        return transport

    token = ""

    def subscription_requests(self) -> list[float]:
        with self._lock:
            return [at for at, frame in self.sent if "subscriptionAction" in frame or "getMySub" in frame]


def _most_in_a_window(times: list[float], window: float) -> int:
    """The most requests sent within any ``window`` seconds (less 5% for the jitter between the
    budget's clock and the moment the socket sent)."""
    return max(sum(1 for t in times if start <= t < start + window * 0.95) for start in times)


def _market_connections(sim: Simulator) -> list[Any]:
    return [c for c in sim.connections() if c.stream is Stream.MARKET_DATA]


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not met in time"
        time.sleep(0.05)


@pytest.fixture
def limited() -> Iterator[Simulator]:
    with serve_sim(seed=5, manual=True, trader=False, idle_timeout=None) as simulator:
        yield simulator


def _topics(sim: Simulator, count: int) -> list[tuple[str, str, int | str]]:
    """``count`` distinct (kind, instrument id, parameter) triples: candles of every interval and
    books of every depth, each instrument named three ways."""
    ids = [name for i in sim.instruments for name in (f"{i.ticker}_{i.class_code}", i.figi, i.uid)]
    intervals = [n for n in m.SubscriptionInterval.__members__ if not n.endswith("UNSPECIFIED")]
    wanted = [("candles", i, interval) for interval in intervals for i in ids]
    wanted += [("books", i, depth) for depth in (1, 10, 20, 30, 40, 50) for i in ids]
    assert len(wanted) >= count
    return wanted[:count]


def _source(client: rxinvest.Client, kind: str, instrument: str, parameter: int | str) -> Any:
    if kind == "candles":
        return client.market_data.candles(instrument, parameter)
    return client.market_data.order_books(instrument, depth=int(parameter), conflate=False)


def test_650_topics_take_three_connections_under_the_budget_and_leave_nothing(limited: Simulator) -> None:
    sim = limited
    recording = Recording()
    recording.token = sim.token
    limits = rxinvest.Limits(requests=10, window=1.0)
    with rxinvest.Client(
        base_url=sim.base_url, token=sim.token, transport_factory=recording, limits=limits
    ) as client:
        statuses: list[Any] = []
        client.statuses.subscribe(statuses.append)
        subscriptions = [
            watch(_source(client, *topic))[1] for topic in _topics(sim, 650)
        ]  # 650 sources, one after the other: far more requests than the budget, unless merged

        def confirmed() -> set[Any]:
            return {s.target for s in list(statuses) if isinstance(s, SubscriptionStatus) and s.confirmed}

        _wait(lambda: len(confirmed()) == 650)
        assert not [s for s in statuses if isinstance(s, SubscriptionStatus) and not s.confirmed]
        assert len(_market_connections(sim)) == 3
        assert all(len(c.subscriptions) <= 300 for c in _market_connections(sim))
        times = recording.subscription_requests()
        assert _most_in_a_window(times, 1.0) <= 10

        for subscription in subscriptions:
            subscription.dispose()
        _wait(lambda: all(not sim.my_subscriptions(c.id) for c in _market_connections(sim)))
        times = recording.subscription_requests()
        assert _most_in_a_window(times, 1.0) <= 10


def test_a_burst_of_subscriptions_is_merged_under_the_servers_limit(limited: Simulator) -> None:
    # The measurement: 126 subscriptions in 10 ms met 26 TOO_MANY_REQUESTS (limit 100 a minute).
    sim = limited
    with rxinvest.connect(sim.token, target=sim.base_url) as client:
        statuses: list[Any] = []
        client.statuses.subscribe(statuses.append)
        for kind, instrument, parameter in _topics(sim, 126):
            watch(_source(client, kind, instrument, parameter))
        _wait(lambda: sum(isinstance(s, SubscriptionStatus) for s in list(statuses)) >= 126)
        assert all(s.confirmed for s in statuses if isinstance(s, SubscriptionStatus))
        (connection,) = _market_connections(sim)
        assert sum(1 for r in connection.requests if hasattr(r, "subscription_action")) <= 90


def test_too_many_requests_is_retried_later_not_refused(limited: Simulator) -> None:
    sim = limited
    sim.fault_next(Faults(too_many_requests=True))
    with rxinvest.connect(sim.token, target=sim.base_url) as client:
        statuses: list[Any] = []
        client.statuses.subscribe(statuses.append)
        books = Collector()
        watch(client.market_data.order_books("SBER_TQBR", depth=10), books)
        _wait(lambda: bool(_market_connections(sim)) and len(_market_connections(sim)[0].requests) >= 2)
        (connection,) = _market_connections(sim)
        sim.set_connection_faults(connection.id, Faults())  # the server takes requests again
        _wait(lambda: any(isinstance(s, SubscriptionStatus) for s in list(statuses)))
        assert [s.confirmed for s in statuses if isinstance(s, SubscriptionStatus)] == [True]
        assert not books.errors
        refused_then_asked_again = [
            r for r in sim.connections()[0].requests if isinstance(r, m.SubscribeOrderBookRequest)
        ]
        assert len(refused_then_asked_again) >= 2


def test_check_releases_a_subscription_the_client_does_not_want(limited: Simulator) -> None:
    sim = limited
    with rxinvest.connect(sim.token, target=sim.base_url) as client:
        prices = Collector()
        watch(client.market_data.last_prices("SBER_TQBR"), prices)
        _wait(
            lambda: (
                bool(_market_connections(sim))
                and len(sim.my_subscriptions(_market_connections(sim)[0].id)) == 1
            )
        )
        (connection,) = _market_connections(sim)
        # Inject: a subscription made on the client's socket behind the client's back.
        stray = (
            '{"subscribeTradesRequest":{"subscriptionAction":"SUBSCRIPTION_ACTION_SUBSCRIBE",'
            '"instruments":[{"instrumentId":"GAZP_TQBR"}]}}'
        )
        client._market_data.shards[0]._transport.send([stray])
        _wait(lambda: len(sim.my_subscriptions(connection.id)) == 2)

        result = client.check(timeout=10)

        assert result.complete and result.connections == 1
        assert [(t.kind.value, t.instrument_id) for t in result.released] == [
            ("trades", sim.index["GAZP_TQBR"].uid)
        ]
        assert result.missing == ()
        _wait(lambda: len(sim.my_subscriptions(connection.id)) == 1)
        assert not prices.errors


def test_metrics_count_what_subscribers_get_and_complete_with_the_client() -> None:
    with serve_sim(seed=3, speed=5.0) as sim:
        client = rxinvest.connect(sim.token, target=sim.base_url)
        trades = Collector()
        watch(client.market_data.trades(["SBER_TQBR", "GAZP_TQBR"]), trades)
        trades.wait_for(m.Trade, 5)
        snapshots = Collector()
        watch(client.metrics(interval=0.2), snapshots)
        snapshots.wait(lambda c: len(c.events) >= 3)
        last = snapshots.events[-1]
        assert last.messages["Trade"] >= len(trades.events) - 1 >= 4  # counted when they arrived
        assert last.subscriptions == (2,) and last.connections == 1
        assert last.request_budget == 90 and 1 <= last.requests_used <= 90
        assert last.reconnects == 0 and last.dropped.get("all", 0) == 0
        assert all(rate >= 0 for rate in last.rates.values())
        assert "events" in str(last)
        client.close()
        snapshots.wait(lambda c: c.completed.is_set())
    with pytest.raises(rxinvest.errors.ConfigurationError):
        client.metrics(interval=0)


def test_topics_the_server_refuses_as_over_its_limit_move_to_further_connections() -> None:
    # The API does not say whether last prices count against the 300: when the server counts
    # more than we do, it refuses with LIMIT_IS_EXCEEDED, and the topic moves on.
    with (
        serve_sim(seed=5, manual=True, trader=False, idle_timeout=None, max_subscriptions=5) as sim,
        rxinvest.connect(sim.token, target=sim.base_url) as client,
    ):
        statuses: list[Any] = []
        client.statuses.subscribe(statuses.append)
        ids = [f"{i.ticker}_{i.class_code}" for i in sim.instruments[:12]]
        books, subscription = watch(client.market_data.order_books(ids, depth=10).with_markers())

        def confirmed() -> list[Any]:
            return [s for s in list(statuses) if isinstance(s, SubscriptionStatus) and s.confirmed]

        _wait(lambda: len(confirmed()) == 12)
        assert not books.errors
        assert not [s for s in statuses if isinstance(s, SubscriptionStatus) and not s.confirmed]
        assert sorted(len(c.subscriptions) for c in _market_connections(sim)) == [2, 5, 5]
        sim.advance(12)  # every instrument's books come, wherever it is
        _wait(
            lambda: (
                {b.instrument_uid for b in books.events if isinstance(b, m.OrderBook)}
                >= {i.uid for i in sim.instruments[:12]}
            )
        )
        subscription.dispose()
        _wait(lambda: all(not c.subscriptions for c in _market_connections(sim)))
