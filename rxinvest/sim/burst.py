"""Burst mode, for benchmarks: pre-built market-data frames sent as fast as the socket takes them.

With the ``burst`` fault, a MarketDataStream connection that makes a subscription sends, instead of
its normal market data, frames built in advance by :class:`BurstFrames`: the books and trades of what
it subscribed, over some steps of a private copy of the market (same instruments and seed, so data of
the same kind and shape, never a stale view of the live market). :func:`send_burst` cycles through
them; ``burst_frames`` caps how many go out, and ``burst_rate`` paces them instead, each re-encoded
with the real time of its sending, so that a client can measure its delivery latency.

Rules: frames are built once per (books, trades, dialect, steps) and kept for the server's life; a
burst reads the connection's subscriptions and never changes them, the live market or the session.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import attrs
from websockets.asyncio.server import ServerConnection

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import Kind
from rxinvest.sim.instruments import InstrumentIndex
from rxinvest.sim.market import Market
from rxinvest.sim.subscriptions import SubscriptionBook
from rxinvest.wire import Stream, decode, encode

__all__ = ["BurstFrames", "burst_targets", "send_burst"]


class BurstFrames:
    """The burst frames of one server, built on first ask and kept."""

    def __init__(
        self, instruments: InstrumentIndex, *, seed: int, step: timedelta, emit_defaults: bool
    ) -> None:
        self._instruments = instruments
        self._seed = seed
        self._step = step
        self._emit_defaults = emit_defaults
        self._cache: dict[tuple[object, ...], list[str]] = {}

    def frames(
        self, *, start: datetime, books: Mapping[str, int], trades: Iterable[str], dialect: str, steps: int
    ) -> list[str]:
        """``books`` (instrument id -> depth) and ``trades`` (instrument ids) over ``steps`` steps of
        a market starting at ``start``, in ``dialect``. Cached without ``start``: the first ask's
        start stands. An unknown instrument id is a :class:`~rxinvest.errors.ConfigurationError`."""
        trades = tuple(trades)
        key = (tuple(sorted(books.items())), tuple(sorted(trades)), dialect, steps)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._build(start, books, trades, dialect, steps)
        return cached

    def _build(
        self, start: datetime, books: Mapping[str, int], trades: Iterable[str], dialect: str, steps: int
    ) -> list[str]:
        market = Market(self._instruments.instruments, seed=self._seed, start=start, step=self._step)
        depths = {self._uid(i): depth for i, depth in books.items()}
        traded = {self._uid(i) for i in trades}
        full = self._emit_defaults
        frames: list[str] = []
        for _ in range(steps):
            events = market.step()
            frames += [
                encode(t, dialect=dialect, include_defaults=full)
                for t in events.trades
                if t.instrument_uid in traded
            ]
            frames += [
                encode(market.book(uid, d), dialect=dialect, include_defaults=full)
                for uid, d in depths.items()
            ]
        return frames or [encode(m.Ping(time=market.now), dialect=dialect)]

    def _uid(self, instrument_id: str) -> str:
        instrument = self._instruments.get(instrument_id)
        if instrument is None:
            raise ConfigurationError(f"no instrument {instrument_id!r} in the simulator")
        return instrument.uid


def burst_targets(subscriptions: SubscriptionBook) -> tuple[dict[str, int], list[str]]:
    """What a burst sends for ``subscriptions``: the subscribed books (uid -> depth) and trades (uids)."""
    books = {sub.instrument.uid: sub.depth for sub in subscriptions.of(Kind.ORDER_BOOKS).values()}
    trades = [sub.instrument.uid for sub in subscriptions.of(Kind.TRADES).values()]
    return books, trades


async def send_burst(
    ws: ServerConnection,
    frames: list[str],
    *,
    limit: int | None,
    rate: float | None,
    dialect: str,
    emit_defaults: bool,
) -> None:
    """Send ``frames`` round and round: ``limit`` of them (None: until the socket closes), as fast as
    the socket takes them, or ``rate`` a second if given."""
    if rate:
        await _paced(ws, frames, rate, limit, dialect, emit_defaults)
        return
    for count, frame in enumerate(itertools.cycle(frames)):
        if limit is not None and count >= limit:
            break
        await ws.send(frame)


async def _paced(
    ws: ServerConnection, frames: list[str], rate: float, limit: int | None, dialect: str, emit_defaults: bool
) -> None:
    """``rate`` frames a second, each re-encoded with the real time of its sending."""
    events = [decode(frame, stream=Stream.MARKET_DATA) for frame in frames]
    started, sent = time.monotonic(), 0
    while limit is None or sent < limit:
        due = int((time.monotonic() - started) * rate) + 1
        while sent < due and (limit is None or sent < limit):
            event = attrs.evolve(events[sent % len(events)], time=datetime.now(UTC))
            await ws.send(encode(event, dialect=dialect, include_defaults=emit_defaults))
            sent += 1
        await asyncio.sleep(0.0005)
