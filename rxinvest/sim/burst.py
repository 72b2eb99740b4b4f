"""Burst mode, for benchmarks: pre-built market-data frames sent as fast as the socket takes them.

With the ``burst`` fault, a MarketDataStream connection that makes a subscription sends, instead of
its normal market data, frames built in advance by :class:`BurstFrames`: the books and trades of what
it subscribed, over some steps of a private copy of the market (same instruments and seed, so data of
the same kind and shape, never a stale view of the live market). A :class:`Burst` cycles through
them; ``burst_frames`` caps how many go out, and ``burst_rate`` paces them instead, each re-encoded
with the real time of its sending, so that a client can measure its delivery latency.

Rules: frames are built once per (books, trades, dialect, steps) and kept for the server's life; a
burst reads the connection's subscriptions and never changes them, the live market or the session.
A subscription made while a burst runs joins it: the connection gives the burst the frames of all
its subscriptions (:meth:`Burst.retarget`), and the count of frames sent goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.model.kinds import Kind
from rxinvest.sim.instruments import InstrumentIndex
from rxinvest.sim.market import Market
from rxinvest.sim.subscriptions import SubscriptionBook
from rxinvest.wire import Stream, decode, encode

__all__ = ["Burst", "BurstFrames", "burst_targets"]

# A send that the socket takes at once never yields to the event loop, so a burst to a fast reader
# would keep the connection from reading its client's requests (a subscription made during the
# burst, say) until it ends: it yields after this many frames.
_YIELD_EVERY = 64


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


class Burst:
    """One connection's burst: ``frames`` round and round on ``ws``, ``limit`` of them (None: until
    the socket closes or :meth:`stop`), as fast as the socket takes them or ``rate`` a second.

    :meth:`run` sends, and lets the loop run other tasks every few frames; :meth:`retarget` and
    :meth:`stop` may be called while it runs (on the same loop), and take effect from the next
    frame. ``frames`` is never empty (:class:`BurstFrames` sends a ping when there is nothing to
    burst).
    """

    def __init__(
        self,
        ws: ServerConnection,
        frames: list[str],
        *,
        limit: int | None,
        rate: float | None,
        dialect: str,
        emit_defaults: bool,
    ) -> None:
        self.running = True
        self._ws = ws
        self._frames = frames
        self._limit = math.inf if limit is None else limit
        self._rate = rate
        self._dialect = dialect
        self._emit_defaults = emit_defaults
        self._changed = False  # frames replaced, or stopped: read once a frame in the fast loop
        self._stopped = False

    def retarget(self, frames: list[str]) -> None:
        """Cycle through ``frames`` from the next frame on; the count of frames sent goes on."""
        if frames is not self._frames:
            self._frames = frames
            self._changed = True

    def stop(self) -> None:
        """Send nothing more (once the frame being sent is out): not ``running`` from now."""
        self._stopped = self._changed = True
        self.running = False

    async def run(self) -> None:
        try:
            if self._rate:
                await self._paced(self._rate)
            else:
                await self._fast()
        except ConnectionClosed:
            pass
        finally:
            self.running = False

    async def _fast(self) -> None:
        limit, sent = self._limit, 0
        while sent < limit and not self._stopped:
            self._changed = False
            send = self._ws.send
            for frame in itertools.cycle(self._frames):
                if sent >= limit or self._changed:
                    break
                await send(frame)
                sent += 1
                if not sent % _YIELD_EVERY:
                    await asyncio.sleep(0)

    async def _paced(self, rate: float) -> None:
        """``rate`` frames a second, each re-encoded with the real time of its sending."""
        limit, sent, started = self._limit, 0, time.monotonic()
        frames: list[str] = []
        events: list[Any] = []
        while sent < limit and not self._stopped:
            if self._frames is not frames:
                frames = self._frames
                events = [decode(frame, stream=Stream.MARKET_DATA) for frame in frames]
            due = min(limit, int((time.monotonic() - started) * rate) + 1)
            while sent < due and not self._stopped:
                event = attrs.evolve(events[sent % len(events)], time=datetime.now(UTC))
                await self._ws.send(
                    encode(event, dialect=self._dialect, include_defaults=self._emit_defaults)
                )
                sent += 1
            await asyncio.sleep(0.0005)
