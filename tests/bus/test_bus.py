"""The bus in one process: a gateway and consumers on a real nats-server, against the simulator.

The oracle is a direct client of the same simulator (or the simulator's broker): the bus must
give what a direct client gets. Process-level behaviour (killed consumers, failover, clusters) is in
test_processes.py and test_failover.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("nats")

import rxinvest
from rxinvest import bus
from rxinvest import model as m
from rxinvest.bus import answers
from rxinvest.bus import consumer as consumer_module
from rxinvest.bus.natsd import NatsServer
from rxinvest.derived import Gap, Subscribed
from rxinvest.errors import BusError, SubscriptionRejectedError
from rxinvest.model.kinds import BOOK_DEPTHS, Kind
from rxinvest.protocol import MarketDataSession, Send, Topic
from rxinvest.sim import serve
from rxinvest.streams import ConnectionState, ConnectionStatus
from rxinvest.wire import Stream, decode_request

_DEADLINE = 20.0  # seconds any wait of these tests may take at most


def _wait(condition: Callable[[], bool], timeout: float = _DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    with serve(seed=7, min_ping_delay=0.05) as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Any, nats_server: NatsServer) -> Iterator[bus.Gateway]:
    client = rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url)
    with bus.Gateway(client, nats_server.url, lease=2.0, takeover_after=1.5) as gw:
        assert gw.wait_active(10)
        yield gw


class _Collect:
    """Items of one subscription, thread-safe."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def on_next(self, item: Any) -> None:
        with self._lock:
            self.items.append(item)

    def on_error(self, error: BaseException) -> None:
        self.errors.append(error)

    def events(self) -> list[Any]:
        with self._lock:
            return [i for i in self.items if not isinstance(i, Subscribed | Gap)]


def _order_states(client: Any, accounts: Any) -> _Collect:
    """The client's order states of ``accounts``, with markers, collected."""
    collect = _Collect()
    client.orders.order_states(accounts).with_markers().subscribe(collect.on_next, collect.on_error)
    return collect


def _state_keys(collect: _Collect, orders: set[str] | None = None) -> list[tuple[Any, ...]]:
    """What tells order states apart: order, status and executed lots (of ``orders`` only when
    given: the simulator's own traders place orders on every account too)."""
    return [
        (s.order_id, s.execution_report_status, s.lots_executed)
        for s in collect.events()
        if orders is None or s.order_id in orders
    ]


def _publish_gap_mark(nats_server: NatsServer, subject: str) -> None:
    """Publish a gap mark on ``subject`` as a gateway would (it is stored like any message)."""
    import asyncio

    import nats

    async def mark() -> None:
        nc = await nats.connect(nats_server.url)
        now = datetime.now(UTC).isoformat()
        headers = {"Rx-Mark": "gap", "Rx-Since": now, "Rx-Until": now}
        await nc.publish(subject, b"", headers=headers)
        await nc.drain()

    asyncio.run(mark())


# --- pure parts ------------------------------------------------------------------------------------------

_instrument_ids = st.sampled_from(["SBER_TQBR", "GAZP_TQBR", "e6123145-9665-43e0-8413-cd61b8aa9b13", "BBG1"])


@st.composite
def _topics(draw: st.DrawFn) -> list[Topic]:
    """Topics of one kind and one request-level parameter set, as one request carries them."""
    kind = draw(st.sampled_from(list(Kind)))
    ids = draw(st.lists(_instrument_ids, min_size=1, max_size=4, unique=True))
    if kind is Kind.ORDER_BOOKS:
        depth = draw(st.sampled_from(BOOK_DEPTHS))
        book_type = draw(st.sampled_from(list(m.OrderBookType)))
        return [Topic(kind, i, depth=depth, order_book_type=book_type) for i in ids]
    if kind is Kind.CANDLES:
        interval = draw(st.sampled_from(list(m.SubscriptionInterval)[1:]))
        waiting = draw(st.booleans())
        return [Topic(kind, i, interval=interval, waiting_close=waiting) for i in ids]
    if kind is Kind.TRADES:
        source = draw(st.sampled_from(list(m.TradeSourceType)))
        interest = draw(st.booleans())
        return [Topic(kind, i, trade_source=source, with_open_interest=interest) for i in ids]
    return [Topic(kind, i) for i in ids]


@settings(max_examples=200, deadline=None)
@given(_topics(), st.sampled_from(["json", "json-proto"]))
def test_the_gateway_reads_back_the_topics_the_client_session_sent(topics: list[Topic], dialect: str) -> None:
    """The oracle is the client's own session: what it writes, the gateway must read as the same topics."""
    session = MarketDataSession(dialect=dialect)
    session.connected(datetime.now(UTC))
    outcomes = session.subscribe(topics, datetime.now(UTC))
    frames = [f for o in outcomes if isinstance(o, Send) for f in o.frames]
    read: list[Topic] = []
    for frame in frames:
        request = decode_request(frame, stream=Stream.MARKET_DATA.value)
        kind = type(request)
        read += answers.topics_of(next(k for k in Kind if k.spec.request is kind), request)
    assert read == topics


def test_subjects_refuse_tokens_nats_cannot_carry() -> None:
    subjects = bus.Subjects("desk")
    assert subjects.market(Kind.ORDER_BOOKS, "u-1", 20) == "desk.md.order_books.20.u-1"
    assert subjects.market(Kind.TRADES, "u-1") == "desk.md.trades.u-1"
    assert subjects.account(Stream.ORDER_STATE, "2000") == "desk.acct.OrderStateStream.2000"
    for bad in ("a.b", "a b", "*", ">", ""):
        with pytest.raises(BusError):
            subjects.account(Stream.ORDER_STATE, bad)
    with pytest.raises(BusError):
        bus.Subjects("desk.*")


