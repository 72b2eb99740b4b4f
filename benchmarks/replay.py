"""Replay: how fast a recording plays back, what virtual time costs, how well scaled time keeps pace.

Run: ``.venv/bin/python benchmarks/replay.py [--frames 50000] [--rounds 5]``.

The recording: a simulator session of four instruments' trades and depth-20 books is recorded live
(``connect(record=...)``); its market-data frames are then laid out again, ``--frames`` of them, one
every 50 µs of recorded time, behind the recorded subscription and its answers (so the codec's
caches see the mix of a real session, not one frame over and over). Measured in the same rounds,
medians of ``--rounds``:

* **decode**: ``wire.decoder(stream)`` over the same frames, held in memory: the floor.
* **replay**: ``connect(replay=path)``, the recorded subscriptions, a subscriber per source that
  counts, and ``client.replay.run()`` as fast as possible: file reading and decompression, the
  codec, the session, markers, mailboxes and the virtual clock. Goal: throughput at least 0.8x
  decode's.
* **inline**: the same replay with a clock that does not keep virtual time (every hand-over runs at
  once, ``advance_to`` only sets the time): replay - inline is what virtual time costs a frame.
  Goal: at most 2 µs.
* **read**: :func:`rxinvest.replay.read` alone (decompress and parse the lines): part of replay.
* **read+decode**: ``read`` and ``decode`` of every received frame, nothing else (no session,
  routing, markers, mailboxes or subscribers): a floor, the best any replay from this file could
  do; decode / it is the highest replay / decode ratio within reach.
* **drift**: 6,000 frames spread over 60 s of recorded time replayed at ``speed=20`` (3 s of wall
  time): how late the last record was handed over against its wall schedule, and the worst any
  was. Goal: at most 5 ms per simulated minute.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reactivex.scheduler import ImmediateScheduler

import rxinvest
from rxinvest.replay import Frame, Header, Mark, MarkName, Player, ReplayScheduler, encode_line, read
from rxinvest.replay.compression import compression_of, compressor
from rxinvest.streams import Client
from rxinvest.wire import decoder

DEPTH = 20
STEP_NS = 50_000  # recorded time between two laid-out frames


def record_session(path: Path) -> list[str]:
    """A short live session of four instruments' trades and books; returns the instruments."""
    with rxinvest.connect(record=path, scheduler=ImmediateScheduler(), sim_options={"speed": 20.0}) as client:
        ids = [i.instrument_id for i in client.sim.instruments[:4]]
        enough = threading.Event()
        seen = [0]

        def count(_: Any) -> None:
            seen[0] += 1
            if seen[0] >= 2_000:
                enough.set()

        client.market_data.trades(ids).subscribe(count)
        client.market_data.order_books(ids, depth=DEPTH, conflate=False).subscribe(count)
        enough.wait(60)
    return ids


def lay_out(template: Path, path: Path, frames: int, step_ns: int) -> list[bytes]:
    """``frames`` market-data frames of ``template`` (cycled), ``step_ns`` apart, behind its
    subscription; returns the frames' bytes."""
    records = [r for r in read(template) if not isinstance(r, Header)]
    header = next(iter(read(template)))
    connected = next(r for r in records if isinstance(r, Mark) and r.name == MarkName.CONNECTED)
    market = [r for r in records if isinstance(r, Frame) and r.connection == connected.connection]
    answers = [r for r in market if r.sent or b"Response" in r.data[:40]]
    data = [r.data for r in market if not r.sent and b"Response" not in r.data[:40]]
    laid = [data[i % len(data)] for i in range(frames)]
    base = connected.time_ns + 1_000_000
    lines = [encode_line(header), encode_line(connected)]  # type: ignore[arg-type]
    lines += [encode_line(record) for record in answers]
    for n, frame in enumerate(laid):
        at = base + n * step_ns
        line = Frame(
            time_ns=at,
            connection=connected.connection,
            stream=connected.stream,
            sent=False,
            data=frame,
            received_ns=at,
        )
        lines.append(encode_line(line))
    end = base + frames * step_ns
    lines.append(encode_line(Mark(time_ns=end, connection=0, stream="", name=MarkName.END)))
    stream = compressor(compression_of(path))  # as the recorder would compress a file of that name
    Path(path).write_bytes(stream.compress(b"".join(lines)) + stream.finish())
    return laid


