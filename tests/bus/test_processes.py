"""The bus end to end, with real processes on loopback: a ``nats-server``, the simulator (in this
process), one ``rxinvest gateway`` process and consumer processes (``_consumer_proc.py``), each
writing what it receives as JSON lines.

The ground truth is a direct client of the same simulator (``rxinvest.connect``) subscribed before
any consumer starts and closed after they stop: every consumer's sequence must be a contiguous
slice of the direct one (nothing missing, nothing extra, nothing reordered in between), and the
simulator's own view of its connections says what the gateway holds upstream.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rxinvest
from rxinvest.bus.natsd import NatsServer
from rxinvest.derived import Marker
from rxinvest.model import OrderDirection
from rxinvest.model.kinds import Kind
from rxinvest.sim import serve
from rxinvest.wire import Stream, dump

pytestmark = pytest.mark.timeout(60)

CONSUMER = Path(__file__).with_name("_consumer_proc.py")
LEASE = 2.0  # the gateway's (and the consumers') lease, seconds
GRACE = 2.0  # seconds the gateway keeps what the last consumer released (Gateway.release_grace)
START = 20.0  # seconds a process may take to start and subscribe (imports on a loaded CI)


# --- helpers ----------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


def canonical(event: Any) -> dict[str, Any]:
    """An event as a consumer process writes it (``dump``, through JSON)."""
    return json.loads(json.dumps(dump(event), default=str, sort_keys=True))


class Recorder:
    """What a direct client's subscriber received: canonical events and marker names, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.markers: list[Marker] = []
        self.errors: list[Exception] = []

    def on_next(self, item: Any) -> None:
        with self.lock:
            if isinstance(item, Marker):
                self.markers.append(item)
            else:
                self.events.append(canonical(item))

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def subscribed(self) -> bool:
        return any(type(m).__name__ == "Subscribed" for m in self.markers)


class Consumer:
    """One consumer process and its output file."""

    def __init__(
        self, tmp: Path, label: str, nats_url: str, *args: str, name: str | None = None, go: bool = False
    ) -> None:
        self.out = tmp / f"{label}.jsonl"
        self.stop_file = tmp / f"{label}.stop"
        self.go_file = tmp / f"{label}.go"
        self.log = tmp / f"{label}.log"
        command = [sys.executable, str(CONSUMER), "--nats", nats_url, "--out", str(self.out)]
        command += ["--stop", str(self.stop_file), "--lease", str(LEASE), *args]
        if name is not None:
            command += ["--name", name]
        if go:
            command += ["--go", str(self.go_file)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        lines = self.out.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]  # a SIGKILL may cut one

    def events(self, src: str) -> list[dict[str, Any]]:
        return [r["data"] for r in self.records() if r.get("src") == src and r["t"] == "event"]

    def markers(self, src: str) -> list[str]:
        return [r["type"] for r in self.records() if r.get("src") == src and r["t"] == "marker"]

    def subscribed(self, *srcs: str) -> bool:
        self.check_alive()
        return all("Subscribed" in self.markers(src) for src in srcs)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None and not self.stop_file.exists():
            raise AssertionError(
                f"consumer exited with {code}: {self.log.read_text(errors='replace')[-3000:]}"
            )

    def stop(self, timeout: float = 15.0) -> None:
        """Ask for a clean close and wait for the exit (status 0)."""
        self.stop_file.touch()
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"consumer did not stop: {self.log.read_text(errors='replace')[-3000:]}"
            ) from None
        assert code == 0, self.log.read_text(errors="replace")[-3000:]
        assert self.records()[-1]["t"] == "closed"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process a test starts: killed (and reaped) when the test ends, however it ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in reversed(started):
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


