"""End to end: how many events rxinvest delivers to a subscriber per second, and how late.

Run: ``.venv/bin/python benchmarks/e2e.py [--frames 20000] [--rounds 5] [--seconds 10]``.

Throughput: the simulator's burst mode sends N depth-20 books (or trades) as fast as it can. The
floor is a websocket-client ``recv()`` loop with ``orjson.loads`` of each frame (no typing, no
threads); rxinvest is ``connect()`` plus a subscriber that counts. Rounds alternate; reported are
medians and the ratio rxinvest / floor (goal: at least 0.6). A third reader, rxinvest recording
every frame to a file (``connect(record=...)``), runs in the same rounds: its cost is the rate lost
against plain rxinvest (goal: at most 10%). The rxinvest rate counts events handed
to the subscriber's mailbox while the burst lasts; "delivered/s" those its ``on_next`` received,
until the last (books are subscribed without conflation, so every one is delivered).

Latency: the simulator sends 2,000 trades a second, each stamped with its sending time; the
subscriber records ``now - trade.time``. Reported: 50th, 99th and 99.9th percentiles (goal: p99
under 2 ms), with the floor's latency (recv + orjson.loads) beside it.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
import websocket  # websocket-client
from bursts import IDS, WARMUP, request

import rxinvest
from rxinvest import model as m
from rxinvest.wire import Stream


class Server:
    """A simulator in its own process (so that it does not compete with the client for the GIL)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token

    def url(self, stream: str) -> str:
        return self.base_url + Stream.parse(stream).path