class Inline(ReplayScheduler):
    """A clock without virtual time: hand-overs run at once, advancing only sets the time."""

    def submit(self, action: Callable[[], Any]) -> None:
        action()

    def advance_to(self, time: Any) -> None:
        self._clock = self.to_datetime(time)


def replay_once(
    path: Path, ids: list[str], *, inline: bool = False, speed: float | None = None
) -> tuple[float, Any]:
    """One replay, subscribers counting; returns (seconds, stats)."""
    player = Player(path, speed=speed)
    if inline:
        player.scheduler = Inline(player.scheduler.now)
    client = Client(
        base_url="replay:/",
        token="replay",
        dialect=player.dialect,
        scheduler=player.scheduler,
        transport_factory=player,
        on_close=[player.drain],
        limits=rxinvest.Limits(requests=None, linger=0),
    )
    client.replay = player
    counted = [0]

    def count(_: Any) -> None:
        counted[0] += 1

    with client:
        client.market_data.trades(ids).subscribe(count)
        client.market_data.order_books(ids, depth=DEPTH, conflate=False).subscribe(count)
        began = time.perf_counter()
        stats = client.replay.run()
        seconds = time.perf_counter() - began
    assert stats.mismatches == 0, stats
    assert counted[0] >= stats.frames - 8, (stats, counted[0])  # the answers are not events
    return seconds, stats


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        template, path, slow = Path(tmp, "live.zst"), Path(tmp, "laid.zst"), Path(tmp, "minute.zst")
        ids = record_session(template)
        frames = lay_out(template, path, args.frames, STEP_NS)
        lay_out(template, slow, 6_000, 10_000_000)  # 60 s of recorded time
        decode = decoder("MarketDataStream")
        cases = ("decode", "replay", "inline", "read", "read+decode")
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            began = time.perf_counter()
            for frame in frames:
                decode(frame)
            times["decode"].append(time.perf_counter() - began)
            times["replay"].append(replay_once(path, ids)[0])
            times["inline"].append(replay_once(path, ids, inline=True)[0])
            began = time.perf_counter()
            for _record in read(path):
                pass
            times["read"].append(time.perf_counter() - began)
            began = time.perf_counter()
            for record in read(path):
                if type(record) is Frame and not record.sent:
                    decode(record.data)
            times["read+decode"].append(time.perf_counter() - began)
        us = {name: statistics.median(values) / args.frames * 1e6 for name, values in times.items()}
        print(f"{args.frames:,} frames (trades and depth-{DEPTH} books), medians of {args.rounds} rounds")
        for name, value in us.items():
            print(f"  {name:<11} {value:>7.2f} µs a frame   {1e6 / value:>10,.0f} frames/s")
        print(f"\nreplay / decode throughput {us['decode'] / us['replay']:>6.2f}x   (goal >= 0.8x)")
        ceiling = us["decode"] / us["read+decode"]
        print(f"decode / (read+decode)     {ceiling:>6.2f}x   (the floor: replay cannot do better)")
        print(f"virtual time per frame     {us['replay'] - us['inline']:>6.2f} µs  (goal <= 2 µs)")
        drifts, worst = [], []
        for _ in range(3):
            seconds, stats = replay_once(slow, ids, speed=20.0)
            span = (stats.end - stats.start).total_seconds()
            drifts.append((seconds - span / 20.0) * 1000 / (span / 60))
            worst.append(stats.late_ms)
        late = statistics.median(drifts)
        print(
            f"scaled x20, 60 s recorded  {late:>6.2f} ms late at the end per simulated minute (goal <= 5 ms)"
        )
        print(f"                           worst lateness of one record {max(worst):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
