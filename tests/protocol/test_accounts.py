"""The account streams' session, sans-I/O: the request, per-account answers mapped to errors, events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest import wire
from rxinvest.errors import ConfigurationError, PermissionDeniedError, SubscriptionRejectedError
from rxinvest.protocol import AccountAccepted, AccountRejected, AccountSession, Delivered, Malformed
from rxinvest.wire import Stream

NOW = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)


def test_the_request_names_the_accounts_and_the_ping_delay() -> None:
    session = AccountSession(Stream.ORDER_STATE, ["a1", "a2"], ping_delay=5)
    ((frame,),) = (send.frames for send in session.connected(NOW))
    assert json.loads(frame) == {"accounts": ["a1", "a2"], "pingDelayMillis": 5000}
    positions = AccountSession(Stream.POSITIONS, ["a1"], ping_delay=30, with_initial_positions=False)
    ((frame,),) = (send.frames for send in positions.connected(NOW))
    assert json.loads(frame) == {"accounts": ["a1"], "pingSettings": {"pingDelayMs": 30000}}


def test_refused_accounts_carry_the_error_their_subscribers_get() -> None:
    session = AccountSession(Stream.ORDER_STATE, ["ok", "theirs", "gone"])
    session.connected(NOW)
    answer = m.SubscriptionResponse(
        tracking_id="t1",
        status=m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR,
        accounts=("ok",),
        error=m.ErrorDetail(code="40002", message="insufficient privileges"),
    )
    accepted, theirs, gone = session.receive(wire.encode(answer), NOW)
    assert accepted == AccountAccepted("ok", "t1")
    assert isinstance(theirs, AccountRejected)
    assert isinstance(theirs.error, PermissionDeniedError)
    assert theirs.error.code == "40002"
    assert theirs.error.tracking_id == "t1"
    assert "theirs" in str(theirs.error)
    assert isinstance(gone.error, PermissionDeniedError)  # one answer, one code for every refusal

    unknown = AccountSession(Stream.TRADES, ["x"])
    refusal = m.SubscriptionResponse(
        tracking_id="t2",
        status=m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR,
        error=m.ErrorDetail(code="50004", message="account not found"),
    )
    (rejected,) = unknown.receive(wire.encode(refusal), NOW)
    assert isinstance(rejected.error, SubscriptionRejectedError)
    assert rejected.error.target == "x"
    assert rejected.error.status is m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR


def test_operations_streams_answer_account_by_account() -> None:
    session = AccountSession(Stream.PORTFOLIO, ["a", "b"])
    ok = m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_SUCCESS
    missing = m.PortfolioSubscriptionStatus.PORTFOLIO_SUBSCRIPTION_STATUS_ACCOUNT_NOT_FOUND
    answer = m.PortfolioSubscriptionResult(
        tracking_id="t",
        accounts=(
            m.AccountSubscriptionStatus(account_id="a", subscription_status=ok),
            m.AccountSubscriptionStatus(account_id="b", subscription_status=missing),
        ),
    )
    accepted, rejected = session.receive(wire.encode(answer), NOW)
    assert accepted == AccountAccepted("a", "t")
    assert isinstance(rejected.error, SubscriptionRejectedError)
    assert rejected.error.status is missing
    assert rejected.error.code == missing.name


def test_every_event_is_delivered_and_bad_frames_reported() -> None:
    session = AccountSession(Stream.POSITIONS, ["a"])
    event = m.PositionData(account_id="a", date=NOW)
    assert session.receive(wire.encode(event), NOW) == [Delivered((), event)]
    (bad,) = session.receive(b'{"position": {"accountId": 5}}', NOW)
    assert isinstance(bad, Malformed)
    assert session.receive(wire.encode(m.Ping(time=NOW)), NOW) == []


def test_only_account_streams_have_an_account_session() -> None:
    with pytest.raises(ConfigurationError, match="not an account stream"):
        AccountSession(Stream.MARKET_DATA, ["a"])


_ACCOUNTS = ("A", "B", "C")


@given(st.lists(st.sets(st.sampled_from(_ACCOUNTS)), min_size=1, max_size=8))
def test_every_grant_after_a_lost_one_carries_a_gap_whoever_was_refused_between(
    grants: list[set[str]],
) -> None:
    """Connections one after another, each granting some of the accounts (the others refused, as a
    transient refusal would): an account's first grant has no gap, and every later one has one that
    begins no later than the loss of the last connection that granted it. The oracle is that
    history, kept here; an account refused on a connection between keeps its gap waiting."""
    session = AccountSession(Stream.ORDER_STATE, list(_ACCOUNTS))
    lost_at: dict[str, datetime] = {}  # account -> when the last connection that granted it was lost
    for n, granted in enumerate(grants):
        now = NOW + timedelta(minutes=n)
        for account in lost_at:
            lost_at[account] = min(lost_at[account], now)
        session.connected(now)
        refused = set(_ACCOUNTS) - granted
        answer = m.SubscriptionResponse(
            tracking_id="t",
            status=m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_ERROR
            if refused
            else m.ResultSubscriptionStatus.RESULT_SUBSCRIPTION_STATUS_OK,
            accounts=tuple(sorted(granted)),
            error=m.ErrorDetail(code="50004", message="try later") if refused else None,
        )
        frame = wire.encode(answer)
        outcomes = session.receive(frame, now)
        accepted = {o.account_id: o.gap for o in outcomes if isinstance(o, AccountAccepted)}
        assert set(accepted) == granted
        for account, gap in accepted.items():
            if account in lost_at:
                assert gap is not None and gap[0] <= lost_at.pop(account), (account, gap)
            else:
                assert gap is None
        for account in granted:
            lost_at[account] = now + timedelta(minutes=1)  # lost when the next connection opens