# --- against the simulator -----------------------------------------------------------------------------


def test_consumers_get_what_a_direct_client_gets(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """Trades of every instrument through the bus, to two consumers, equal a direct client's over the
    window all three were live, instrument by instrument; the gateway holds one upstream subscription
    per topic."""
    ids = [i.uid for i in sim.instruments]
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    consumers = [bus.connect(nats_server.url) for _ in range(2)]
    try:
        seen = [_Collect() for _ in range(3)]
        for client, collect in zip([direct, *consumers], seen, strict=True):
            client.market_data.trades(ids).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: all(len(c.events()) >= 30 for c in seen)), [len(c.events()) for c in seen]
        time.sleep(0.5)
        assert gateway.demand() == {str(Topic(Kind.TRADES, i)): 2 for i in ids}
        lists = [
            [(t.instrument_uid, t.time, t.price, t.quantity, t.direction) for t in c.events()] for c in seen
        ]
        # Each started at its own moment: compare from the latest first event to the earliest last one.
        start = max(items[0][1] for items in lists)
        end = min(items[-1][1] for items in lists)
        # Each instrument is its own subject: the order holds per instrument, not across them.
        windows = [sorted((t for t in items if start < t[1] < end), key=lambda t: t[0]) for items in lists]
        assert len(windows[0]) >= 10
        assert windows[1] == windows[0]
        assert windows[2] == windows[0]
        assert not any(c.errors for c in seen)
    finally:
        for client in [direct, *consumers]:
            client.close()
    assert _wait(lambda: gateway.demand() == {})