def start_gateway(tmp: Path, nats: NatsServer, sim: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ, INVEST_TOKEN=sim.token)
    command = [sys.executable, "-m", "rxinvest", "gateway", "--nats", nats.url, "--target", sim.base_url]
    command += ["--rest-url", sim.rest_url, "--name", "gw", "--lease", str(LEASE), "--takeover-after", "1"]
    log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 (the child holds it)
    with log:
        gateway = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def active() -> bool:
        if gateway.poll() is not None:
            raise AssertionError(f"the gateway exited: {(tmp / 'gateway.log').read_text(errors='replace')}")
        return "gateway: active" in (tmp / "gateway.log").read_text(errors="replace")

    wait_until(active, START, "the gateway to be active")  # its status line, once a second
    return gateway


def stop_gateway(gateway: subprocess.Popen[bytes], tmp: Path) -> None:
    gateway.send_signal(signal.SIGTERM)
    try:
        code = gateway.wait(15)
    except subprocess.TimeoutExpired:
        gateway.kill()
        gateway.wait()
        raise AssertionError("the gateway did not stop on SIGTERM") from None
    assert code == 0, (tmp / "gateway.log").read_text(errors="replace")[-3000:]


def upstream(sim: Any, exclude: set[int]) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[str, ...]]]:
    """What the connections not in ``exclude`` (the direct client's) hold at the simulator: each
    market-data subscription and each account-stream grant, counted over the connections."""
    market: Counter[tuple[Any, ...]] = Counter()
    accounts: Counter[tuple[str, ...]] = Counter()
    for info in sim.connections():
        if info.id in exclude:
            continue
        if info.stream is Stream.MARKET_DATA:
            market.update(info.subscriptions)
        elif info.accounts:
            accounts[(info.stream.value, *info.accounts)] += 1
    return market, accounts


def trades_key(uid: str) -> tuple[Any, ...]:
    return (Kind.TRADES, (uid,))


def books_keys(market: Counter[tuple[Any, ...]], uid: str, depth: int) -> list[tuple[Any, ...]]:
    return [key for key in market if key[0] is Kind.ORDER_BOOKS and key[1][:2] == (uid, depth)]


def slice_of(part: list[Any], whole: list[Any]) -> int | None:
    """Where ``part`` sits in ``whole`` as a contiguous slice (its first index), or None."""
    if not part:
        return 0
    for start in range(len(whole) - len(part) + 1):
        if whole[start] == part[0] and whole[start : start + len(part)] == part:
            return start
    return None


def by_uid(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["instrumentUid"], []).append(event)
    return out


def mismatch(part: list[Any], whole: list[Any]) -> str:
    """Say where ``part`` first leaves ``whole`` (for an assertion message)."""
    start = slice_of(part[:1], whole)
    if start is None:
        return f"first event not in the direct record: {part[0]}"
    for i, event in enumerate(part):
        j = start + i
        if j >= len(whole) or whole[j] != event:
            got = whole[j] if j < len(whole) else "(end)"
            return f"at {i} of {len(part)}: consumer {event} / direct {got}"
    return "no mismatch"


# --- the tests --------------------------------------------------------------------------------------


