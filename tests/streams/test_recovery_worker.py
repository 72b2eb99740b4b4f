"""The account connection's recovery worker: one long-lived thread per connection, however many gaps
(so that the REST answers are allocated in one malloc arena), fed in order, and stopped by close.
Driven as the reader thread would drive the connection (no sockets); every wait is bounded."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from reactivex.scheduler import ImmediateScheduler

from rxinvest import model as m
from rxinvest.derived import Gap, Recovered
from rxinvest.errors import ConnectionLostError
from rxinvest.protocol import AccountSession
from rxinvest.protocol.recovery import AccountRecovery
from rxinvest.streams.accounts import AccountConnection
from rxinvest.streams.delivery import Mailbox
from rxinvest.wire import Stream, Unary
from tests.streams.test_client import WAIT, Collector
from tests.streams.test_recovery import NEW_, StillTransport, serve_frames

A, B = "2000000001", "2000000002"
GAPS = 25


class EmptyApi:
    """Answers every recovery call with nothing to recover; records the thread of each call. While
    :attr:`gate` is clear, a call waits for it (a recovery under way)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.called = threading.Event()
        self.threads: set[threading.Thread] = set()  # objects, not idents: idents are reused
        self.accounts: list[str] = []

    def __call__(self, method: Unary, request: Any) -> Any:
        self.threads.add(threading.current_thread())
        self.accounts.append(getattr(request, "account_id", ""))
        self.called.set()
        assert self.gate.wait(WAIT)
        if method is Unary.GET_ORDERS:
            return m.GetOrdersResponse()
        if method is Unary.GET_OPERATIONS_BY_CURSOR:
            return m.GetOperationsByCursorResponse()
        raise AssertionError(f"unexpected call {method}")


def recovery_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rxinvest-recovery")]


def wait_until(condition: Any) -> bool:
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(condition())


def connection_of(api: EmptyApi, *accounts: str) -> tuple[AccountConnection, Collector]:
    session = AccountSession(Stream.ORDER_STATE, list(accounts))
    connection = AccountConnection(
        lambda listener: StillTransport(), lambda status: None, session, lambda c: None,
        recovery=AccountRecovery(api, Stream.ORDER_STATE), join_timeout=WAIT,
    )  # fmt: skip
    got = Collector()
    connection.add(Mailbox(got, ImmediateScheduler(), markers=True, name="test"))
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=accounts))
    return connection, got


def reconnect(connection: AccountConnection, *accounts: str) -> None:
    connection.lost(ConnectionLostError("cut"), True)
    connection.opened(datetime.now(UTC))
    serve_frames(connection, m.SubscriptionResponse(accounts=accounts))


def state(account: str, order_id: str) -> m.OrderState:
    return m.OrderState(
        order_id=order_id, execution_report_status=NEW_, lots_requested=1, lot_size=1,
        account_id=account, instrument_uid="uid",
    )  # fmt: skip


def recovered(got: Collector) -> list[Recovered]:
    return [e for e in got.events if isinstance(e, Recovered)]


def test_many_gaps_are_recovered_on_one_worker_thread_that_close_stops() -> None:
    before = set(recovery_threads())
    api = EmptyApi()
    connection, got = connection_of(api, A)
    assert not set(recovery_threads()) - before  # started lazily: none before the first gap
    most = 0
    for n in range(1, GAPS + 1):
        reconnect(connection, A)
        got.wait(lambda c, n=n: len(recovered(c)) == n)
        most = max(most, len(set(recovery_threads()) - before))
    (worker,) = set(recovery_threads()) - before
    assert most == 1
    assert api.threads == {worker}  # every gap's calls on the one worker
    assert [e.error for e in recovered(got)] == [""] * GAPS
    assert connection.recoveries == GAPS
    assert worker.is_alive()  # it waits for the next gap
    connection.close()  # joins it (join_timeout is WAIT)
    assert not worker.is_alive()
    assert not set(recovery_threads()) - before


def test_gaps_of_two_accounts_queue_on_the_worker_in_order_and_close_releases_what_waits() -> None:
    before = set(recovery_threads())
    api = EmptyApi()
    api.gate.clear()
    connection, got = connection_of(api, A, B)
    reconnect(connection, A, B)  # both accounts have a gap: A's recovery waits at the gate, B's queues
    assert api.called.wait(WAIT)
    serve_frames(connection, state(A, "a1"), state(B, "b1"))  # held, each behind its account's gap
    assert sorted(connection.recovering) == [A, B]
    assert len(set(recovery_threads()) - before) == 1
    assert [type(e).__name__ for e in got.events] == ["Subscribed", "Gap", "Gap"]

    # Close while A's recovery is under way and B's waits in the queue: A's ends at its next call
    # (abandoned), B's at once; every held event still goes out after its account's marker.
    closer = threading.Thread(target=connection.close)
    closer.start()
    assert wait_until(connection._cancel.is_set)
    api.gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert not set(recovery_threads()) - before
    markers = recovered(got)
    assert [e.target for e in markers] == [A, B]  # in the order of the gaps
    assert all("abandoned" in e.error for e in markers)
    assert connection.recovering == ()
    shown = [
        e.target if isinstance(e, Gap | Recovered) else e.order_id
        for e in got.events
        if isinstance(e, Gap | Recovered | m.OrderState)
    ]
    assert shown == [A, B, A, "a1", B, "b1"]
    assert all(a in (A, B) for a in api.accounts)


def test_a_gap_after_a_close_starts_no_lasting_thread() -> None:
    before = set(recovery_threads())
    api = EmptyApi()
    connection, got = connection_of(api, A)
    reconnect(connection, A)
    got.wait(lambda c: len(recovered(c)) == 1)
    connection.close()
    assert not set(recovery_threads()) - before
    reconnect(connection, A)  # a reader thread still delivering after close: its gap ends at once
    got.wait(lambda c: len(recovered(c)) == 2)
    assert "abandoned" in recovered(got)[-1].error
    assert wait_until(lambda: not set(recovery_threads()) - before)
