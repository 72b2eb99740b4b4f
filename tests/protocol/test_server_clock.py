"""The server's clock read off the pings, and the account gap taken on it: sans-I/O, injected times.

The gap an account stream reports is on the client's clock; the recovery's REST filters compare it
with the server's times. A client clock ahead of the server's by more than the slack made the
filters miss what the gap held; one behind made them return far more than the gap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.protocol import AccountAccepted, AccountSession
from rxinvest.protocol.liveness import ServerClock, on_server_clock
from rxinvest.protocol.recovery import SLACK, Plan
from rxinvest.wire import Stream, Unary

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
ACCOUNT = "a1"
GRANTED = m.SubscriptionResponse(
    tracking_id="t",
    status=m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_OK,
    accounts=(ACCOUNT,),
)

GRANTED_POSITIONS = m.PositionsSubscriptionResult(
    tracking_id="t",
    accounts=(
        m.PositionsSubscriptionStatus(
            account_id=ACCOUNT,
            subscription_status=m.PositionsAccountSubscriptionStatus.POSITIONS_SUBSCRIPTION_STATUS_SUCCESS,
        ),
    ),
)
offsets = st.timedeltas(min_value=timedelta(days=-1), max_value=timedelta(days=1))
delays = st.timedeltas(min_value=timedelta(0), max_value=timedelta(seconds=5))


def ping(server_time: datetime) -> bytes:
    return wire.encode(m.Ping(time=server_time, stream_id="s"))


# --- the estimate, pure ----------------------------------------------------------------------------


@given(offset=offsets, delays=st.lists(delays, min_size=1, max_size=20))
def test_the_estimate_is_never_later_than_the_server_and_off_by_the_last_delay_at_most(
    offset: timedelta, delays: list[timedelta]
) -> None:
    clock = ServerClock()
    assert clock.offset is None
    assert clock.server_time(T0) == T0  # no ping yet: the client's clock
    local = T0
    for delay in delays:  # a ping stamped by the server, received ``delay`` later
        local += timedelta(seconds=1)
        clock.heard(local + offset, local + delay)
        local += delay
    assert clock.offset is not None
    # Transit only makes the estimate earlier: a wider window, never a narrower one.
    assert offset - delays[-1] <= clock.offset <= offset
    later = local + timedelta(minutes=3)
    assert clock.server_time(later) == later + clock.offset
    assert on_server_clock(later, None) == later


@given(first=offsets, second=offsets)
def test_the_latest_ping_wins_so_a_step_of_either_clock_is_followed_at_once(
    first: timedelta, second: timedelta
) -> None:
    clock = ServerClock()
    clock.heard(T0 + first, T0)
    clock.heard(T0 + timedelta(seconds=5) + second, T0 + timedelta(seconds=5))
    assert clock.offset == second


# --- the session's gap on the server's clock -------------------------------------------------------


def lose_and_regain(session: AccountSession, offset: timedelta, *, down: timedelta) -> AccountAccepted:
    """Grant, ping (the server's clock is ours plus ``offset``), receive until T0, lose the connection
    for ``down``, grant again; the acceptance with the gap."""
    session.connected(T0 - timedelta(minutes=1))
    session.receive(wire.encode(GRANTED), T0 - timedelta(seconds=59))
    session.receive(ping(T0 - timedelta(seconds=10) + offset), T0 - timedelta(seconds=10))
    session.receive(wire.encode(m.OrderState(order_id="o0", account_id=ACCOUNT)), T0)
    session.connected(T0 + down)
    (accepted,) = session.receive(wire.encode(GRANTED), T0 + down)
    assert isinstance(accepted, AccountAccepted)
    return accepted


@given(offset=offsets, down=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=2)))
def test_the_gap_is_on_the_clients_clock_and_its_server_twin_moved_by_the_lost_connections_offset(
    offset: timedelta, down: timedelta
) -> None:
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    accepted = lose_and_regain(session, offset, down=down)
    assert accepted.gap == (T0, T0 + down)  # what the markers show: unchanged, the client's clock
    # No ping yet on the new connection: ``until`` takes the lost one's estimate too.
    assert session.server_gap(ACCOUNT) == (T0 + offset, T0 + down + offset)
    assert session.server_offset == offset


def test_until_takes_the_new_connections_offset_once_it_pinged() -> None:
    session = AccountSession(Stream.POSITIONS, [ACCOUNT])
    session.connected(T0)
    session.receive(wire.encode(GRANTED_POSITIONS), T0)
    session.receive(ping(T0 + timedelta(minutes=5)), T0)
    session.connected(T0 + timedelta(seconds=30))
    session.receive(ping(T0 + timedelta(minutes=7)), T0 + timedelta(seconds=31))
    (accepted,) = session.receive(wire.encode(GRANTED_POSITIONS), T0 + timedelta(seconds=32))
    assert isinstance(accepted, AccountAccepted)
    since, until = session.server_gap(ACCOUNT) or (None, None)
    assert since == T0 + timedelta(minutes=5)  # the last thing received was the ping, at T0
    assert until == T0 + timedelta(seconds=32) + timedelta(minutes=7) - timedelta(seconds=31)


def test_with_no_ping_the_server_gap_falls_back_to_the_clients_clock() -> None:
    session = AccountSession(Stream.TRADES, [ACCOUNT])
    session.connected(T0 - timedelta(seconds=5))
    session.receive(wire.encode(GRANTED), T0)
    session.connected(T0 + timedelta(minutes=1))
    (accepted,) = session.receive(wire.encode(GRANTED), T0 + timedelta(minutes=1))
    assert isinstance(accepted, AccountAccepted)
    assert session.server_gap(ACCOUNT) == accepted.gap == (T0, T0 + timedelta(minutes=1))
    # An acceptance with no gap has no server gap either.
    fresh = AccountSession(Stream.TRADES, [ACCOUNT])
    fresh.connected(T0)
    fresh.receive(wire.encode(GRANTED), T0)
    assert fresh.server_gap(ACCOUNT) is None


def test_a_connection_lost_before_its_first_ping_keeps_the_estimate_made_before_it() -> None:
    """A client clock 10 minutes ahead: the second connection is lost before it pinged. Its gap must
    not fall back to the client's clock (that would lose 9 minutes of the server's events)."""
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    accepted = lose_and_regain(session, -timedelta(minutes=10), down=timedelta(seconds=20))
    assert accepted.gap is not None
    # Lost again before the new connection pinged, then a third one that pings another offset.
    session.receive(wire.encode(m.OrderState(order_id="o1", account_id=ACCOUNT)), T0 + timedelta(seconds=21))
    session.connected(T0 + timedelta(seconds=40))
    session.receive(ping(T0 + timedelta(seconds=41) + timedelta(minutes=3)), T0 + timedelta(seconds=41))
    session.connected(T0 + timedelta(seconds=50))  # lost before it was granted: the gap goes on
    (again,) = session.receive(wire.encode(GRANTED), T0 + timedelta(seconds=60))
    assert isinstance(again, AccountAccepted)
    assert again.gap == (T0 + timedelta(seconds=21), T0 + timedelta(seconds=60))
    since, until = session.server_gap(ACCOUNT) or (None, None)
    assert since == T0 + timedelta(seconds=21) - timedelta(minutes=10)  # the first connection's estimate
    assert until == T0 + timedelta(seconds=60) + timedelta(minutes=3)  # the latest one


# --- what the recovery asks for ------------------------------------------------------------------


def orders_filter_from(plan: Plan) -> datetime | None:
    (call,) = [c for c in plan.calls() if c.method is Unary.GET_ORDERS and c.request.advanced_filters]
    return call.request.advanced_filters.from_  # type: ignore[no-any-return]


@given(
    ahead=st.timedeltas(min_value=SLACK + timedelta(minutes=31), max_value=timedelta(hours=3)),
    placed=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(minutes=30)),
)
def test_a_client_clock_ahead_still_asks_for_the_orders_created_in_the_gap(
    ahead: timedelta, placed: timedelta
) -> None:
    """The server's clock is ours minus ``ahead``: an order the server created ``placed`` into the gap
    has ``created_at`` = (T0 + placed) - ahead. On the client's clock the filter started after it."""
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    accepted = lose_and_regain(session, -ahead, down=placed + timedelta(seconds=1))
    created_at = T0 + placed - ahead
    gap = session.server_gap(ACCOUNT)
    assert gap is not None and accepted.gap is not None
    since = orders_filter_from(Plan(Stream.ORDER_STATE, ACCOUNT, gap))
    assert since is not None and since <= created_at
    old = orders_filter_from(Plan(Stream.ORDER_STATE, ACCOUNT, accepted.gap))  # the client's clock
    assert old is not None and old > created_at  # what was lost before


@given(behind=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=3)))
def test_a_client_clock_behind_does_not_widen_the_window_beyond_the_slack(behind: timedelta) -> None:
    session = AccountSession(Stream.ORDER_STATE, [ACCOUNT])
    lose_and_regain(session, behind, down=timedelta(seconds=30))
    gap = session.server_gap(ACCOUNT)
    assert gap is not None
    since = orders_filter_from(Plan(Stream.ORDER_STATE, ACCOUNT, gap))
    # The server's time of the last frame received (the ping 10 s before it, on an exact clock).
    assert since == T0 + behind - SLACK
