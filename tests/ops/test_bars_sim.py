"""``ops.to_bars`` over an hour of the simulator's trades, against an OHLCV oracle written here.

The simulator builds its own candles with ``fold.candles``; the oracle below shares no code with it
or with ``fold.bars``: buckets by integer arithmetic on epoch seconds, prices by sorting."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import rxinvest
from rxinvest import ops
from rxinvest.derived import Bar, BarState
from rxinvest.model import Candle, Trade
from rxinvest.sim import serve

WAIT = 60.0


def oracle(trades: list[Trade]) -> dict[tuple[str, datetime], tuple[object, ...]]:
    groups: dict[tuple[str, int], list[tuple[int, Trade]]] = defaultdict(list)
    for arrival, t in enumerate(trades):
        assert t.time is not None
        groups[(t.instrument_uid, int(t.time.timestamp()) // 60 * 60)].append((arrival, t))
    out = {}
    for (uid, minute), members in groups.items():
        ordered = sorted(members, key=lambda pair: (pair[1].time, pair[0]))
        prices = [t.price for _, t in members]
        out[(uid, datetime.fromtimestamp(minute, UTC))] = (
            ordered[0][1].price,
            max(prices),  # type: ignore[type-var]
            min(prices),  # type: ignore[type-var]
            ordered[-1][1].price,
            sum(t.quantity for _, t in members),
            len(members),
        )
    return out


def test_an_hour_of_simulated_trades_makes_the_oracle_bars() -> None:
    with serve(seed=3, manual=True, step=1.0, start=datetime(2025, 11, 21, 7, 0, tzinfo=UTC)) as sim:
        ids = [f"{i.ticker}_{i.class_code}" for i in sim.instruments[:10]]
        with rxinvest.connect(sim.token, target=sim.base_url) as client:
            trades: list[Trade] = []
            bars: list[Bar] = []
            done = threading.Event()
            # Two subscriptions of one source: the oracle's tape, and the bars (each gets its markers).
            source = client.market_data.trades(ids, backlog=None).with_markers()
            source.subscribe(lambda e: trades.append(e) if isinstance(e, Trade) else None)
            source.pipe(ops.to_bars(timedelta(minutes=1), grace=timedelta(hours=2))).subscribe(
                lambda b: bars.append(b) if isinstance(b, Bar) else None, on_completed=done.set
            )
            sim.wait_for(lambda s: any(c.subscriptions for c in s.connections()), timeout=WAIT)
            for _ in range(36):  # an hour, in 100-second strides
                sim.advance(100)
            last = sim.market.now
            sim.wait_for(
                lambda s: (
                    bool(trades)
                    and trades[-1].time is not None
                    and trades[-1].time >= last - timedelta(seconds=30)
                ),
                timeout=WAIT,
            )
        assert done.wait(WAIT)  # closing the client completes the source: the open bars are flushed
    expected = oracle([t for t in trades if t.quantity])
    got = {(b.instrument_uid, b.start): b for b in bars if b.state is not BarState.FORMING}
    assert len({uid for uid, _ in expected}) == 10
    assert len(expected) > 300  # most instruments trade most minutes
    assert {
        key: (b.open, b.high, b.low, b.close, b.volume, b.trade_count) for key, b in got.items()
    } == expected


def test_closed_candles_of_an_hour_give_each_minute_once() -> None:
    """The simulator's 1-minute candles (forming updates, closes, corrective ones) through
    ops.closed_candles: every (instrument, minute) that had a candle comes out CLOSED exactly once,
    with the last values the stream sent for it before it closed, or CORRECTED later."""
    with serve(seed=4, manual=True, step=1.0, start=datetime(2025, 11, 21, 7, 0, tzinfo=UTC)) as sim:
        ids = [f"{i.ticker}_{i.class_code}" for i in sim.instruments[:10]]
        with rxinvest.connect(sim.token, target=sim.base_url) as client:
            raw: list[Candle] = []
            closed: list[Bar] = []
            done = threading.Event()
            candles = client.market_data.candles(ids, "1m", backlog=None)
            candles.subscribe(raw.append)
            errors: list[Exception] = []
            candles.pipe(ops.closed_candles(grace=timedelta(hours=2))).subscribe(
                closed.append, errors.append, on_completed=done.set
            )
            sim.wait_for(lambda s: any(c.subscriptions for c in s.connections()), timeout=WAIT)
            for _ in range(36):
                sim.advance(100)
            last = sim.market.now - timedelta(minutes=1)
            sim.wait_for(lambda _: any(c.time is not None and c.time >= last for c in raw), timeout=WAIT)
        assert done.wait(WAIT), errors
    firsts = [b for b in closed if b.state is BarState.CLOSED]
    keys = [(b.instrument_uid, b.start) for b in firsts]
    assert len(keys) == len(set(keys))  # each minute once
    assert set(keys) == {(c.instrument_uid, c.time) for c in raw}
    assert len(set(keys)) > 300
    final: dict[tuple[str, datetime], Bar] = {}
    for bar in closed:
        final[(bar.instrument_uid, bar.start)] = bar
    latest = {(c.instrument_uid, c.time): (c.close, c.volume) for c in raw}  # the stream's last word per key
    assert {key: (b.close, b.volume) for key, b in final.items()} == latest
