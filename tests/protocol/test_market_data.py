"""The MarketDataStream session, sans-I/O: reference counting, batching, routing, answers, liveness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError, EncodeError, SubscriptionRejectedError
from rxinvest.protocol import (
    Confirmed,
    Delivered,
    Malformed,
    MarketDataSession,
    Rejected,
    Send,
    StreamFailed,
    Topic,
)
from rxinvest.protocol.market_data import MAX_INSTRUMENTS_PER_REQUEST
from rxinvest.protocol.topic import WANTED
from rxinvest.sim.instruments import CATALOGUE, InstrumentIndex
from rxinvest.sim.subscriptions import SubscriptionBook

NOW = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
SBER, GAZP = "e6123145-9665-43e0-8413-cd61b8aa9b13", "962e2a95-02a9-4171-abd7-aa198dbe643a"


class FakeServer:
    """The simulator's subscription rules, answering the session's frames in order."""

    def __init__(self) -> None:
        self.book = SubscriptionBook(InstrumentIndex(CATALOGUE), stream_id="s", max_requests_per_minute=10**9)
        self.requests: list[object] = []

    def answer(self, outcomes: list[object]) -> list[str]:
        """The server's answers to the frames among a session call's outcomes."""
        out = []
        for frame in frames_of(outcomes):
            request = wire.decode_request(frame, stream="MarketDataStream")
            self.requests.append(request)
            if isinstance(request, m.PingDelaySettings):
                continue
            response, _ = self.book.handle(request, now=0.0, tracking_id="t")
            out.append(wire.encode(response))
        return out

    def active(self) -> set[tuple[str, tuple[object, ...]]]:
        return {(s.kind, s.key) for s in self.book}


def frames_of(outcomes: list[object]) -> list[str]:
    """The frames a session call asks to send (its Send outcomes, in order)."""
    return [frame for o in outcomes if isinstance(o, Send) for frame in o.frames]


def feed(session: MarketDataSession, frames: list[str]) -> list[object]:
    return [output for frame in frames for output in session.receive(frame, NOW)]


books = st.sampled_from(
    [Topic("order_books", i, depth=d) for i in ("SBER_TQBR", SBER, "GAZP_TQBR") for d in (1, 20)]
)
others = st.sampled_from(
    [Topic("last_prices", "SBER_TQBR"), Topic("trades", "GAZP_TQBR"), Topic("info", SBER),
     Topic("candles", "SBER_TQBR", interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE)]
)  # fmt: skip
topics = books | others


def server_key(topic: Topic) -> tuple[str, tuple[object, ...]]:
    uid = InstrumentIndex(CATALOGUE)[topic.instrument_id].uid
    if topic.kind == "candles":
        return ("candles", (uid, topic.interval))
    if topic.kind == "order_books":
        return ("order_books", (uid, topic.depth, m.OrderBookType.ORDERBOOK_TYPE_ALL))
    return (topic.kind, (uid,))


@settings(max_examples=300)
@given(ops=st.lists(st.tuples(st.booleans(), topics, st.booleans()), max_size=40))
def test_the_server_holds_exactly_the_wanted_subscriptions(ops: list[tuple[bool, Topic, bool]]) -> None:
    """After any interleaving of subscribes, disposes and answers (answers may lag behind requests;
    aliases of one instrument included), the server holds the subscriptions of exactly the topics
    someone still wants."""
    session, server = MarketDataSession(), FakeServer()
    server.answer(session.connected(NOW))
    held: dict[Topic, int] = {}
    in_flight: list[str] = []  # answers the server sent that the session has not read yet

    def read_answers() -> None:
        answers = list(in_flight)
        in_flight.clear()
        for output in feed(session, answers):
            if isinstance(output, Send):  # releases an answer allowed: they reach the server too
                in_flight.extend(server.answer([output]))

    for subscribe, topic, answer_now in ops:
        if subscribe:
            held[topic] = held.get(topic, 0) + 1
            in_flight.extend(server.answer(session.subscribe([topic])))
        elif held.get(topic):
            held[topic] -= 1
            in_flight.extend(server.answer(session.unsubscribe([topic])))
        if answer_now:
            read_answers()
        for known in held:  # rule 2 of protocol.topic: subscribers exactly in the wanted states
            assert (session.refs(known) > 0) == (session.state(known) in WANTED)
            assert session.refs(known) == held[known]
    for _ in range(10):  # each round can release what the previous one confirmed
        read_answers()
    assert not in_flight
    assert {t for t, n in held.items() if n} == set(session.topics)
    assert server.active() == {server_key(t) for t, n in held.items() if n}
    for topic, count in held.items():
        assert session.refs(topic) == count


def test_topics_subscribed_together_travel_in_one_request_per_kind() -> None:
    session = MarketDataSession()
    session.connected(NOW)
    frames = frames_of(
        session.subscribe(
            [Topic("order_books", i, depth=10) for i in ("A", "B", "C")] + [Topic("last_prices", "A")]
        )
    )
    bodies = [json.loads(f) for f in frames]
    assert [next(iter(b)) for b in bodies] == ["subscribeOrderBookRequest", "subscribeLastPriceRequest"]
    assert [i["instrumentId"] for i in bodies[0]["subscribeOrderBookRequest"]["instruments"]] == [
        "A",
        "B",
        "C",
    ]
    assert session.subscribe([Topic("order_books", "A", depth=10)]) == []  # shared: nothing to send


def test_answers_confirm_or_reject_each_instrument_and_route_events() -> None:
    session, server = MarketDataSession(), FakeServer()
    session.connected(NOW)
    wanted = [Topic("order_books", "SBER_TQBR", depth=10), Topic("order_books", "NOPE", depth=10)]
    outputs = feed(session, server.answer(session.subscribe(wanted)))
    assert isinstance(outputs[0], Confirmed)
    assert outputs[0].instrument_uid == SBER
    assert isinstance(outputs[1], Rejected)
    assert outputs[1].status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    assert session.topics == (wanted[0],)

    book = wire.encode(m.OrderBook(instrument_uid=SBER, depth=10))
    assert session.receive(book, NOW) == [Delivered((wanted[0],), m.OrderBook(instrument_uid=SBER, depth=10))]
    other_depth = wire.encode(m.OrderBook(instrument_uid=SBER, depth=20))
    assert session.receive(other_depth, NOW) == []


def test_aliases_of_one_instrument_share_the_server_subscription() -> None:
    session, server = MarketDataSession(), FakeServer()
    session.connected(NOW)
    by_ticker, by_uid = Topic("last_prices", "SBER_TQBR"), Topic("last_prices", SBER)
    feed(session, server.answer(session.subscribe([by_ticker])))
    feed(session, server.answer(session.subscribe([by_uid])))
    (delivered,) = session.receive(wire.encode(m.LastPrice(instrument_uid=SBER)), NOW)
    assert set(delivered.topics) == {by_ticker, by_uid}
    assert session.unsubscribe([by_ticker]) == []  # the uid alias still wants it
    assert len(frames_of(session.unsubscribe([by_uid]))) == 1


def test_a_new_connection_subscribes_everything_again_after_ping_settings() -> None:
    session = MarketDataSession(ping_delay=30)
    session.connected(NOW)
    session.subscribe([Topic("trades", "SBER_TQBR"), Topic("info", "GAZP_TQBR")])
    frames = [json.loads(f) for f in frames_of(session.connected(NOW + timedelta(seconds=5)))]
    assert frames[0] == {"pingSettings": {"pingDelayMs": 30000}}
    assert {next(iter(f)) for f in frames[1:]} == {"subscribeTradesRequest", "subscribeInfoRequest"}


def test_the_deadline_follows_what_arrives() -> None:
    session = MarketDataSession(ping_delay=10, watchdog_factor=3)
    assert session.deadline() is None
    session.connected(NOW)
    assert session.deadline() == NOW + timedelta(seconds=30)
    later = NOW + timedelta(seconds=7)
    session.receive(wire.encode(m.Ping(time=later)), later)
    assert session.deadline() == later + timedelta(seconds=30)


def test_bad_frames_and_stream_errors_are_reported_not_raised() -> None:
    session = MarketDataSession()
    session.connected(NOW)
    (bad,) = session.receive(b"{not json", NOW)
    assert isinstance(bad, Malformed)
    (failed,) = session.receive(b'{"code": 8, "message": "80002"}', NOW)
    assert failed == StreamFailed(m.RpcStatus(code=8, message="80002"))


def test_a_rejection_carries_the_error_its_subscribers_get() -> None:
    session, server = MarketDataSession(), FakeServer()
    session.connected(NOW)
    topic = Topic("trades", "NOPE")
    (rejected,) = feed(session, server.answer(session.subscribe([topic])))
    assert isinstance(rejected, Rejected)
    assert isinstance(rejected.error, SubscriptionRejectedError)
    assert rejected.error.status is m.SubscriptionStatus.SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND
    assert rejected.error.code == "SUBSCRIPTION_STATUS_INSTRUMENT_NOT_FOUND"
    assert rejected.error.target == "NOPE"
    assert rejected.error.tracking_id == "t"
    assert session.topics == ()


def test_candles_cannot_be_wanted_with_both_waiting_close_settings() -> None:
    session = MarketDataSession()
    session.connected(NOW)
    minute = m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE
    forming = Topic("candles", "SBER_TQBR", interval=minute)
    closed = Topic("candles", "SBER_TQBR", interval=minute, waiting_close=True)
    session.subscribe([forming])
    with pytest.raises(ConfigurationError, match="waiting_close"):
        session.check([closed])
    other = Topic("trades", "SBER_TQBR")
    with pytest.raises(ConfigurationError, match="waiting_close"):
        session.subscribe([other, closed])
    assert session.topics == (forming,)  # the refused call changed nothing, not even the trades
    assert session.refs(other) == 0
    hour = Topic("candles", "SBER_TQBR", interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_HOUR)
    session.check([Topic("candles", "GAZP_TQBR", interval=minute, waiting_close=True), hour])
    session.unsubscribe([forming])
    session.check([closed])  # nobody wants the forming candles any more


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("bars", {}, "unknown subscription kind"),
        ("order_books", {"depth": 5}, "depth must be one of"),
        ("candles", {}, "interval is required"),
    ],
)
def test_a_topic_refuses_what_the_api_would(kind: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Topic(kind, "SBER_TQBR", **options)  # type: ignore[arg-type]


BAD = "BAD_TQBR"  # an instrument whose requests the patched encoder refuses (a stand-in for a bug)


def failing_encode(value: object, **options: object) -> str:
    """wire.encode, but any subscription request naming BAD cannot be encoded."""
    if any(getattr(i, "instrument_id", "") == BAD for i in getattr(value, "instruments", ())):
        raise EncodeError("injected")
    return wire.encode(value, **options)  # type: ignore[arg-type]


bad_topics = st.sampled_from([Topic("last_prices", BAD), Topic("order_books", BAD, depth=1)])


@settings(max_examples=200)
@given(ops=st.lists(st.tuples(st.booleans(), topics | bad_topics, st.booleans()), max_size=40))
def test_a_topic_that_cannot_be_sent_harms_no_other(ops: list[tuple[bool, Topic, bool]]) -> None:
    """Interleavings as above, with topics whose requests fail to encode: each is dropped and
    reported once per subscribe, no answer slot is queued for it, and the server still ends up
    holding exactly what the others want."""
    session, server = MarketDataSession(), FakeServer()
    held: dict[Topic, int] = {}
    in_flight: list[str] = []
    with patch("rxinvest.protocol.market_data.encode", failing_encode):
        server.answer(session.connected(NOW))

        def read_answers() -> None:
            answers = list(in_flight)
            in_flight.clear()
            for output in feed(session, answers):
                if isinstance(output, Send):
                    in_flight.extend(server.answer([output]))

        for subscribe, topic, answer_now in ops:
            if subscribe:
                outcomes = session.subscribe([topic])
                failures = [o for o in outcomes if isinstance(o, Rejected)]
                if topic.instrument_id == BAD:
                    assert [f.topic for f in failures] == [topic] or session.refs(topic) > 1
                    assert all(isinstance(f.error, EncodeError) and f.status is None for f in failures)
                else:
                    held[topic] = held.get(topic, 0) + 1
                    assert not failures
                in_flight.extend(server.answer(outcomes))
            elif held.get(topic):
                held[topic] -= 1
                in_flight.extend(server.answer(session.unsubscribe([topic])))
            if answer_now:
                read_answers()
        for _ in range(10):
            read_answers()
    assert not in_flight
    assert all(not queue for queue in session._outstanding.values())  # every answer matched
    assert {t for t, n in held.items() if n} == set(session.topics)
    assert server.active() == {server_key(t) for t, n in held.items() if n}


def test_long_lists_travel_in_requests_of_bounded_size() -> None:
    session = MarketDataSession()
    session.connected(NOW)
    topics = [Topic("last_prices", f"ID{i:05}_TQBR") for i in range(40_000)]
    frames = frames_of(session.subscribe(topics))
    assert len(frames) == 40_000 // MAX_INSTRUMENTS_PER_REQUEST
    sent = [
        i["instrumentId"] for f in frames for i in json.loads(f)["subscribeLastPriceRequest"]["instruments"]
    ]
    assert sent == [t.instrument_id for t in topics]  # every one, once, in order
    assert max(map(len, frames)) < 8_192


def test_a_topic_confirmed_again_after_a_new_connection_carries_its_gap() -> None:
    session, server = MarketDataSession(), FakeServer()
    session.connected(NOW)
    live, pending = Topic("trades", "SBER_TQBR"), Topic("trades", "GAZP_TQBR")
    feed(session, server.answer(session.subscribe([live])))
    last_sign = NOW + timedelta(seconds=3)
    session.receive(wire.encode(m.Ping(time=last_sign)), last_sign)
    session.subscribe([pending])  # sent, never answered on the old connection
    reopened = NOW + timedelta(seconds=40)
    server = FakeServer()  # the new connection's server holds nothing
    answers = server.answer(session.connected(reopened))
    outputs = [o for a in answers for o in session.receive(a, reopened + timedelta(seconds=1))]
    confirmed = {o.topic: o.gap for o in outputs if isinstance(o, Confirmed)}
    assert confirmed == {live: (last_sign, reopened + timedelta(seconds=1)), pending: None}
    # and only once: the next reconnect starts from the new connection's last sign of life
    answers = FakeServer().answer(session.connected(reopened + timedelta(seconds=60)))
    outputs = [o for a in answers for o in session.receive(a, reopened + timedelta(seconds=61))]
    gaps = {o.topic: o.gap for o in outputs if isinstance(o, Confirmed)}
    assert gaps[live] == (reopened + timedelta(seconds=1), reopened + timedelta(seconds=61))


def test_a_stall_is_noticed_within_about_30_seconds_by_default() -> None:
    from rxinvest.streams import DEFAULT_PING_DELAY

    session = MarketDataSession(ping_delay=DEFAULT_PING_DELAY)
    session.connected(NOW)
    assert session.deadline() == NOW + timedelta(seconds=30)
