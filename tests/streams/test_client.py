"""The client against the simulator on 127.0.0.1: every source, sharing, errors, threads, secrets."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops

import rxinvest
from rxinvest import model as m
from rxinvest.errors import (
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    SubscriptionRejectedError,
)
from rxinvest.sim import Faults, Simulator, serve
from rxinvest.streams import ConnectionStatus, SubscriptionStatus

SBER, GAZP = "e6123145-9665-43e0-8413-cd61b8aa9b13", "962e2a95-02a9-4171-abd7-aa198dbe643a"
WAIT = 10.0  # seconds: the bound of every wait below


class Collector:
    """Records what an observer receives, and on which thread."""

    def __init__(self, on_event: Callable[[Any], None] | None = None) -> None:
        self.events: list[Any] = []
        self.errors: list[Exception] = []
        self.completed = threading.Event()
        self.threads: set[str] = set()
        self._on_event = on_event
        self._changed = threading.Condition()

    def on_next(self, event: Any) -> None:
        self.threads.add(threading.current_thread().name)
        if self._on_event:
            self._on_event(event)
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def on_error(self, error: Exception) -> None:
        with self._changed:
            self.errors.append(error)
            self._changed.notify_all()

    def on_completed(self) -> None:
        self.completed.set()

    def wait(self, predicate: Callable[[Collector], bool], timeout: float = WAIT) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(
                    f"not met within {timeout} s: {len(self.events)} events "
                    f"{sorted({type(e).__name__ for e in self.events})}, errors {self.errors}"
                )

    def wait_for(self, kind: type, count: int = 1) -> list[Any]:
        self.wait(lambda c: sum(isinstance(e, kind) for e in c.events) >= count)
        return [e for e in self.events if isinstance(e, kind)]


def watch(source: reactivex.Observable[Any], collector: Collector | None = None) -> tuple[Collector, Any]:
    collector = collector or Collector()
    return collector, source.subscribe(collector.on_next, collector.on_error, collector.on_completed)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with serve(seed=17, speed=5.0, min_ping_delay=0.05) as simulator:
        yield simulator


def client_for(sim: Simulator, **options: Any) -> rxinvest.Client:
    return rxinvest.connect(sim.token, target=sim.base_url, **options)


@pytest.mark.parametrize("dialect", ["json", "json-proto"])
def test_every_source_delivers_typed_events(sim: Simulator, dialect: str) -> None:
    account = sim.accounts[0]
    with client_for(sim, dialect=dialect) as client:
        md = client.market_data
        sources = {
            "books": (md.order_books("SBER_TQBR", depth=10), m.OrderBook),
            "candles": (md.candles(["SBER_TQBR"], "ONE_MINUTE"), m.Candle),
            "trades": (md.trades(["SBER_TQBR", "GAZP_TQBR"]), m.Trade),
            "prices": (md.last_prices("GAZP_TQBR"), m.LastPrice),
            "statuses": (md.trading_statuses("SBER_TQBR"), m.TradingStatus),
            "orders": (client.orders.order_states(account), m.OrderState),
            "fills": (client.orders.order_trades(account), m.OrderTrades),
            "positions": (client.operations.positions(account), m.PositionsResponse),
            "portfolio": (client.operations.portfolio(account), m.PortfolioResponse),
        }
        watched = {name: watch(source)[0] for name, (source, _) in sources.items()}
        sim.place_order(account, "GAZP_TQBR", m.OrderDirection.ORDER_DIRECTION_BUY, 1)  # account events
        for name, (_, kind) in sources.items():
            events = watched[name].wait_for(kind)
            assert all(not isinstance(e, m.Ping) for e in watched[name].events), name
            assert not watched[name].errors, (name, watched[name].errors)
            assert isinstance(events[0], kind)
        assert watched["books"].events[0].depth == 10
        assert {e.instrument_uid for e in watched["prices"].events} == {GAZP}
        assert all(e.account_id == account for e in watched["orders"].events)
    for collector in watched.values():
        assert collector.completed.wait(WAIT)  # closing the client completes every subscription
    assert sim.connections(include_closed=True)[-1].dialect == dialect


def _market_data_requests(sim: Simulator, since: int) -> list[Any]:
    requests = [c for c in sim.connections(include_closed=True) if c.stream.value == "MarketDataStream"]
    return [r for c in requests if c.id > since for r in c.requests]


def test_subscriptions_are_shared_and_reference_counted(sim: Simulator) -> None:
    since = max((c.id for c in sim.connections(include_closed=True)), default=0)
    with client_for(sim) as client:
        books = client.market_data.order_books("LKOH_TQBR", depth=20)
        first, d1 = watch(books)
        second, d2 = watch(books)
        third, d3 = watch(client.market_data.order_books(["LKOH_TQBR"], depth=20))  # an identical request
        for collector in (first, second, third):
            collector.wait_for(m.OrderBook)
        (connection,) = [c for c in sim.connections() if c.id > since]
        (answer,) = sim.my_subscriptions(connection.id)  # what getMySubscriptions answers: one book
        assert [(e.instrument_uid, e.depth) for e in answer.order_book_subscriptions] == [
            ("02cfdf61-6298-4c0f-a9ca-9cabc82afaf3", 20)
        ]
        d1.dispose()
        d2.dispose()
        time.sleep(0.3)
        assert len(sim.my_subscriptions(connection.id)) == 1  # the third still holds it
        assert sum(isinstance(r, m.SubscribeOrderBookRequest) for r in _market_data_requests(sim, since)) == 1
        d3.dispose()
        sim.wait_for(lambda s: not s.my_subscriptions(connection.id), timeout=WAIT)
        requests = _market_data_requests(sim, since)
    unsubscribes = [
        r
        for r in requests
        if isinstance(r, m.SubscribeOrderBookRequest)
        and r.subscription_action is m.SubscriptionAction.SUBSCRIPTION_ACTION_UNSUBSCRIBE
    ]
    assert len(unsubscribes) == 1


def test_a_rejected_instrument_reaches_only_its_observers(sim: Simulator) -> None:
    confirmed: list[SubscriptionStatus] = []
    with client_for(sim) as client:
        client.statuses.pipe(ops.filter(lambda s: isinstance(s, SubscriptionStatus))).subscribe(
            confirmed.append
        )
        good, _ = watch(client.market_data.last_prices("SBER_TQBR"))
        bad, _ = watch(client.market_data.last_prices("NOT_AN_INSTRUMENT"))
        bad.wait(lambda c: bool(c.errors))
        good.wait_for(m.LastPrice, 3)
    (error,) = bad.errors
    assert isinstance(error, SubscriptionRejectedError)
    assert error.status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    assert error.target == "NOT_AN_INSTRUMENT"
    assert error.tracking_id
    assert not good.errors
    assert any(s.confirmed and s.instrument_uid == SBER for s in confirmed)


def test_authentication_failure_errors_at_once_without_retries(sim: Simulator) -> None:
    before = len(sim.connections(include_closed=True))
    started = time.monotonic()
    with rxinvest.connect("t.wrong-token", target=sim.base_url) as client:
        books, _ = watch(client.market_data.order_books("SBER_TQBR"))
        books.wait(lambda c: bool(c.errors))
    assert isinstance(books.errors[0], AuthenticationError)
    assert time.monotonic() - started < 5  # no backoff: a retry would wait
    time.sleep(0.5)
    assert len(sim.connections(include_closed=True)) == before  # refused at the handshake's end: no retry
    assert "wrong-token" not in str(books.errors[0])


def test_a_slow_subscriber_delays_neither_the_reader_nor_other_sources(sim: Simulator) -> None:
    with client_for(sim) as client:
        slow, _ = watch(
            client.market_data.order_books(["SBER_TQBR", "GAZP_TQBR"], depth=10),
            Collector(lambda e: time.sleep(0.2)),
        )
        fast, _ = watch(client.market_data.trades(["SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR", "LKOH_TQBR"]))
        time.sleep(2.0)
        slow_count, fast_count = len(slow.events), len(fast.events)
        received_books = sim.connections()[-1].frames_sent
    assert slow_count <= 11  # 2 s at 200 ms per event
    assert fast_count >= 20  # the trades kept flowing meanwhile
    assert received_books > slow_count  # the reader kept reading books the slow subscriber had not taken


def test_the_token_never_appears_in_logs_reprs_or_errors(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = sim.token
    with client_for(sim) as client:
        prices, _ = watch(client.market_data.last_prices("SBER_TQBR"))
        prices.wait_for(m.LastPrice)
        texts = [
            repr(client),
            str(client),
            repr(client._token),
            repr(client._market_data.shards[0]._transport),
        ]
    with rxinvest.connect(secret + "x", target=sim.base_url) as bad_client:
        refused, _ = watch(bad_client.market_data.last_prices("SBER_TQBR"))
        refused.wait(lambda c: bool(c.errors))
        texts += [str(refused.errors[0]), repr(refused.errors[0])]
    assert caplog.records  # DEBUG logging did capture the handshakes
    for text in [*texts, caplog.text]:
        assert secret not in text


def test_reconnects_resubscribe_and_sources_stay_alive() -> None:
    with (
        serve(seed=2, speed=5.0, faults=Faults(drop_after=30)) as sim,
        rxinvest.connect(sim.token, target=sim.base_url) as client,
    ):
        statuses: list[Any] = []
        client.statuses.subscribe(statuses.append)
        trades, _ = watch(client.market_data.trades(["SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR"]))
        trades.wait(lambda c: len(c.events) >= 80, timeout=20)
        connections = [
            c for c in sim.connections(include_closed=True) if c.stream.value == "MarketDataStream"
        ]
    assert len(connections) >= 3  # every connection was cut after 30 frames, and the client came back
    assert not trades.errors
    assert all(len(c.requests) >= 1 for c in connections)  # each new connection subscribed again
    states = [s.state for s in statuses if isinstance(s, ConnectionStatus)]
    assert "reconnecting" in states
    assert states.count("connected") >= 3


def test_malformed_frames_are_skipped_and_the_stream_goes_on() -> None:
    faults = Faults(malformed_every=3, malformed_kinds=("invalid_json", "wrong_types", "unknown_payload"))
    with (
        serve(seed=2, speed=5.0, faults=faults) as sim,
        rxinvest.connect(sim.token, target=sim.base_url) as client,
    ):
        trades, _ = watch(client.market_data.trades(["SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR"]))
        trades.wait(lambda c: len(c.events) >= 30)
        assert client._market_data.shards[0].malformed >= 5
    assert not trades.errors


def test_order_states_are_never_dropped_for_a_slow_subscriber() -> None:
    with (
        serve(seed=5, manual=True, trader=False) as sim,
        rxinvest.connect(sim.token, target=sim.base_url) as client,
    ):
        account = sim.accounts[0]
        states, _ = watch(client.orders.order_states(account), Collector(lambda e: time.sleep(0.01)))
        sim.wait_for(lambda s: any(c.accounts for c in s.connections()), timeout=WAIT)
        placed = [
            sim.place_order(
                account, "SBER_TQBR", m.OrderDirection.ORDER_DIRECTION_BUY, 1, price=Decimal("100.00")
            )
            for _ in range(40)
        ]
        states.wait(lambda c: len(c.events) >= 40)
    assert [s.order_id for s in states.events[:40]] == [p.order_id for p in placed]


def test_subscribers_get_their_events_on_delivery_threads_not_the_reader(sim: Simulator) -> None:
    with client_for(sim) as client:
        prices, _ = watch(client.market_data.last_prices("SBER_TQBR"))
        prices.wait_for(m.LastPrice, 3)
    assert prices.threads
    assert all(name.startswith("rxinvest-delivery") for name in prices.threads)


def test_a_custom_scheduler_runs_every_pipeline_on_its_thread(sim: Simulator) -> None:
    from reactivex.scheduler import EventLoopScheduler

    scheduler = EventLoopScheduler(
        thread_factory=lambda target: threading.Thread(target=target, name="mine", daemon=True)
    )
    with client_for(sim, scheduler=scheduler) as client:
        prices, _ = watch(client.market_data.last_prices("SBER_TQBR"))
        trades, _ = watch(client.market_data.trades("SBER_TQBR"))
        prices.wait_for(m.LastPrice)
        trades.wait_for(m.Trade)
    assert prices.threads == trades.threads == {"mine"}
    scheduler.dispose()


def test_configuration_errors_come_before_any_io(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with client_for(sim) as client:
        with pytest.raises(ConfigurationError, match="depth"):
            client.market_data.order_books("SBER_TQBR", depth=7)
        with pytest.raises(ConfigurationError, match="interval"):
            client.market_data.candles("SBER_TQBR", "FORTNIGHT")
        with pytest.raises(ConfigurationError):
            client.orders.order_states([])
        watch(client.market_data.candles("SBER_TQBR", "ONE_MINUTE"))
        with pytest.raises(ConfigurationError, match="waiting_close"):
            client.market_data.candles("SBER_TQBR", "ONE_MINUTE", waiting_close=True)
    monkeypatch.delenv("INVEST_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="token"):
        rxinvest.connect(target="prod")
    with pytest.raises(ConfigurationError, match="target"):
        rxinvest.connect("x", target="staging")
    with pytest.raises(ConfigurationError, match="unknown sim_options"):
        rxinvest.connect(sim_options={"sead": 1})
    with pytest.raises(ConfigurationError, match="scenario"):
        rxinvest.connect(sim_options={"scenario": "crash"})


def test_a_conflict_found_at_subscribe_time_fails_that_subscriber_only(sim: Simulator) -> None:
    """Both sources are valid when made; the second conflicts once the first is subscribed. Its
    subscriber gets on_error(ConfigurationError); the first goes on, and nothing is half-subscribed."""
    with client_for(sim) as client:
        forming = client.market_data.candles("SBER_TQBR", "ONE_MINUTE")
        closed = client.market_data.candles("SBER_TQBR", "ONE_MINUTE", waiting_close=True)
        first, _ = watch(forming)
        second, _ = watch(closed)
        second.wait(lambda c: bool(c.errors))
        assert isinstance(second.errors[0], ConfigurationError)
        assert [t.waiting_close for t in client._market_data.shards[0].session.topics] == [False]
        first.wait_for(m.Candle)


def test_subscribing_after_close_fails_cleanly(sim: Simulator) -> None:
    client = client_for(sim)
    client.close()
    closed, _ = watch(client.market_data.last_prices("SBER_TQBR"))
    closed.wait(lambda c: bool(c.errors))
    assert isinstance(closed.errors[0], ClientClosedError)


def test_connect_without_a_token_starts_an_embedded_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVEST_TOKEN", raising=False)
    with rxinvest.connect(sim_options={"seed": 9, "speed": 5.0}) as client:
        assert client.sim is not None
        assert client.base_url == client.sim.base_url
        prices, _ = watch(client.market_data.last_prices("SBER_TQBR"))
        prices.wait_for(m.LastPrice)
        sim = client.sim
    with pytest.raises(RuntimeError):
        sim.connections()  # stopped with the client


def test_a_silent_stream_is_reconnected_by_the_watchdog() -> None:
    with serve(seed=2, speed=5.0, min_ping_delay=0.05) as sim:
        sim.fault_next(Faults(stall_after=5))  # the first connection goes silent: no data, no pings
        with rxinvest.connect(sim.token, target=sim.base_url, ping_delay=0.1) as client:
            states: list[Any] = []
            client.statuses.subscribe(states.append)
            trades, _ = watch(client.market_data.trades(["SBER_TQBR", "GAZP_TQBR", "VTBR_TQBR"]))
            trades.wait(lambda c: len(c.events) >= 20, timeout=WAIT)
        connections = [
            c for c in sim.connections(include_closed=True) if c.stream.value == "MarketDataStream"
        ]
    assert len(connections) >= 2
    assert connections[0].frames_sent == 5
    lost = [s for s in states if isinstance(s, ConnectionStatus) and s.state == "reconnecting"]
    assert "silent" in str(lost[0].error)


def test_account_streams_come_back_after_a_drop() -> None:
    with serve(seed=3, speed=5.0) as sim:
        sim.fault_next(Faults(drop_after=3))
        with rxinvest.connect(sim.token, target=sim.base_url) as client:
            states, _ = watch(client.orders.order_states(sim.accounts))
            states.wait(lambda c: len(c.events) >= 10, timeout=WAIT)
        connections = [
            c for c in sim.connections(include_closed=True) if c.stream.value == "OrderStateStream"
        ]
    assert len(connections) >= 2
    assert all(c.requests for c in connections)  # the request was sent again on the new connection
    assert not states.errors


def test_operators_compose_and_take_unsubscribes_on_the_server(sim: Simulator) -> None:
    done = threading.Event()
    spreads: list[Decimal] = []
    with client_for(sim) as client:
        client.market_data.order_books("GAZP_TQBR", depth=1).pipe(
            ops.filter(lambda b: bool(b.bids and b.asks)),
            ops.map(lambda b: b.asks[0].price - b.bids[0].price),
            ops.take(3),
        ).subscribe(spreads.append, on_completed=done.set)
        assert done.wait(WAIT)
        mine = [c for c in sim.connections() if c.stream.value == "MarketDataStream"][-1]
        sim.wait_for(
            lambda s: not next(c for c in s.connections() if c.id == mine.id).subscriptions, timeout=WAIT
        )
    assert len(spreads) == 3
    assert all(s > 0 for s in spreads)  # the simulator's books are never crossed


def test_status_handlers_run_on_delivery_threads_too(sim: Simulator) -> None:
    seen: list[tuple[Any, str]] = []
    confirmed = threading.Event()

    def on_status(status: Any) -> None:
        seen.append((status, threading.current_thread().name))
        if isinstance(status, SubscriptionStatus) and status.confirmed:
            confirmed.set()

    with client_for(sim) as client:
        done = threading.Event()
        client.statuses.subscribe(on_status, on_completed=done.set)
        watch(client.market_data.last_prices("SBER_TQBR"))
        assert confirmed.wait(WAIT)
    assert done.wait(WAIT)  # closing the client completes the feed
    assert {type(s) for s, _ in seen} >= {ConnectionStatus, SubscriptionStatus}
    assert all(name.startswith("rxinvest-delivery") for _, name in seen)
