"""Pacing, throttling, sharding and the getMySubscriptions repair, sans-I/O: times are given."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import Kind
from rxinvest.protocol import Checked, Confirmed, MarketDataSession, Rejected, Send, Topic
from rxinvest.protocol.pacing import Limits, RequestBudget, ShardPlan, Throttle

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
OK = m.SubscriptionStatus.SUBSCRIPTION_STATUS_SUCCESS
TOO_MANY = m.SubscriptionStatus.SUBSCRIPTION_STATUS_TOO_MANY_REQUESTS


def frames(outcomes: list) -> list[dict]:
    return [json.loads(f) for o in outcomes if isinstance(o, Send) for f in o.frames]


def requests_of(outcomes: list) -> list[dict]:
    return [f for f in frames(outcomes) if any("Request" in key for key in f)]


# --- the budget --------------------------------------------------------------------------------------


@given(
    limit=st.integers(1, 8),
    window=st.integers(1, 10),
    calls=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 5)), max_size=60),
)
def test_a_budget_never_lets_more_than_its_limit_into_any_window(limit, window, calls) -> None:
    budget = RequestBudget(limit, float(window))
    now, sent = T0, []
    for step_ms, wanted in calls:
        now += timedelta(milliseconds=step_ms)
        granted = budget.take(now, wanted)
        assert 0 <= granted <= wanted
        sent += [now] * granted
        # Oracle: count the sends in the window ending now, from the record of every send.
        in_window = [t for t in sent if t > now - timedelta(seconds=window)]
        assert len(in_window) <= limit
        if granted < wanted:  # refused only when full, and told when one frees up
            assert len(in_window) == limit
            assert budget.next_free(now) == min(in_window) + timedelta(seconds=window)


def test_limits_are_checked_at_the_call() -> None:
    for bad in ({"requests": 0}, {"window": 0}, {"streams": 0}, {"subscriptions": -1}, {"linger": -1}):
        with pytest.raises(ConfigurationError):
            Limits(**bad)


def test_the_throttle_doubles_to_its_cap_and_starts_over() -> None:
    throttle = Throttle()
    delays = []
    for _ in range(8):
        throttle.refused(T0)
        assert throttle.until is not None
        delays.append((throttle.until - T0).total_seconds())
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    throttle.accepted()
    assert not throttle.holds(T0)


# --- the sharding plan -------------------------------------------------------------------------------

KINDS = [Kind.CANDLES, Kind.ORDER_BOOKS, Kind.TRADES, Kind.INFO, Kind.LAST_PRICES]


def topic_of(kind: Kind, n: int) -> Topic:
    if kind is Kind.CANDLES:
        return Topic(kind, f"I{n}", interval=m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE)
    if kind is Kind.ORDER_BOOKS:
        return Topic(kind, f"I{n}", depth=10)
    return Topic(kind, f"I{n}")


@given(
    capacity=st.integers(1, 6),
    streams=st.integers(1, 4),
    full=st.frozensets(st.integers(0, 3), max_size=2),
    steps=st.lists(
        st.tuples(st.booleans(), st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 12)), max_size=8)),
        max_size=25,
    ),
)
def test_the_plan_fills_connections_in_order_and_never_moves_a_held_topic(
    capacity, streams, full, steps
) -> None:
    plan = ShardPlan(capacity, streams)
    held: list[dict[Topic, None]] = []
    for adding, picks in steps:
        topics = [topic_of(kind, n) for kind, n in picks]
        if not adding:  # dispose: drop them wherever they are
            for shard in held:
                for topic in topics:
                    shard.pop(topic, None)
            continue
        before = {t: i for i, shard in enumerate(held) for t in shard}
        full_now = {i for i in full if i < len(held)}  # the server said so of open connections only
        where, no_room = plan.place(topics, held, full_now)
        for index, placed in where.items():
            while len(held) <= index:
                held.append({})
            for topic in placed:
                assert before.get(topic, index) == index  # a held topic stays where it is
                assert topic in before or index not in full_now  # a full one takes nothing new
                held[index][topic] = None
        counted = [sum(1 for t in shard if t.kind.spec.counted) for shard in held]
        assert all(n <= capacity for n in counted)
        assert len(held) <= streams
        for topic in no_room:  # refused only when every connection is full and no more may open
            assert topic not in before and len(held) == streams
            assert all(
                i in full_now or (topic.kind.spec.counted and n == capacity) for i, n in enumerate(counted)
            )
        assert sorted(map(str, {*topics} - {*no_room})) == sorted(
            map(str, {t for shard in held for t in shard if t in topics})
        )


# --- pacing in the session ---------------------------------------------------------------------------


def answer(kind: Kind, topics: list[Topic], status: m.SubscriptionStatus, uid: str = "U") -> str:
    """The server's answer to a trades request (entry by entry, as the API sends them)."""
    assert kind is Kind.TRADES
    entries = tuple(
        m.TradeSubscription(
            instrument_uid=f"{uid}{t.instrument_id}", subscription_status=status, subscription_id="s"
        )
        for t in topics
    )
    return wire.encode(
        m.SubscribeTradesResponse(tracking_id="t", trade_subscriptions=entries), dialect="json"
    )


