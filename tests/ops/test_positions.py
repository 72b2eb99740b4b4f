"""``ops.reconcile_positions`` with marbles on a TestScheduler (virtual time in seconds): the join of
its sources, the timeout at exactly ``timeout`` on the scheduler's clock, gaps, state per
subscription. Expected values are written out here from the events the tests make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxinvest import ops
from rxinvest.derived import CheckStatus, Gap, GapCause, PositionCheck, Subscribed
from rxinvest.errors import ConfigurationError
from rxinvest.model import (
    OrderDirection,
    OrderExecutionReportStatus,
    OrderState,
    PositionData,
    PositionsResponse,
    PositionsSecurities,
)
from rxinvest.testing.marbles import run_marbles

on_next, on_completed = ReactiveTest.on_next, ReactiveTest.on_completed
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ACCOUNT, UID = "2000000001", "uid-sber"
M, P, U, X = CheckStatus.MATCHED, CheckStatus.PENDING, CheckStatus.UNEXPLAINED, CheckStatus.MISSING
FILLED = OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_FILL


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def snapshot(units: int) -> PositionsResponse:
    return PositionsResponse(
        account_id=ACCOUNT, securities=(PositionsSecurities(instrument_uid=UID, balance=units),)
    )


def reported(seconds: float, units: int) -> PositionData:
    return PositionData(
        account_id=ACCOUNT,
        securities=(PositionsSecurities(instrument_uid=UID, balance=units),),
        date=at(seconds),
    )


def filled(
    order: str, lots: int, direction: OrderDirection = OrderDirection.ORDER_DIRECTION_BUY
) -> OrderState:
    return OrderState(
        order_id=order,
        order_request_id=f"request-{order}",
        execution_report_status=FILLED,
        lots_executed=lots,
        lot_size=10,
        direction=direction,
        account_id=ACCOUNT,
        instrument_uid=UID,
    )


def run(orders: list[Any], positions: list[Any], **options: Any) -> list[tuple[float, PositionCheck]]:
    options.setdefault("markers", False)
    outcome = run_marbles(
        lambda o, p: ops.reconcile_positions(o, p, **options), orders, positions, subscribe_at=200, until=400
    )
    return list(outcome.values)


def states(
    events: list[tuple[float, PositionCheck]],
) -> list[tuple[float, CheckStatus, Decimal, Decimal | None]]:
    return [(t, e.status, e.expected, e.reported) for t, e in events if not e.is_money]


def test_a_fill_and_its_position_change_match_whichever_comes_first() -> None:
    got = run(
        [on_next(220, filled("o1", 2)), on_next(238, filled("o2", 1))],
        [on_next(201, snapshot(100)), on_next(223, reported(223, 120)), on_next(235, reported(235, 130))],
    )
    assert states(got) == [
        (201, M, 100, 100),  # the base
        (220, P, 120, 100),  # the fill first: pending
        (223, M, 120, 120),
        (235, P, 120, 130),  # the position first
        (238, M, 130, 130),  # (at 240, the timeout, it would have been a verdict)
    ]


def test_a_fill_never_reflected_is_missing_once_at_exactly_the_timeout() -> None:
    got = run([on_next(220, filled("o1", 2))], [on_next(201, snapshot(100))], timeout=5.0)
    missing = [(t, e.difference) for t, e in got if e.status is X]
    assert missing == [(225, Decimal(-20))]  # 220 + 5 s, on the scheduler's clock; reported once
    assert all(t <= 225 for t, _ in got)  # and nothing after it: the positions stream is the truth


def test_a_change_no_fill_explains_is_unexplained_once() -> None:
    got = run([], [on_next(201, snapshot(100)), on_next(230, reported(230, 110))], timeout=5.0)
    assert [(t, e.difference) for t, e in got if e.status is U] == [(235, Decimal(10))]
    assert states(got)[-1][1:] == (M, 110, 110)  # then taken as the truth


def test_repeated_and_older_order_states_change_nothing() -> None:
    once = run(
        [on_next(220, filled("o1", 2))], [on_next(201, snapshot(100)), on_next(223, reported(223, 120))]
    )
    repeated = run(
        [on_next(220, filled("o1", 2)), on_next(221, filled("o1", 2)), on_next(222, filled("o1", 1))],
        [on_next(201, snapshot(100)), on_next(223, reported(223, 120))],
    )
    assert [e.id for _, e in repeated] == [e.id for _, e in once]


def test_a_gap_re_bases_on_the_next_snapshot_without_alarms() -> None:
    subscribed = Subscribed(stream="OrderStateStream", targets=(ACCOUNT,))
    gap = Gap(cause=GapCause.RECONNECT, since=at(219), until=at(221), target=ACCOUNT)
    got = run(
        [on_next(200.5, subscribed), on_next(221, gap)],
        [
            on_next(200.5, Subscribed(stream="PositionsStream", targets=(ACCOUNT,))),
            on_next(201, snapshot(100)),
            on_next(220, reported(220, 120)),  # its fill was lost in the gap
            on_next(230, snapshot(120)),
        ],
        markers=True,
        timeout=5.0,
    )
    assert not [e for _, e in got if e.status in (U, X)]
    assert states(got)[-1][1:] == (M, 120, 120)


def test_each_subscription_has_its_own_ledger() -> None:
    scheduler = TestScheduler()
    orders = scheduler.create_hot_observable(on_next(220, filled("o1", 2)))
    positions = scheduler.create_hot_observable(on_next(205, snapshot(100)), on_next(300, snapshot(120)))
    pipeline = ops.reconcile_positions(orders, positions, markers=False, scheduler=scheduler)
    first, second = scheduler.create_observer(), scheduler.create_observer()
    scheduler.schedule_absolute(200, lambda *_: pipeline.subscribe(first))
    scheduler.schedule_absolute(250, lambda *_: pipeline.subscribe(second))
    scheduler.start()
    late = [m.value.value for m in second.messages if m.value.kind == "N"]
    assert [(e.expected, e.reported, e.status) for e in late] == [(120, 120, M)]  # it saw no fill


def test_sources_without_markers_and_bad_arguments_are_refused() -> None:
    errors: list[Exception] = []
    ops.reconcile_positions(reactivex.from_iterable([filled("o1", 1)]), reactivex.never()).subscribe(
        on_error=errors.append
    )
    assert isinstance(errors[0], ConfigurationError)
    for bad in ({"timeout": 0}, {"timeout": "5"}, {"markers": 1}):
        with pytest.raises(ConfigurationError):
            ops.reconcile_positions(reactivex.never(), reactivex.never(), **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ops.reconcile_positions([1], reactivex.never())  # type: ignore[arg-type]