@contextmanager
def simulator(*faults: str) -> Iterator[Server]:
    command = [sys.executable, "-m", "rxinvest", "sim", "--port", "0", "--speed", "0.001"]
    command += [arg for fault in faults for arg in ("--fault", fault)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        match = re.search(r"(ws://\S+/ws/)", lines[0])
        if not match:
            raise SystemExit(f"the simulator did not start: {lines}")
        yield Server(match.group(1), lines[1].rsplit(" ", 1)[1].strip())
    finally:
        process.terminate()
        process.wait(10)


def connect_raw(sim: Server) -> websocket.WebSocket:
    """A bare websocket-client connection to the simulator's MarketDataStream."""
    return websocket.create_connection(
        sim.url("MarketDataStream"),
        header=[f"Authorization: Bearer {sim.token}"],
        subprotocols=["json"],
        skip_utf8_validation=True,
    )


def floor(sim: Server, kind: str, count: int) -> float:
    """Frames per second through recv() + orjson.loads, after a warm-up."""
    ws = connect_raw(sim)
    ws.send(request(kind))
    for _ in range(WARMUP):
        orjson.loads(ws.recv())
    started = time.perf_counter()
    for _ in range(count):
        orjson.loads(ws.recv())
    elapsed = time.perf_counter() - started
    ws.close()
    return count / elapsed


def rxinvest_rate(
    base_url: str, token: str, kind: str, count: int, record: str | None = None
) -> tuple[float, float]:
    """Events per second through rxinvest: (handed to the subscriber's mailbox, delivered to it).

    Books without conflation here, so that every book is delivered: the rate of the whole pipeline.
    With ``record``, every frame is also recorded to that file.
    """
    seen = [0]
    with rxinvest.connect(token, target=base_url, record=record) as client:
        md = client.market_data
        source = md.order_books(IDS, depth=20, conflate=False) if kind == "books" else md.trades(IDS)
        source.subscribe(lambda event: seen.__setitem__(0, seen[0] + 1))
        connection = getattr(client._market_data, "shards", [client._market_data])[0]  # before issue 9: one
        (box,) = {id(b): b for boxes in connection._mailboxes.values() for b in boxes}.values()
        deadline = time.monotonic() + 60
        while box.pushed < WARMUP and time.monotonic() < deadline:
            time.sleep(0.0005)
        started, seen_at_start = time.perf_counter(), seen[0]
        while box.pushed < WARMUP + count and time.monotonic() < deadline:
            time.sleep(0.0005)
        pushed_seconds = time.perf_counter() - started
        while box.backlog and time.monotonic() < deadline:  # let the subscriber finish
            time.sleep(0.0005)
        delivered_seconds = time.perf_counter() - started
        delivered = seen[0] - seen_at_start
    if box.pushed < WARMUP + count:
        raise SystemExit(f"{kind}: only {box.pushed} of {WARMUP + count} events arrived")
    return count / pushed_seconds, delivered / delivered_seconds


def throughput(count: int, rounds: int) -> None:
    print(f"throughput, {count} frames a round, {rounds} rounds (medians)")
    print(
        f"{'kind':<7} {'floor msg/s':>12} {'rxinvest msg/s':>15} {'ratio':>7} {'goal':>6} {'delivered/s':>12}"
        f" {'recording msg/s':>16} {'cost':>6} {'goal':>5}"
    )
    for kind in ("books", "trades"):
        # A generous cap: the burst must outlast every reader whatever they lag.
        with (
            simulator("burst=yes", f"burst_frames={(WARMUP + count) * 3}") as sim,
            tempfile.TemporaryDirectory() as tmp,
        ):
            floors, rates, delivered, recorded = [], [], [], []
            for round_ in range(rounds):
                floors.append(floor(sim, kind, count))
                # plain and recording alternate which goes first: the machine's speed drifts
                order = (None, f"{tmp}/e2e.jsonl.zst") if round_ % 2 == 0 else (f"{tmp}/e2e.jsonl.zst", None)
                for record in order:
                    rate, delivery = rxinvest_rate(sim.base_url, sim.token, kind, count, record)
                    if record is None:
                        rates.append(rate)
                        delivered.append(delivery)
                    else:
                        recorded.append(rate)
        f, r, d = statistics.median(floors), statistics.median(rates), statistics.median(delivered)
        rec = statistics.median(recorded)
        print(
            f"{kind:<7} {f:>12,.0f} {r:>15,.0f} {r / f:>6.2f}x {'0.6x':>6} {d:>12,.0f}"
            f" {rec:>16,.0f} {1 - rec / r:>6.1%} {'10%':>5}"
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(seconds: float, rate: float = 2000.0) -> None:
    count = int(seconds * rate)
    with simulator("burst=yes", f"burst_rate={rate}", f"burst_frames={count}") as sim:
        samples: list[float] = []
        done = threading.Event()

        def on_next(trade: m.Trade) -> None:
            samples.append((datetime.now(UTC) - trade.time).total_seconds() * 1e3)  # type: ignore[operator]
            if len(samples) >= count:
                done.set()

        with rxinvest.connect(sim.token, target=sim.base_url) as client:
            client.market_data.trades(IDS).subscribe(on_next)
            done.wait(seconds * 3 + 10)

        # The floor: the same paced stream read with recv() + orjson.loads, no typing, no threads.
        floor_samples = []
        ws = connect_raw(sim)
        ws.send(request("trades"))
        ws.recv()
        for _ in range(count):
            body = orjson.loads(ws.recv())
            sent = datetime.fromisoformat(body["trade"]["time"])
            floor_samples.append((datetime.now(UTC) - sent).total_seconds() * 1e3)
        ws.close()
    skip = int(rate)  # the first second warms up
    print(f"\nlatency at {rate:,.0f} trades/s for {seconds:.0f} s, server send to on_next, ms")
    print(f"{'':<10} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>7}")
    for name, values in (("floor", floor_samples[skip:]), ("rxinvest", samples[skip:])):
        print(
            f"{name:<10} {percentile(values, 0.5):>7.3f} {percentile(values, 0.99):>7.3f} "
            f"{percentile(values, 0.999):>7.3f} {max(values):>7.3f}"
        )
    print("goal: rxinvest p99 under 2 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    args = parser.parse_args()
    throughput(args.frames, args.rounds)
    if args.seconds > 0:
        latency(args.seconds)


if __name__ == "__main__":
    main()