def test_two_consumers_get_the_direct_streams_and_share_one_upstream_subscription(
    tmp_path: Path, nats_server: NatsServer, processes: list[subprocess.Popen[bytes]]
) -> None:
    with serve(seed=7) as sim:
        account = sim.accounts[0]
        ids = ["SBER_TQBR", "GAZP_TQBR"]
        uids = [sim.index[i].uid for i in ids]
        with rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url) as direct:
            trades, orders = Recorder(), Recorder()
            subs = [
                direct.market_data.trades(ids).with_markers().subscribe(trades.on_next, trades.on_error),
                direct.orders.order_states(account).with_markers().subscribe(orders.on_next, orders.on_error),
            ]
            wait_until(lambda: trades.subscribed() and orders.subscribed(), 10, "the direct client")
            wait_until(
                lambda: (
                    len(sim.connections()) == 2
                    and all(info.accounts or len(info.subscriptions) == 2 for info in sim.connections())
                ),
                10,
                "the direct client's subscriptions",
            )
            mine = {info.id for info in sim.connections()}
            gateway = start_gateway(tmp_path, nats_server, sim)
            processes.append(gateway)
            args = ["--books", ",".join(ids), "--depth", "10", "--trades", ",".join(ids), "--orders", account]
            one = Consumer(tmp_path, "one", nats_server.url, *args)
            two = Consumer(tmp_path, "two", nats_server.url, *args)
            processes += [one.process, two.process]
            # (a Subscribed marker is the client's own, before any answer: wait for events instead)
            sim.place_order(account, ids[0], OrderDirection.ORDER_DIRECTION_BUY, 1)
            for consumer in (one, two):
                wait_until(lambda c=consumer: c.subscribed("books", "trades", "orders"), START, "subscribed")
                for src in ("books", "trades"):
                    wait_until(
                        lambda c=consumer, s=src: set(by_uid(c.events(s))) == set(uids), 10, f"{src} of both"
                    )
            wait_until(lambda: upstream(sim, mine)[1], 10, "the order states upstream")

            # Both consumers hold every topic: the gateway holds each once upstream.
            market, accounts = upstream(sim, mine)
            for uid in uids:
                assert market[trades_key(uid)] == 1, market
                assert [market[k] for k in books_keys(market, uid, 10)] == [1], market
            assert sum(market.values()) == 2 * len(uids), market  # nothing else
            listed = [  # getMySubscriptions of the gateway's connections says the same (a still moment)
                entry
                for info in sim.connections()
                if info.id not in mine and info.stream is Stream.MARKET_DATA
                for response in sim.my_subscriptions(info.id)
                for field in response.__attrs_attrs__
                if field.name.endswith("_subscriptions")
                for entry in getattr(response, field.name)
            ]
            assert len(listed) == 2 * len(uids), listed
            assert accounts == Counter({(Stream.ORDER_STATE.value, account): 1}), accounts

            ours: list[str] = []
            for k in range(6):  # order states of our own, beside the simulator's trader
                direction = (
                    OrderDirection.ORDER_DIRECTION_BUY if k % 2 == 0 else OrderDirection.ORDER_DIRECTION_SELL
                )
                ours.append(sim.place_order(account, ids[k % 2], direction, 1).order_id)
                time.sleep(0.4)

            def of_ours(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [e for e in events if e["orderId"] in ours]

            wait_until(
                lambda: (
                    len(of_ours(orders.events)) >= 12
                    and all(of_ours(c.events("orders")) == of_ours(orders.events) for c in (one, two))
                ),
                10,
                "every state of our orders at both consumers",
            )
            assert upstream(sim, mine) == (market, accounts)  # still one each, nothing added
            one.stop()
            two.stop()
            time.sleep(1.0)  # what the consumers received last reaches the direct client too
            for sub in subs:
                sub.dispose()
        stop_gateway(gateway, tmp_path)

    assert not trades.errors and not orders.errors
    for consumer in (one, two):
        for src in ("books", "trades", "orders"):
            assert consumer.markers(src) == ["Subscribed"], (consumer.out, src, consumer.markers(src))
        assert len(consumer.events("books")) >= 10
    direct_trades = by_uid(trades.events)
    spans: dict[str, list[tuple[int, int]]] = {}
    for consumer in (one, two):
        got = by_uid(consumer.events("trades"))
        assert set(got) == set(uids)
        for uid in uids:
            part, whole = got[uid], direct_trades[uid]
            assert len(part) >= 5, (uid, len(part))
            start = slice_of(part, whole)
            assert start is not None, mismatch(part, whole)
            spans.setdefault(uid, []).append((start, start + len(part)))
        part = consumer.events("orders")
        assert slice_of(part, orders.events) is not None, mismatch(part, orders.events)
    for uid, ((a1, b1), (a2, b2)) in spans.items():
        # ran side by side: the two windows overlap on most of their events
        overlap = min(b1, b2) - max(a1, a2)
        assert overlap >= 0.8 * min(b1 - a1, b2 - a2), (uid, spans[uid])
    # Both had every state of our own orders before they stopped (each stopped at its own moment
    # while the simulator's trader went on, so their last events may differ).
    for consumer in (one, two):
        theirs = of_ours(consumer.events("orders"))
        assert theirs == of_ours(orders.events), mismatch(theirs, orders.events)


def test_a_killed_consumer_releases_its_demand_after_its_lease(
    tmp_path: Path, nats_server: NatsServer, processes: list[subprocess.Popen[bytes]]
) -> None:
    with serve(seed=8, trader=False) as sim:
        sber, gazp = sim.index["SBER_TQBR"].uid, sim.index["GAZP_TQBR"].uid
        gateway = start_gateway(tmp_path, nats_server, sim)
        processes.append(gateway)
        both = Consumer(tmp_path, "both", nats_server.url, "--trades", "SBER_TQBR,GAZP_TQBR")
        only = Consumer(tmp_path, "only", nats_server.url, "--trades", "SBER_TQBR")
        processes += [both.process, only.process]
        for consumer, uids in ((both, {sber, gazp}), (only, {sber})):
            wait_until(lambda c=consumer: c.subscribed("trades"), START, "subscribed")
            wait_until(lambda c=consumer, u=uids: set(by_uid(c.events("trades"))) == u, 10, "trades")
        market, _ = upstream(sim, set())
        assert market[trades_key(sber)] == 1 and market[trades_key(gazp)] == 1, market

        # The consumer holding GAZP alone is killed: GAZP goes after its lease, SBER stays.
        both.kill()
        killed = time.monotonic()
        while upstream(sim, set())[0][trades_key(gazp)]:
            assert upstream(sim, set())[0][trades_key(sber)] == 1
            assert time.monotonic() - killed < LEASE + GRACE + 4, (
                "GAZP still held upstream long after the lease"
            )
            time.sleep(0.05)
        released = time.monotonic() - killed
        assert released >= LEASE * 0.5, f"released {released:.2f} s after a silent kill: not by the lease"
        seen = len(only.events("trades"))
        time.sleep(LEASE + 1)  # another lease: the survivor's renewals keep SBER held
        market, _ = upstream(sim, set())
        assert market[trades_key(sber)] == 1 and market[trades_key(gazp)] == 0, market
        assert len(only.events("trades")) > seen, "the survivor's trades stopped"

        # The last consumer is killed: nothing is held upstream after the lease.
        only.kill()
        killed = time.monotonic()
        wait_until(lambda: not upstream(sim, set())[0], LEASE + GRACE + 4, "SBER released upstream")
        released = time.monotonic() - killed
        assert released >= LEASE * 0.5, f"released {released:.2f} s after a silent kill: not by the lease"
        stop_gateway(gateway, tmp_path)
    assert "Gap" not in only.markers("trades")


def identity(event: dict[str, Any]) -> tuple[str, str, int]:
    return (event["orderId"], event["executionReportStatus"], int(event.get("lotsExecuted", 0)))


@pytest.mark.parametrize("pause", [0.2, GRACE + 1.5], ids=["within-grace", "beyond-grace"])
def test_a_consumer_restarted_under_its_name_resumes_its_order_states(
    tmp_path: Path, nats_server: NatsServer, processes: list[subprocess.Popen[bytes]], pause: float
) -> None:
    """Within the gateway's release grace its upstream stream goes on: B gets exactly what A did not.
    Beyond it the gateway resumes from the last event published and fills from the unary API,
    which knows each order's latest state only: intermediate states of orders that moved on in
    the pause may be missing, nothing else, nothing twice, and every order ends as the broker says."""
    with serve(seed=9, trader=False) as sim:
        account = sim.accounts[0]
        with rxinvest.connect(sim.token, target=sim.base_url, rest_url=sim.rest_url) as direct:
            truth = Recorder()
            sub = direct.orders.order_states(account).with_markers().subscribe(truth.on_next, truth.on_error)
            wait_until(truth.subscribed, 10, "the direct client")
            wait_until(lambda: any(info.accounts for info in sim.connections()), 10, "the direct grant")
            mine = {info.id for info in sim.connections()}
            gateway = start_gateway(tmp_path, nats_server, sim)
            processes.append(gateway)
            first = Consumer(tmp_path, "first", nats_server.url, "--orders", account, name="r")
            processes.append(first.process)
            wait_until(lambda: first.subscribed("orders"), START, "the first consumer subscribed")
            wait_until(lambda: upstream(sim, mine)[1], 10, "the gateway's order states upstream")

            placed: list[str] = []
            stop = threading.Event()

            def place() -> None:  # market orders (NEW, then FILL at the next step) all along
                k = 0
                while not stop.is_set():
                    direction = (
                        OrderDirection.ORDER_DIRECTION_BUY if k % 3 else OrderDirection.ORDER_DIRECTION_SELL
                    )
                    placed.append(sim.place_order(account, "SBER_TQBR", direction, 1).order_id)
                    k += 1
                    stop.wait(0.15)

            placer = threading.Thread(target=place, daemon=True)
            placer.start()
            second = Consumer(tmp_path, "second", nats_server.url, "--orders", account, name="r", go=True)
            processes.append(second.process)
            try:
                wait_until(
                    lambda: len(first.events("orders")) >= 10, 10, "order states at the first consumer"
                )
                wait_until(lambda: second.records(), START, "the second consumer to wait")
                first.stop()  # mid-run: orders go on
                time.sleep(pause)
                second.go_file.touch()
                wait_until(lambda: second.subscribed("orders"), START, "the second consumer subscribed")
                after = len(placed) + 5  # orders placed once the second consumer is in: live ones
                wait_until(
                    lambda: any(e["orderId"] in placed[after:] for e in second.events("orders")),
                    10,
                    "live order states after the restart",
                )
            finally:
                stop.set()
                placer.join(5)
            wait_until(lambda: not sim.broker.active_orders(account), 10, "every order filled")

            def settled() -> bool:  # the direct client (the oracle) has every order's final state
                latest = {e["orderId"]: e["executionReportStatus"] for e in truth.snapshot()}
                final = {o: sim.broker.order(account, o).execution_report_status.name for o in placed}
                return all(latest.get(o) == status for o, status in final.items())

            # The broker is done before the direct client has heard of it: wait for the oracle.
            wait_until(settled, 10, "the direct client's final states")
            expected = [e for e in truth.snapshot() if e["orderId"] in set(placed)]
            with contextlib.suppress(AssertionError):  # the comparison below says what is missing
                wait_until(
                    lambda: len(first.events("orders") + second.events("orders")) >= len(expected), 5, "all"
                )
            time.sleep(0.5)  # anything extra would show now
            second.stop()
            sub.dispose()
        stop_gateway(gateway, tmp_path)

    assert not truth.errors
    got = first.events("orders") + second.events("orders")
    ids = [e["orderId"] for e in got]
    assert set(ids) == set(placed)
    assert first.events("orders") == expected[: len(first.events("orders"))]
    if pause < GRACE:
        assert got == expected, mismatch(got, expected)
    else:
        assert len(set(map(identity, got))) == len(got), "an order state twice"
        assert set(map(identity, got)) <= set(map(identity, expected)), "an order state nobody sent"
        latest = {}
        for event in got:  # no order moves backwards
            key = (
                int(event.get("lotsExecuted", 0)),
                event["executionReportStatus"] != "EXECUTION_REPORT_STATUS_NEW",
            )
            assert key >= latest.get(event["orderId"], key), event
            latest[event["orderId"]] = key
        missing = [e for e in expected if identity(e) not in set(map(identity, got))]
        assert all(e["executionReportStatus"] == "EXECUTION_REPORT_STATUS_NEW" for e in missing), missing
        assert len(missing) < len(expected) // 2, missing  # the pause only
    for order_id in placed:  # and the last state of every order is the broker's
        final = canonical(sim.broker.order(account, order_id))
        last = [e for e in got if e["orderId"] == order_id][-1]
        assert (last["executionReportStatus"], last.get("lotsExecuted")) == (
            final["executionReportStatus"],
            final.get("lotsExecuted"),
        )