def test_requests_beyond_the_budget_wait_and_leave_merged() -> None:
    budget = RequestBudget(2, 60.0)
    session = MarketDataSession(budget=budget)
    session.connected(T0)
    sent = []
    for n in range(5):  # five subscribers, five calls: two requests now, three waiting
        sent += requests_of(session.subscribe([Topic(Kind.TRADES, f"I{n}")], T0))
    assert len(sent) == 2
    assert session.next_pump(T0) == T0 + timedelta(seconds=60)
    assert session.pump(T0 + timedelta(seconds=30)) == []
    later = requests_of(session.pump(T0 + timedelta(seconds=60)))
    assert len(later) == 1  # the three waiting topics, in one request
    ids = [i["instrumentId"] for i in later[0]["subscribeTradesRequest"]["instruments"]]
    assert ids == ["I2", "I3", "I4"]


def test_a_subscribe_lingers_for_the_rest_of_its_burst() -> None:
    session = MarketDataSession(linger=0.02)
    session.connected(T0)
    out = []
    for n in range(3):
        out += session.subscribe([Topic(Kind.TRADES, f"I{n}")], T0 + timedelta(milliseconds=n))
    assert requests_of(out) == []
    assert session.next_pump(T0) == T0 + timedelta(milliseconds=20)
    (request,) = requests_of(session.pump(T0 + timedelta(milliseconds=20)))
    assert len(request["subscribeTradesRequest"]["instruments"]) == 3


def test_too_many_requests_puts_topics_back_to_wait_and_backs_off() -> None:
    session = MarketDataSession()
    session.connected(T0)
    topic = Topic(Kind.TRADES, "SBER_TQBR")
    session.subscribe([topic], T0)
    out = session.receive(answer(Kind.TRADES, [topic], TOO_MANY), T0)
    assert not [o for o in out if isinstance(o, Rejected)]  # not a refusal
    assert requests_of(out) == []
    assert session.next_pump(T0) == T0 + timedelta(seconds=1)
    (again,) = requests_of(session.pump(T0 + timedelta(seconds=1)))
    assert "subscribeTradesRequest" in again
    (confirmed,) = session.receive(answer(Kind.TRADES, [topic], OK), T0 + timedelta(seconds=2))
    assert isinstance(confirmed, Confirmed)
    assert session.throttle.until is None


