"""Burst send rate of the simulator against a bare websockets server sending pre-serialized frames.

Run: ``.venv/bin/python benchmarks/sim_burst.py [--frames 20000] [--rounds 5]``. Both servers send the
same frames (depth-20 books, then trades, from the simulator's own market) to the same receiver, a
websocket-client loop in a second process (so it has the other core); rounds alternate between the
servers. Reported: medians over rounds of messages/s and MB/s, and the ratio bare / simulator.
Goal: the simulator within 1.5x of the bare server, so client benchmarks measure the client.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import websocket  # websocket-client
from bursts import IDS, WARMUP, request
from websockets.asyncio.server import serve as ws_serve
from websockets.typing import Subprotocol

from rxinvest.sim import Faults, serve


def receive(
    url: str, headers: list[str], subscribe: str | None, count: int, queue: multiprocessing.Queue
) -> None:
    """In a child process: read ``count`` frames after the warm-up; report (seconds, bytes)."""
    ws = websocket.create_connection(url, header=headers, subprotocols=["json"], skip_utf8_validation=True)
    if subscribe:
        ws.send(subscribe)
    for _ in range(WARMUP):
        ws.recv()
    received, started = 0, time.perf_counter()
    for _ in range(count):
        received += len(ws.recv())
    queue.put((time.perf_counter() - started, received))
    ws.close()


def measure(url: str, headers: list[str], subscribe: str | None, count: int) -> tuple[float, float]:
    """Messages/s and MB/s of one burst, timed by a receiver in another process."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=receive, args=(url, headers, subscribe, count, queue))
    child.start()
    seconds, size = queue.get(timeout=60)
    child.join(30)
    return count / seconds, size / seconds / 1e6


@contextmanager
def bare_server(frames: list[str], count: int) -> Iterator[str]:
    """A plain websockets server that sends ``frames`` round-robin, warm-up and ``count``, per connection."""
    ready, stop, address = threading.Event(), threading.Event(), []

    async def handler(connection) -> None:  # type: ignore[no-untyped-def]
        for i in range(count + WARMUP):
            await connection.send(frames[i % len(frames)])
        await connection.wait_closed()

    async def main() -> None:
        async with ws_serve(
            handler, "127.0.0.1", 0, compression=None, ping_interval=None, subprotocols=[Subprotocol("json")]
        ) as server:
            address.append(server.sockets[0].getsockname()[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"ws://127.0.0.1:{address[0]}/"
    finally:
        stop.set()
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames per burst")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count = args.frames
    columns = ("kind", "bytes", "bare msg/s", "sim msg/s", "bare MB/s", "sim MB/s", "bare/sim")
    widths = (6, 6, 11, 10, 10, 9, 9)
    print(
        " ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
    )
    for kind in ("books", "trades"):
        with serve(seed=1, manual=True, faults=Faults(burst=True, burst_frames=count + WARMUP)) as sim:
            headers = [f"Authorization: Bearer {sim.token}"]
            frames = (
                sim.burst_frames(books=dict.fromkeys(IDS, 20))
                if kind == "books"
                else sim.burst_frames(trades=IDS)
            )
            url = sim.url("MarketDataStream")
            results: dict[str, list[tuple[float, float]]] = {"bare": [], "sim": []}
            with bare_server(frames, count) as bare_url:
                for _ in range(args.rounds):
                    results["bare"].append(measure(bare_url, [], None, count))
                    results["sim"].append(measure(url, headers, request(kind), count))
        med = {
            k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v))
            for k, v in results.items()
        }
        size = statistics.mean(map(len, frames))
        (bare_rate, bare_mb), (sim_rate, sim_mb) = med["bare"], med["sim"]
        print(
            f"{kind:<6} {size:>6.0f} {bare_rate:>11,.0f} {sim_rate:>10,.0f} {bare_mb:>10.1f} "
            f"{sim_mb:>9.1f} {bare_rate / sim_rate:>8.2f}x"
        )
    print("\ngoal: bare/sim <= 1.5x")


if __name__ == "__main__":
    main()
