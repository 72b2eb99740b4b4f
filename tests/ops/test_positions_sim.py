"""Position reconciliation against the simulator, over real sockets on loopback.

The simulator's trader (and the test) place over a thousand orders; their fills, the positions
stream and the portfolio must reconcile with no discrepancy. Then one securities transfer and one
dividend, which no fill explains, must each be reported ``UNEXPLAINED`` exactly once. The ground
truth is the simulator's broker (its orders, transfers and money movements), not the ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

import rxinvest
from rxinvest.derived import CheckStatus, PositionCheck
from rxinvest.model import OrderDirection
from rxinvest.sim import serve

TIMEOUT = 5.0  # seconds a fill may wait for its position change (real time: room for a loaded CI)
ORDERS = 1_000


class Checks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[PositionCheck] = []
        self.errors: list[Exception] = []

    def on_next(self, event: PositionCheck) -> None:
        with self.lock:
            self.events.append(event)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def of(self, status: CheckStatus) -> list[PositionCheck]:
        with self.lock:
            return [e for e in self.events if e.status is status]

    def last(self) -> dict[tuple[str, str, str], PositionCheck]:
        with self.lock:
            return {(e.account_id, e.instrument_uid, e.currency): e for e in self.events}


def wait(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_thousand_orders_reconcile_and_external_movements_are_unexplained_once() -> None:
    checks = Checks()
    with serve(seed=3, speed=40, trader=False) as sim:
        accounts = list(sim.accounts)
        with rxinvest.connect(sim.token, target=sim.base_url) as client:
            subscription = client.operations.reconciled_positions(
                accounts,
                timeout=TIMEOUT,
                money_tolerance=Decimal(0),  # the simulator charges no commission
            ).subscribe(checks.on_next, checks.on_error)
            wait(lambda: {e.account_id for e in checks.events} == set(accounts), 10)  # the snapshots
            sim.trader = True  # read by the loop at each step
            for k in range(20):  # and orders of our own
                sim.place_order(accounts[k % 2], "SBER_TQBR", OrderDirection.ORDER_DIRECTION_BUY, 1)
            wait(lambda: sum(len(sim.broker.orders(a)) for a in accounts) >= ORDERS, 120)
            sim.trader = False
            time.sleep(0.1)  # a step under way ends
            for a in accounts:  # resting limit orders would go on filling, a fill in flight at any check
                for order in sim.broker.active_orders(a):
                    sim.cancel_order(a, order.order_id)
            time.sleep(TIMEOUT + 1)  # every fill had its time to be reflected
            assert checks.of(CheckStatus.MISSING) == [] and checks.of(CheckStatus.UNEXPLAINED) == []
            assert all(e.status is CheckStatus.MATCHED for e in checks.last().values()), [
                e for e in checks.last().values() if e.status is not CheckStatus.MATCHED
            ]

            account, sber = accounts[0], sim.index["SBER_TQBR"]
            assert sim.transfer_securities(account, "SBER_TQBR", 10)  # 10 units from a depository
            assert sim.move_money(account, Decimal("150.25"), kind="dividend")
            wait(lambda: len(checks.of(CheckStatus.UNEXPLAINED)) >= 2, 10)
            time.sleep(TIMEOUT + 1)  # nothing more comes of them
            subscription.dispose()

    assert checks.errors == []
    unexplained = {
        (e.account_id, e.instrument_uid, e.currency, e.difference) for e in checks.of(CheckStatus.UNEXPLAINED)
    }
    assert unexplained == {(account, sber.uid, "", Decimal(10)), (account, "", "rub", Decimal("150.25"))}
    assert checks.of(CheckStatus.MISSING) == []
    assert all(e.status is CheckStatus.MATCHED for e in checks.last().values())
    orders = sum(len(sim.broker.orders(a)) for a in accounts)
    assert orders >= ORDERS