def test_an_unsubscribe_the_server_refused_is_sent_again() -> None:
    session = MarketDataSession()
    session.connected(T0)
    topic = Topic(Kind.TRADES, "SBER_TQBR")
    session.subscribe([topic], T0)
    session.receive(answer(Kind.TRADES, [topic], OK), T0)
    (release,) = requests_of(session.unsubscribe([topic], T0))
    assert release["subscribeTradesRequest"]["subscriptionAction"] == "SUBSCRIPTION_ACTION_UNSUBSCRIBE"
    session.receive(answer(Kind.TRADES, [topic], TOO_MANY), T0)
    assert [s.instrument_id for s in session.strays] == ["USBER_TQBR"]  # the server's name: the uid
    (again,) = requests_of(session.pump(T0 + timedelta(seconds=1)))
    assert again["subscribeTradesRequest"]["subscriptionAction"] == "SUBSCRIPTION_ACTION_UNSUBSCRIBE"
    assert again["subscribeTradesRequest"]["instruments"] == [{"instrumentId": "USBER_TQBR"}]
    session.receive(answer(Kind.TRADES, [topic], OK), T0 + timedelta(seconds=1))
    assert session.strays == ()


def test_a_listing_repairs_both_ways() -> None:
    session = MarketDataSession()
    session.connected(T0)
    kept, lost = Topic(Kind.TRADES, "A"), Topic(Kind.TRADES, "B")
    session.subscribe([kept, lost], T0)
    session.receive(answer(Kind.TRADES, [kept, lost], OK), T0)
    now = T0 + timedelta(seconds=5)
    asked = frames(session.list_subscriptions(now))
    assert asked[0] == {"getMySubscriptions": {}} and "ping" in asked[1]
    assert requests_of(session.subscribe([Topic(Kind.INFO, "C")], now)) == []  # held while listing
    # The server lists A, and X that nobody wants; B is gone. Then the fence's echo.
    listing = m.SubscribeTradesResponse(
        tracking_id="l",
        trade_subscriptions=(
            m.TradeSubscription(instrument_uid="UA", subscription_status=OK),
            m.TradeSubscription(instrument_uid="UX", subscription_status=OK),
        ),
    )
    session.receive(wire.encode(listing, dialect="json"), now)
    echo = {"ping": {"time": "2026-03-02T10:00:06Z", "pingRequestTime": asked[1]["ping"]["time"]}}
    out = session.receive(json.dumps(echo), now)
    (checked,) = [o for o in out if isinstance(o, Checked)]
    assert checked.complete and checked.missing == (lost,)
    assert [(t.kind, t.instrument_id) for t in checked.extra] == [(Kind.TRADES, "UX")]
    sent = requests_of(out)
    actions = [(next(iter(f)), next(iter(f.values()))["subscriptionAction"][20:]) for f in sent]
    assert ("subscribeTradesRequest", "UNSUBSCRIBE") in actions  # X released
    assert ("subscribeTradesRequest", "SUBSCRIBE") in actions  # B asked again
    assert ("subscribeInfoRequest", "SUBSCRIBE") in actions  # what waited for the listing
    session.receive(answer(Kind.TRADES, [Topic(Kind.TRADES, "X")], OK), now)  # the release, first
    (again,) = [o for o in session.receive(answer(Kind.TRADES, [lost], OK), now) if isinstance(o, Confirmed)]
    assert again.gap is not None and again.gap[0] == T0  # missing since it was confirmed


def test_a_listing_that_never_ends_gives_up_and_changes_nothing() -> None:
    session = MarketDataSession()
    session.connected(T0)
    session.list_subscriptions(T0)
    assert session.next_pump(T0) == T0 + timedelta(seconds=10)
    (checked,) = [o for o in session.pump(T0 + timedelta(seconds=10)) if isinstance(o, Checked)]
    assert not checked.complete and checked.missing == () and checked.extra == ()


def test_after_a_listing_that_never_ended_none_is_asked_again() -> None:
    session = MarketDataSession()
    session.connected(T0)
    session.list_subscriptions(T0)
    session.pump(T0 + timedelta(seconds=10))  # timed out: the server does not echo the fence
    later = T0 + timedelta(seconds=20)
    out = session.list_subscriptions(later)
    assert out == [Checked(later, complete=False)]  # at once, nothing sent, nothing held
    assert requests_of(session.subscribe([Topic(Kind.TRADES, "A")], later)) != []