def test_books_show_the_current_book_at_once_like_the_api(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """A second consumer of a book the gateway already holds gets a snapshot first, without waiting
    for the book to change: its first event is the stored last book."""
    uid = sim.instruments[0].uid
    first, second = bus.connect(nats_server.url), bus.connect(nats_server.url)
    try:
        a, b = _Collect(), _Collect()
        first.market_data.order_books(uid, 10).subscribe(a.on_next, a.on_error)
        assert _wait(lambda: len(a.events()) >= 3)
        second.market_data.order_books(uid, 10).subscribe(b.on_next, b.on_error)
        assert _wait(lambda: len(b.events()) >= 1)
        book = b.events()[0]
        assert isinstance(book, m.OrderBook) and book.instrument_uid == uid and book.depth == 10
    finally:
        first.close()
        second.close()


def test_a_refused_instrument_is_refused_as_the_api_does(
    gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades("NO_SUCH_TQBR").subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: bool(collect.errors))
        error = collect.errors[0]
        assert isinstance(error, SubscriptionRejectedError)
        assert error.status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND


def test_order_states_reach_consumers_exactly_once(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """Order states through the bus equal the direct client's, in order, none twice."""
    account = sim.accounts[1]
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    consumer = bus.connect(nats_server.url, name="once")
    try:
        via_direct = _order_states(direct, account)
        via_bus = _order_states(consumer, account)
        assert _wait(lambda: any(isinstance(i, Subscribed) for i in via_bus.items))
        time.sleep(1.0)  # both streams granted
        uid = sim.instruments[0].uid
        buy = m.OrderDirection.ORDER_DIRECTION_BUY
        placed = {sim.place_order(account, uid, buy, 1).order_id for _ in range(5)}
        # Equal to the direct client's, in order: a copy or a skip would never be.
        assert _wait(lambda: _state_keys(via_bus, placed) == _state_keys(via_direct, placed)), via_bus.items
        key = _state_keys(via_direct, placed)
        assert len(key) >= 5 and len(set(key)) == len(key)
    finally:
        direct.close()
        consumer.close()


def test_a_gap_at_the_gateway_is_a_gap_for_the_consumer(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """A gap mark on a subject the consumer reads shows as a Gap marker, and the stream goes on."""

    uid = sim.instruments[0].uid
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades(uid).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: len(collect.events()) >= 2)

        _publish_gap_mark(nats_server, gateway.subjects.market(Kind.TRADES, uid))
        assert _wait(lambda: any(isinstance(i, Gap) for i in collect.items))
        after = len(collect.events())
        assert _wait(lambda: len(collect.events()) >= after + 2)  # live again
        assert not collect.errors


def test_no_gateway_is_a_clear_error_after_the_open_timeout(nats_server: NatsServer) -> None:
    """A consumer may start before its gateway: it waits ``open_timeout``, then says what is missing."""
    started = time.monotonic()
    with pytest.raises(BusError, match="no gateway answers"):
        bus.connect(nats_server.url, open_timeout=1.5)
    assert 1.4 <= time.monotonic() - started < 8


def test_a_malformed_demand_harms_nobody(sim: Any, gateway: bus.Gateway, nats_server: NatsServer) -> None:
    import asyncio

    import nats

    async def garbage() -> list[dict[str, Any]]:
        nc = await nats.connect(nats_server.url)
        replies = []
        for body in (
            b"not json",
            b"{}",
            json.dumps({"op": "request", "conn": "x", "stream": "Nope", "frame": ""}).encode(),
        ):
            reply = await nc.request(gateway.subjects.demand, body, timeout=5)
            replies.append(json.loads(reply.data))
        await nc.drain()
        return replies

    async def announce(*bodies: bytes) -> None:
        nc = await nats.connect(nats_server.url)
        for body in bodies:
            await nc.publish(gateway.subjects.active, body)
        await nc.drain()

    replies = asyncio.run(garbage())
    assert all("error" in reply for reply in replies)
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades(sim.instruments[0].uid).with_markers().subscribe(
            collect.on_next, collect.on_error
        )
        assert _wait(lambda: len(collect.events()) >= 1)
        # Announcements that are not one, or not of a gateway, change nothing.
        asyncio.run(
            announce(b"not json", b"[]", b"{}", json.dumps({"gateway": "x", "state": "stopped"}).encode())
        )
        after = len(collect.events())
        assert _wait(lambda: len(collect.events()) >= after + 3)
        assert not any(isinstance(i, Gap) for i in collect.items)
        assert not collect.errors


def test_a_late_joiner_of_positions_gets_its_snapshot_first(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """The API shows a new PositionsStream the account's positions first; so does the bus to a
    consumer that joins a stream the gateway already holds (the first snapshot went out long ago)."""
    account = sim.accounts[0]
    first, late = bus.connect(nats_server.url), bus.connect(nats_server.url)
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    try:
        a, b, oracle = _Collect(), _Collect(), _Collect()
        first.operations.positions(account).subscribe(a.on_next, a.on_error)
        assert _wait(lambda: len(a.events()) >= 1)
        assert isinstance(a.events()[0], m.PositionsResponse)
        late.operations.positions(account).subscribe(b.on_next, b.on_error)
        direct.operations.positions(account).subscribe(oracle.on_next, oracle.on_error)
        assert _wait(lambda: len(b.events()) >= 1 and len(oracle.events()) >= 1)
        snapshot, truth = b.events()[0], oracle.events()[0]
        assert isinstance(snapshot, m.PositionsResponse) and snapshot.account_id == account
        assert {(s.instrument_uid, s.balance) for s in snapshot.securities} == {
            (s.instrument_uid, s.balance) for s in truth.securities
        }
        assert {(x.currency, x.amount) for x in snapshot.money} == {
            (x.currency, x.amount) for x in truth.money
        }
    finally:
        for client in (first, late, direct):
            client.close()


def test_releasing_one_source_keeps_another_sources_instrument(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """Two sources share an instrument; disposing the one that asked for three instruments in one
    request leaves the other's instrument flowing (each answer names each topic's own subject)."""
    x, y, z = (i.uid for i in sim.instruments[:3])
    with bus.connect(nats_server.url) as consumer:
        wide, narrow = _Collect(), _Collect()
        both = consumer.market_data.trades([x, y, z]).subscribe(wide.on_next, wide.on_error)
        consumer.market_data.trades(y).subscribe(narrow.on_next, narrow.on_error)
        assert _wait(lambda: {t.instrument_uid for t in wide.events()} == {x, y, z})
        both.dispose()
        assert _wait(lambda: gateway.demand() == {str(Topic(Kind.TRADES, y)): 1})
        before = len(narrow.events())
        assert _wait(lambda: len(narrow.events()) >= before + 3)
        assert {t.instrument_uid for t in narrow.events()} == {y}


def test_a_topic_the_gateway_client_already_holds_is_served(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """The gateway's client may hold a topic already (its owner's own pipeline, or one released and
    wanted again before it let go): no new confirmation comes, and the consumer is served all the same."""
    uid = sim.instruments[4].uid
    own = _Collect()
    mine = gateway.client.market_data.trades(uid).subscribe(own.on_next, own.on_error)
    try:
        assert _wait(lambda: len(own.events()) >= 1)
        with bus.connect(nats_server.url) as consumer:
            collect = _Collect()
            consumer.market_data.trades(uid).subscribe(collect.on_next, collect.on_error)
            assert _wait(lambda: len(collect.events()) >= 2, timeout=10)
            assert not collect.errors
    finally:
        mine.dispose()


def test_market_events_nats_would_not_take_are_a_gap_not_the_end(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """Publishing fails for a while (NATS away, its buffer full): the publisher goes on, what it
    could not publish is counted, and the consumer sees a Gap where the events are missing."""
    uid = sim.instruments[0].uid
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades(uid).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: len(collect.events()) >= 2)
        nc = gateway._nc
        publish, failures = nc.publish, [5]

        async def failing(subject: str, payload: bytes = b"", **options: Any) -> None:
            if failures[0] > 0 and subject == gateway.subjects.market(Kind.TRADES, uid):
                failures[0] -= 1
                raise OSError("outbound buffer full")
            await publish(subject, payload, **options)

        nc.publish = failing
        try:
            assert _wait(lambda: failures[0] == 0)
            assert _wait(lambda: any(isinstance(i, Gap) for i in collect.items))
            after = len(collect.events())
            assert _wait(lambda: len(collect.events()) >= after + 2)  # live again
        finally:
            nc.publish = publish
        assert gateway.dropped >= 5
        assert not collect.errors


@pytest.mark.parametrize("what", ["slow consumer", "reconnect"])
def test_messages_nats_dropped_on_the_consumers_side_are_a_gap(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer, what: str
) -> None:
    """NATS drops messages of a subscription that fell behind (and loses what was in flight when
    it reconnects) with nothing but a callback: the consumer shows a Gap, then goes on."""
    import asyncio

    import nats.errors

    uid = sim.instruments[0].uid
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades(uid).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: len(collect.events()) >= 2)
        link = consumer._transport_factory  # the consumer's NATS side
        if what == "slow consumer":
            (transport,) = [t for t in link.transports if t.subjects()]
            (subject,) = transport.subjects()
            sub = transport._subs[subject]
            error = nats.errors.SlowConsumerError(subject, "", sub._id, sub)
            called = link._nats_error(error)
        else:
            called = link._reconnected()
        asyncio.run_coroutine_threadsafe(called, link.loop).result(5)
        assert _wait(lambda: any(isinstance(i, Gap) for i in collect.items))
        after = len(collect.events())
        assert _wait(lambda: len(collect.events()) >= after + 2)


def _reconnecting(statuses: _Collect) -> bool:
    return any(
        isinstance(s, ConnectionStatus) and s.state is ConnectionState.RECONNECTING
        for s in list(statuses.items)
    )


@pytest.mark.parametrize("how", ["closed", "gone silent"])
def test_a_gateway_that_stops_serving_is_a_loss_at_once_and_its_successor_marks_the_gap(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer, how: str
) -> None:
    """No standby: a gateway that closes says so, and one that just goes silent (its NATS connection
    gone, as when it is killed) fails the next lease renewal. Either way the consumer's statuses show
    the connection lost within seconds, not whenever a successor appears; the successor's first
    answer marks the Gap, and events flow again."""
    uid = sim.instruments[1].uid
    if how == "closed":
        # A lease of 30 s, which consumers take from the gateway's answers: renewals every 10 s,
        # each waiting 10 s. The loss must not wait for them at all.
        gateway.close()
        client = rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url)
        gateway = bus.Gateway(client, nats_server.url, lease=30.0, takeover_after=1.5)
        gateway.start()
        assert gateway.wait_active(10)
    with bus.connect(nats_server.url) as consumer:
        assert consumer._transport_factory.lease == gateway.lease  # type: ignore[union-attr]
        statuses, collect = _Collect(), _Collect()
        consumer.statuses.subscribe(statuses.on_next)
        consumer.market_data.trades(uid).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: len(collect.events()) >= 2)
        started = time.monotonic()
        if how == "closed":
            gateway.close()
        else:
            gateway._runner.run(gateway._nc.close(), 10)  # no word, no lease released
        assert _wait(lambda: _reconnecting(statuses), 8), statuses.items
        assert time.monotonic() - started < (3.0 if how == "closed" else 8.0)
        assert not any(isinstance(i, Gap) for i in collect.items)  # marked once it is known how long
        client = rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url)
        with bus.Gateway(client, nats_server.url, lease=2.0, takeover_after=1.5) as successor:
            assert successor.wait_active(10)
            assert _wait(lambda: any(isinstance(i, Gap) for i in collect.items))
            after = len(collect.events())
            assert _wait(lambda: len(collect.events()) >= after + 2)  # live again
        assert not collect.errors


def test_a_slow_request_delays_only_its_own_connection(
    gateway: bus.Gateway, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request may wait for the API (a subscription's answer): the gateway answers each demand
    message in a task of its own, so another connection's lease is answered meanwhile, while the
    same connection's later messages keep their order behind it."""
    import asyncio

    import nats

    answer = gateway._request

    async def slow(conn: str, *args: Any) -> dict[str, Any]:
        if conn == "slow":
            await asyncio.sleep(2.0)
        return await answer(conn, *args)

    monkeypatch.setattr(gateway, "_request", slow)
    frame = json.dumps({"subscribeTradesRequest": {"subscriptionAction": "SUBSCRIPTION_ACTION_SUBSCRIBE"}})

    async def ask() -> tuple[float, list[str]]:
        nc = await nats.connect(nats_server.url)
        order: list[str] = []

        async def send(conn: str, op: str, timeout: float) -> None:
            body = {"op": op, "conn": conn, "stream": "MarketDataStream", "frame": frame}
            await nc.request(gateway.subjects.demand, json.dumps(body).encode(), timeout=timeout)
            order.append(f"{conn} {op}")

        slow_request = asyncio.create_task(send("slow", "request", 10))
        await asyncio.sleep(0.2)  # the slow request is being answered
        slow_lease = asyncio.create_task(send("slow", "lease", 10))
        started = time.monotonic()
        await send("other", "lease", 5)
        other = time.monotonic() - started
        await asyncio.gather(slow_request, slow_lease)
        await nc.drain()
        return other, order

    other, order = asyncio.run(ask())
    assert other < 1.0, f"another connection's lease waited {other:.2f} s behind a slow request"
    assert order == ["other lease", "slow request", "slow lease"]


def test_account_events_go_out_as_the_frames_they_came_in(
    gateway: bus.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account event is published as the frame that brought it, byte for byte, fields this
    codec does not know included (a newer API's); one learnt from the unary API (a gap's recovery)
    has no frame and is encoded; frames whose events never come are not kept without bound."""
    from rxinvest.bus import gateway as gateway_module
    from rxinvest.wire import decode, encode

    published: list[tuple[str, bytes, bytes]] = []
    monkeypatch.setattr(
        gateway,
        "_publish_account",
        lambda subject, payload, identity, *_: published.append((subject, payload, identity)),
    )
    status = m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW

    def state(order: str) -> m.OrderState:
        return m.OrderState(order_id=order, account_id="acc-1", execution_report_status=status)

    wire = json.loads(encode(state("o-1"), dialect=gateway.dialect))
    (key,) = wire
    wire[key]["fieldOfTomorrow"] = {"units": "42"}
    frame = json.dumps(wire).encode()
    assert decode(frame, stream=Stream.ORDER_STATE.value) == state("o-1")  # unknown fields are skipped

    gateway._account_frame(Stream.ORDER_STATE, frame)
    gateway._account_item(Stream.ORDER_STATE, state("o-1"))
    gateway._account_item(Stream.ORDER_STATE, state("o-1"))  # again, as recovery would learn it
    assert [p for _, p, _ in published] == [frame, encode(state("o-1"), dialect=gateway.dialect).encode()]
    assert published[0][0] == gateway.subjects.account(Stream.ORDER_STATE, "acc-1")
    assert published[0][2] == published[1][2]  # one identity, one Nats-Msg-Id: JetStream drops the copy

    bound = gateway_module._ORIGINALS
    for n in range(bound + 10):
        gateway._account_frame(Stream.ORDER_STATE, encode(state(f"x-{n}"), dialect=gateway.dialect).encode())
    assert len(gateway._originals) == bound
    published.clear()
    gateway._account_item(Stream.ORDER_STATE, state("x-0"))  # its frame was the oldest: dropped
    gateway._account_item(Stream.ORDER_STATE, state(f"x-{bound + 9}"))
    assert len(gateway._originals) == bound - 1


def test_the_gateways_upstream_connections_are_published_for_monitoring(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """The lifecycle of the gateway's own connections to the API (connected, reconnecting ...)
    goes out on ``<prefix>.status``: an operator sees the upstream side of every consumer's gaps."""
    import asyncio

    import nats

    from rxinvest.sim import Faults

    seen: list[dict[str, Any]] = []

    async def watch(until: Callable[[], bool]) -> None:
        nc = await nats.connect(nats_server.url)

        async def on(msg: Any) -> None:
            seen.append(json.loads(msg.data))

        await nc.subscribe(gateway.subjects.status, cb=on)
        await nc.flush()
        ready.set()
        deadline = time.monotonic() + _DEADLINE
        while not until() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await nc.drain()

    def states() -> list[str]:
        return [s["state"] for s in list(seen) if s["stream"] == "MarketDataStream"]

    ready = threading.Event()
    watcher = threading.Thread(target=asyncio.run, args=(watch(lambda: "connected" in states()[1:]),))
    watcher.start()
    assert ready.wait(10)
    sim.fault_next(Faults(drop_after=30))  # the gateway's first market-data connection breaks
    with bus.connect(nats_server.url) as consumer:
        consumer.market_data.trades(sim.instruments[2].uid).subscribe(lambda _: None)
        watcher.join(_DEADLINE + 5)
    assert states()[:3] == ["connected", "reconnecting", "connected"], seen
    assert all(s["gateway"] == gateway.id for s in seen)
    reconnecting = next(s for s in seen if s["state"] == "reconnecting")
    assert reconnecting["error"] and sim.token not in json.dumps(seen)


# --- since: a replay that goes on live -------------------------------------------------------------------


def _trade_keys(collect: _Collect, uid: str | None = None) -> list[tuple[Any, ...]]:
    return [
        (t.time, t.price, t.quantity, t.direction)
        for t in collect.events()
        if uid is None or t.instrument_uid == uid
    ]


def test_a_stored_message_is_handed_over_once_however_often_it_comes() -> None:
    """JetStream sequences only grow per subject: a copy that comes again (from a subscription of
    before a loss whose unsubscribe is slow, or an ordered consumer that reset) is not handed over
    again, and what is handed keeps its order."""
    from types import SimpleNamespace

    from rxinvest.bus.consumer import _BusTransport

    frames: list[bytes] = []
    listener = SimpleNamespace(frame=lambda data, now: frames.append(data), flush=lambda: None)
    link = SimpleNamespace(loop=SimpleNamespace(call_soon=lambda *_: None))
    transport = _BusTransport(link, listener, Stream.MARKET_DATA)  # type: ignore[arg-type]
    transport._open = True
    transport._stored.add("md.trades.u")

    def message(sequence: int) -> Any:
        position = SimpleNamespace(sequence=SimpleNamespace(stream=sequence))
        return SimpleNamespace(subject="md.trades.u", headers=None, data=b"%d" % sequence, metadata=position)

    for sequence in (1, 2, 2, 1, 3, 3, 5):
        transport._hand_market(message(sequence))
    assert frames == [b"1", b"2", b"3", b"5"]
    assert transport._handed == {"md.trades.u": 5}


def test_market_data_since_a_time_starts_with_what_was_published_then_and_goes_on_live(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """A consumer with ``since`` gets the trades published from then (those a live consumer got,
    in its order) and then the live ones, with nothing twice and no gap between the two; the live
    consumer, reading core NATS, is the oracle of what was published. Every instrument is a subject
    of its own, read by a JetStream consumer of its own: those made first bring history while the
    next are made, before the subscription's answer, and none of it may be lost."""
    ids = [i.uid for i in sim.instruments]
    since = datetime.now(UTC)
    with bus.connect(nats_server.url) as live:
        a = _Collect()
        live.market_data.trades(ids).with_markers().subscribe(a.on_next, a.on_error)
        assert _wait(lambda: all(len(_trade_keys(a, uid)) >= 8 for uid in ids))
        with bus.connect(nats_server.url, since=since) as late:
            b = _Collect()
            late.market_data.trades(ids).with_markers().subscribe(b.on_next, b.on_error)
            published = len(a.events())  # before b subscribed: b can have them only from JetStream
            assert _wait(lambda: len(b.events()) >= published + 10)  # and then live ones
            time.sleep(0.3)  # the live consumer catches up
            items = list(b.items)
        assert isinstance(items[0], Subscribed)
        assert not [i for i in items if isinstance(i, Gap)]
        for uid in ids:
            a_keys, b_keys = _trade_keys(a, uid), _trade_keys(b, uid)
            # b may start a little earlier: the gateway publishes from the upstream answer, before
            # a subscribed core NATS. From a's first trade on, the two are the same list.
            assert a_keys[0] in b_keys, uid
            start = b_keys.index(a_keys[0])
            common = min(len(a_keys), len(b_keys) - start)
            assert common >= 8
            assert b_keys[start : start + common] == a_keys[:common], uid
        assert not a.errors and not b.errors


def test_market_data_since_a_time_reads_on_after_a_loss_without_missing_anything(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """A gap mark in the history of a ``since`` consumer is a Gap in its place; the subscription the
    client sends again reads on after the mark, so that around the Gap the trades are exactly the
    direct client's: none missing, none twice."""

    uid = sim.instruments[0].uid
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    try:
        oracle = _Collect()
        direct.market_data.trades(uid).subscribe(oracle.on_next, oracle.on_error)
        with bus.connect(nats_server.url, since=datetime.now(UTC)) as consumer:
            b = _Collect()
            consumer.market_data.trades(uid).with_markers().subscribe(b.on_next, b.on_error)
            assert _wait(lambda: len(b.events()) >= 5)

            _publish_gap_mark(nats_server, gateway.subjects.market(Kind.TRADES, uid))
            assert _wait(lambda: any(isinstance(i, Gap) for i in b.items))
            gap_at = next(n for n, i in enumerate(b.items) if isinstance(i, Gap))
            assert _wait(lambda: len(b.items) >= gap_at + 15)  # read on after the gap
            time.sleep(0.3)
            items = list(b.items)
        before = [i for i in items[:gap_at] if not isinstance(i, Subscribed | Gap)]
        after = [i for i in items[gap_at:] if not isinstance(i, Subscribed | Gap)]
        assert len([i for i in items if isinstance(i, Gap)]) == 1
        assert before and after
        keys = [(t.time, t.price, t.quantity, t.direction) for t in before + after]
        expected = _trade_keys(oracle)
        start = expected.index(keys[0])
        assert keys == expected[start : start + len(keys)]
        assert not b.errors and not oracle.errors
    finally:
        direct.close()


@pytest.mark.parametrize("remade", [False, True], ids=["as made", "made again before reading"])
def test_account_streams_since_a_time_start_with_what_was_published_then(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, remade: bool
) -> None:
    """A consumer new to an account stream, with ``since``, first gets the order states published
    from then (before it existed), then the new ones: the direct client's, in order, none twice.
    ``remade``: its pull consumer stops answering before it read anything (its node of a cluster
    gone) and is made again: from ``since`` still, not from the end of the stream."""
    from nats.js.client import JetStreamContext

    account = sim.accounts[1]
    uid = sim.instruments[0].uid
    since = datetime.now(UTC)
    failing: dict[str, float] = {}  # consumer name prefix -> until when its fetches fail
    fetch = JetStreamContext.PullSubscription.fetch

    async def failing_fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
        for prefix, until in failing.items():
            if self._consumer.startswith(prefix) and time.monotonic() < until:
                raise OSError("the node is gone")
        return await fetch(self, *args, **kwargs)

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", failing_fetch)
    monkeypatch.setattr(consumer_module, "_REBIND_AFTER", 1.0)  # remade sooner than for a cluster
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    live = bus.connect(nats_server.url)  # its demand makes the gateway publish the account's states
    try:
        via_direct = _order_states(direct, account)
        via_live = _order_states(live, account)
        assert _wait(lambda: any(isinstance(i, Subscribed) for i in via_live.items))
        time.sleep(1.0)  # both streams granted
        buy, sell = m.OrderDirection.ORDER_DIRECTION_BUY, m.OrderDirection.ORDER_DIRECTION_SELL
        placed = {sim.place_order(account, uid, buy, 1).order_id for _ in range(3)}
        assert _wait(lambda: 3 <= len(_state_keys(via_live, placed)) == len(_state_keys(via_direct, placed)))
        with bus.connect(nats_server.url, since=since) as late:
            if remade:
                failing[late._transport_factory.id] = time.monotonic() + 2.0  # type: ignore[union-attr]
            via_late = _order_states(late, account)
            placed |= {sim.place_order(account, uid, sell, 1).order_id for _ in range(2)}
            # What was published before it existed, then the new ones: the direct client's, in
            # order, none twice (a copy or a skip would never be equal).
            equal = lambda: _state_keys(via_late, placed) == _state_keys(via_direct, placed)  # noqa: E731
            assert _wait(equal), via_late.items
        assert len(_state_keys(via_direct, placed)) >= 5
        assert not [i for i in via_late.items if isinstance(i, Gap)]
    finally:
        direct.close()
        live.close()


def test_two_connections_of_one_consumer_for_the_same_accounts_each_get_every_event(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """``order_states([a, b])`` and ``order_states([b, a])`` are two connections of one client: each
    reads a pull consumer of its own (one shared would split the messages between them), and the
    ephemeral ones are gone from JetStream once the client closed."""
    import asyncio

    import nats

    a, b = sim.accounts[0], sim.accounts[1]
    direct = rxinvest.connect(sim.token, target=sim.base_url)
    consumer = bus.connect(nats_server.url)
    try:
        oracle = _order_states(direct, [a, b])
        first = _order_states(consumer, [a, b])
        second = _order_states(consumer, [b, a])
        assert _wait(lambda: all(any(isinstance(i, Subscribed) for i in c.items) for c in (first, second)))
        time.sleep(1.0)  # every stream granted
        uid = sim.instruments[0].uid
        buy = m.OrderDirection.ORDER_DIRECTION_BUY
        placed = {sim.place_order((a, b)[n % 2], uid, buy, 1).order_id for n in range(6)}
        assert _wait(lambda: len(_state_keys(oracle, placed)) >= 6)
        # Each gets them all, none twice: equal to the direct client's (a half would never be).
        assert _wait(lambda: _state_keys(first, placed) == _state_keys(oracle, placed)), first.items
        assert _wait(lambda: _state_keys(second, placed) == _state_keys(oracle, placed)), second.items
        prefix = consumer._transport_factory.id  # type: ignore[union-attr]
    finally:
        direct.close()
        consumer.close()

    async def names() -> list[str]:
        nc = await nats.connect(nats_server.url)
        try:
            infos = await nc.jetstream().consumers_info(gateway.stream)
            return [i.name for i in infos]
        finally:
            await nc.drain()

    assert [n for n in asyncio.run(names()) if n.startswith(prefix)] == []


def test_a_request_answered_slower_than_the_lease_costs_no_connection(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway answers a connection's messages in order, so while a subscription takes longer
    than a lease to confirm (the API slow, pacing), that connection's renewals wait behind it. The
    consumer must not take that for a dead gateway: its connections stay, the events come."""
    import asyncio

    answer = gateway._request

    async def slow(conn: str, stream: Stream, frame: str, resuming: bool) -> Any:
        if "Trades" in frame:
            await asyncio.sleep(3.0)  # lease 2 s
        return await answer(conn, stream, frame, resuming)

    monkeypatch.setattr(gateway, "_request", slow)
    with bus.connect(nats_server.url) as consumer:
        statuses, collect = _Collect(), _Collect()
        consumer.statuses.subscribe(statuses.on_next)
        consumer.market_data.trades(sim.instruments[0].uid).with_markers().subscribe(
            collect.on_next, collect.on_error
        )
        assert _wait(lambda: len(collect.events()) >= 5, 10.0)
        time.sleep(2.0)  # more renewals
        assert not _reconnecting(statuses), statuses.items
        assert not [i for i in collect.items if isinstance(i, Gap)]


def test_junk_answers_on_the_demand_subject_do_not_stop_the_renewals(
    sim: Any, gateway: bus.Gateway, nats_server: NatsServer
) -> None:
    """Anyone may answer on ``<prefix>.demand``: a second of answers that are no JSON object must
    not end the consumer's renewals, or the gateway would let its demand go, silently."""
    import asyncio

    import nats

    uid = sim.instruments[0].uid
    with bus.connect(nats_server.url) as consumer:
        collect = _Collect()
        consumer.market_data.trades(uid).with_markers().subscribe(collect.on_next, collect.on_error)
        assert _wait(lambda: len(collect.events()) >= 2)

        async def rogue() -> None:
            nc = await nats.connect(nats_server.url)

            async def junk(msg: Any) -> None:
                if msg.reply:
                    await nc.publish(msg.reply, b"<html>502</html>" if b'"lease"' in msg.data else b"[1]")

            await nc.subscribe(gateway.subjects.demand, cb=junk)
            await asyncio.sleep(1.5)
            await nc.close()

        asyncio.run(rogue())
        time.sleep(2 * gateway.lease)  # the gateway lets a connection go that is not renewed within one
        assert gateway.demand() == {str(Topic(Kind.TRADES, uid)): 1}
        seen = len(collect.events())
        assert _wait(lambda: len(collect.events()) >= seen + 3)


@pytest.mark.parametrize("first", ["the error", "the refusal"])
def test_a_refused_topic_leaves_no_count_behind_whichever_news_comes_first(
    gateway: bus.Gateway, first: str
) -> None:
    """A refusal reaches the gateway twice, as the client's answer and as the source's error, from
    two threads in either order. Either way no connection may still count the topic: the count
    would answer that connection's next subscription without asking, and release another one's."""
    import asyncio
    from collections import Counter

    from rxinvest.bus.gateway import _Held
    from rxinvest.streams import SubscriptionStatus

    topic = Topic(Kind.TRADES, "NO_SUCH_TQBR")
    not_found = m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    error = SubscriptionRejectedError("not found", status=not_found, target=topic.instrument_id)
    refused = SubscriptionStatus(topic, False, error, "")

    async def race() -> tuple[Counter[Any], SubscriptionStatus]:
        held = _Held()
        held.status = asyncio.get_running_loop().create_future()
        gateway._topics[topic] = held
        gateway._conns["conn-1"] = Counter({topic: 1})
        if first == "the refusal":
            gateway._status(refused)
        gateway._failed(topic, error)
        if first == "the error":
            gateway._status(refused)
        return gateway._conns["conn-1"], held.status.result()

    left, answered = gateway._runner.run(race(), 5)
    assert topic not in left
    assert topic not in gateway._topics
    assert not answered.confirmed


def test_a_gateway_back_after_the_duplicate_window_marks_a_gap_instead_of_publishing_again(
    nats_server: NatsServer,
) -> None:
    """A gateway that starts again later than the stream's duplicate window (2 s here, an hour by
    default) must not resume with ``since``: its recovery would publish the current state of every
    active order again, which JetStream no longer recognises. It opens the stream afresh and marks a
    gap from the last event published, so a resumed consumer has each state once, and the Gap."""
    from decimal import Decimal

    retention = bus.Retention(duplicate_window=2.0)

    def gateway(sim: Any) -> bus.Gateway:
        client = rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url)
        started = bus.Gateway(client, nats_server.url, lease=2.0, takeover_after=1.5, retention=retention)
        assert started.start().wait_active(10)
        return started

    with serve(seed=7, min_ping_delay=0.05, trader=False) as sim:
        account, uid = sim.accounts[1], sim.instruments[0].uid
        first = gateway(sim)
        try:
            with bus.connect(nats_server.url, name="desk") as consumer:
                got = _order_states(consumer, account)
                assert _wait(lambda: any(isinstance(i, Subscribed) for i in got.items))
                time.sleep(1.0)  # granted
                buy = m.OrderDirection.ORDER_DIRECTION_BUY
                sim.place_order(account, uid, buy, 1, price=Decimal("100.00"))
                assert _wait(lambda: len(got.events()) >= 1)  # it rests: an active order
                first.close()
                time.sleep(3.0)  # longer than the duplicate window
                first = gateway(sim)
                assert _wait(lambda: any(isinstance(i, Gap) for i in got.items))
                time.sleep(2.0)  # what a recovery would have published again
                states = _state_keys(got)
        finally:
            first.close()
    assert len(states) == len(set(states)) >= 1


def test_a_pull_consumer_made_again_gets_what_a_lost_fetch_held_and_nothing_twice(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to one fetch is lost (as when a node of a cluster goes away): its messages stay
    pending at the server below later ones that are acknowledged. When the consumer is made again
    (the stream went quiet while the server still owes it messages), it must start at the server's
    acknowledgement floor, not after the last message acknowledged, and hand over once only what
    it handed before. Oracle: a direct client's order states, per order in order."""
    from collections import defaultdict
    from decimal import Decimal

    from nats.js.client import JetStreamContext

    fetch = JetStreamContext.PullSubscription.fetch
    armed, lost = [False], [0]

    async def lossy(self: Any, *args: Any, **kwargs: Any) -> Any:
        messages = await fetch(self, *args, **kwargs)
        if armed[0] and messages:
            armed[0] = False
            lost[0] = len(messages)  # delivered by the server, never seen here
            return await fetch(self, *args, **kwargs)
        return messages

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", lossy)
    monkeypatch.setattr(consumer_module, "_REBIND_AFTER", 1.0)  # sooner than for a cluster
    monkeypatch.setattr(consumer_module, "_CHECK_IDLE_EVERY", 1.5)
    with serve(seed=7, min_ping_delay=0.05, trader=False) as sim:
        client = rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url)
        with bus.Gateway(client, nats_server.url, lease=2.0) as own:
            assert own.wait_active(10)
            account, uid = sim.accounts[1], sim.instruments[0].uid
            direct = rxinvest.connect(sim.token, target=sim.base_url)
            try:
                oracle = _order_states(direct, account)
                with bus.connect(nats_server.url) as consumer:
                    got = _order_states(consumer, account)
                    assert _wait(lambda: any(isinstance(i, Subscribed) for i in got.items))
                    time.sleep(1.0)  # granted
                    armed[0] = True
                    buy = m.OrderDirection.ORDER_DIRECTION_BUY
                    sim.place_order(account, uid, buy, 1, price=Decimal("100.00"))
                    assert _wait(lambda: lost[0] > 0)
                    sim.place_order(account, uid, buy, 1, price=Decimal("101.00"))
                    assert _wait(lambda: len(oracle.events()) >= 2)
                    assert _wait(lambda: len(got.events()) >= len(oracle.events()), 30.0), got.items
                    time.sleep(1.0)
                    mine = _state_keys(got)
            finally:
                direct.close()
    theirs = _state_keys(oracle)
    assert len(mine) == len(set(mine))
    assert sorted(mine) == sorted(theirs)
    per_order: dict[str, list[Any]] = defaultdict(list)
    for state in mine:
        per_order[state[0]].append(state)
    assert all(states == [t for t in theirs if t[0] == order] for order, states in per_order.items())


def test_a_connection_released_while_its_account_stream_opens_pins_nothing(
    sim: Any, gateway: bus.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening an account stream waits for JetStream (where to resume from). A connection released
    meanwhile (its lease ran out, the gateway stood by) must take its hold with it: a stream held
    by nobody would stay open upstream for good."""
    import asyncio
    import contextlib

    from rxinvest.wire import encode

    last_published = gateway._last_published

    async def slow(subjects: Any) -> Any:
        await asyncio.sleep(0.5)  # JetStream slow to answer
        return await last_published(subjects)

    monkeypatch.setattr(gateway, "_last_published", slow)
    frame = encode(m.OrderStateStreamRequest(accounts=(sim.accounts[1],)), dialect=gateway.dialect)

    async def scenario() -> dict[str, int]:
        request = asyncio.ensure_future(gateway._request("conn-x", Stream.ORDER_STATE, frame, False))
        await asyncio.sleep(0.1)
        gateway._release_conn("conn-x")
        with contextlib.suppress(Exception):
            await request
        return gateway._demand_snapshot()

    assert gateway._runner.run(scenario(), 30) == {}


def test_a_portfolio_equal_to_an_earlier_one_is_news_not_a_copy(
    gateway: bus.Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A portfolio has no time: A, B, then A again are three events. Ids derived from content alone
    would make JetStream drop the second A within its duplicate window, leaving consumers on B. An
    order state learnt twice keeps one id (that de-duplication is wanted)."""
    from decimal import Decimal

    ids: list[tuple[str, bytes]] = []  # a message's id is a digest of its subject and identity

    def capture(subject: str, payload: bytes, identity: bytes, *_: Any) -> None:
        ids.append((subject, identity))

    monkeypatch.setattr(gateway, "_publish_account", capture)

    def portfolio(rubles: int) -> m.PortfolioResponse:
        cash = m.Money(currency="rub", amount=Decimal(rubles))
        return m.PortfolioResponse(account_id="acc-1", total_amount_currencies=cash)

    for rubles in (100, 250, 100):
        gateway._account_item(Stream.PORTFOLIO, portfolio(rubles))
    assert len(set(ids)) == 3
    ids.clear()
    new = m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_NEW
    state = m.OrderState(order_id="o-1", account_id="acc-1", execution_report_status=new)
    for _ in range(2):
        gateway._account_item(Stream.ORDER_STATE, state)
    assert len(set(ids)) == 1


def test_a_retention_shorter_than_the_duplicate_window_still_starts_a_gateway(
    sim: Any, nats_server: NatsServer
) -> None:
    """JetStream refuses a duplicate window longer than the stream's max age: a gateway keeping
    events for a minute gets a window of a minute (and resumes only from within it)."""
    import asyncio

    import nats

    client = rxinvest.connect(sim.token, target=sim.base_url)
    with bus.Gateway(client, nats_server.url, retention=bus.Retention(max_age=60.0)) as short:
        assert short.wait_active(10)
        assert short.resume_within == 60.0

        async def window() -> float:
            nc = await nats.connect(nats_server.url)
            try:
                info = await nc.jetstream().stream_info(short.stream)
                return float(info.config.duplicate_window)
            finally:
                await nc.drain()

        assert asyncio.run(window()) == 60.0
