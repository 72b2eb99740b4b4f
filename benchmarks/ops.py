"""Operators against their floors: what ``ops.to_bars`` costs per trade, in one run.

Run: ``.venv/bin/python benchmarks/ops.py [--trades 20000] [--rounds 7]``.

Per trade, medians of interleaved rounds over one tape (4 instruments, one-second steps):

* F: a bare OHLCV fold, a dict of lists updated in a plain loop (no types, no rules): the floor;
* R: one RxPY ``Subject`` hop to a subscriber that does nothing;
* fold: :class:`rxinvest.fold.bars.BarFold` alone (goal: at most 1 µs a trade);
* P: ``Subject -> ops.to_bars(1 min) -> subscriber``, closed bars (goal: P <= 1.5 x (F + R));
* P updates: the same with ``emit="updates"`` (reported, no goal).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from reactivex.scheduler import CurrentThreadScheduler
from reactivex.subject import Subject

from rxinvest import ops
from rxinvest.fold.bars import BarFold
from rxinvest.model import Trade, TradeDirection

T0 = datetime(2025, 11, 21, 7, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def tape(count: int) -> list[Trade]:
    return [
        Trade(
            instrument_uid=f"U{i % 4}",
            price=Decimal(100 + (i * 7) % 13),
            quantity=1 + i % 5,
            direction=TradeDirection.TRADE_DIRECTION_BUY if i % 2 else TradeDirection.TRADE_DIRECTION_SELL,
            time=T0 + timedelta(seconds=i // 4),
        )
        for i in range(count)
    ]


def floor(trades: list[Trade]) -> None:
    bars: dict[tuple[str, int], list[object]] = {}
    for t in trades:
        assert t.time is not None
        key = (t.instrument_uid, int(t.time.timestamp()) // 60)
        bar = bars.get(key)
        if bar is None:
            bars[key] = [t.price, t.price, t.price, t.price, t.quantity]
        else:
            bar[1] = max(bar[1], t.price)  # type: ignore[type-var]
            bar[2] = min(bar[2], t.price)  # type: ignore[type-var]
            bar[3] = t.price
            bar[4] += t.quantity  # type: ignore[operator]


def hop(trades: list[Trade]) -> None:
    subject: Subject[Trade] = Subject()
    subject.subscribe(lambda _: None)
    for t in trades:
        subject.on_next(t)


def fold(trades: list[Trade]) -> None:
    bars = BarFold(MINUTE, grace=timedelta(seconds=1))
    for t in trades:
        assert t.time is not None
        bars.trade(t, t.time)


def pipeline(emit: str) -> Callable[[list[Trade]], None]:
    def run(trades: list[Trade]) -> None:
        subject: Subject[Trade] = Subject()
        clock = _TapeClock()
        subject.pipe(ops.to_bars(MINUTE, emit=emit, markers=False, scheduler=clock)).subscribe(lambda _: None)
        for t in trades:
            assert t.time is not None
            clock.at = t.time
            subject.on_next(t)

    return run


class _TapeClock(CurrentThreadScheduler):
    """A scheduler whose ``now`` is the tape's time: the timer never fires (the next trade closes
    each bar first), so the benchmark measures the per-trade path."""

    at = T0

    @property
    def now(self) -> datetime:
        return self.at

    def schedule_absolute(self, duetime, action, state=None):  # type: ignore[no-untyped-def, override]
        from reactivex.disposable import Disposable

        return Disposable()


def per_trade_us(function: Callable[[list[Trade]], None], trades: list[Trade]) -> float:
    start = time.perf_counter()
    function(trades)
    return (time.perf_counter() - start) / len(trades) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    trades = tape(args.trades)
    cases: dict[str, Callable[[list[Trade]], None]] = {
        "F (bare fold)": floor,
        "R (Subject hop)": hop,
        "fold (BarFold)": fold,
        "P (to_bars)": pipeline("closed"),
        "P updates": pipeline("updates"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, function in cases.items():  # interleaved: the machine's drift hits every case alike
            samples[name].append(per_trade_us(function, trades))
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"per trade, medians of {args.rounds} rounds over {args.trades} trades")
    print(f"{'case':<18} {'µs':>8}")
    for name, value in med.items():
        print(f"{name:<18} {value:>8.2f}")
    goal = 1.5 * (med["F (bare fold)"] + med["R (Subject hop)"])
    print(f"\nP / (F + R)        {med['P (to_bars)'] / (goal / 1.5):>8.2f}x   (goal <= 1.5x)")
    print(f"fold per trade     {med['fold (BarFold)']:>8.2f} µs (goal <= 1 µs)")


if __name__ == "__main__":
    main()
