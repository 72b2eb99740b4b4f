"""The server's candle stream as closed bars, sans-I/O: the logic of ``ops.closed_candles``.

A candle subscription with ``waiting_close=False`` repeats the forming candle as it changes, never
says that a candle has closed, and may send corrective candles after the close. This module turns
that into events a consumer can trust. Rules:

1. **Keys.** A candle is identified by (``instrument_uid``, ``interval``, ``time``,
   ``candle_source_type``): its *series* is the key without ``time``. Its values are
   open/high/low/close, ``volume``, ``volume_buy`` and ``volume_sell``; two candles with the same
   values are the same candle (``last_trade_ts``, names and class code are not compared). The
   emitted bars carry the source (``Bar.candle_source_type``), so series stay apart downstream.
2. **Forming.** The latest key of a series is pending: each update of it replaces the pending value
   (updates never add up), and an update equal to it changes nothing.
3. **Closing.** The pending key closes, and is emitted once as a ``CLOSED`` :class:`Bar` with its
   latest values, when the first of these happens: a candle of a later ``time`` of its series arrives
   (``SERVER``); the exchange clock reaches ``end + grace`` (``TIMER``; ``end`` is the end of the
   candle's interval, from :func:`~rxinvest.fold.candles.interval_end`, so a key closes at exactly
   ``end + grace``, not before); the source completes (``COMPLETION``). A candle of an earlier
   ``time`` than the series' latest, never seen before, is emitted ``CLOSED`` (``SERVER``) at once:
   a later key exists, so it is not forming.
4. **Corrections.** A candle of a closed key whose values differ from the last ones emitted for that
   key is emitted as ``CORRECTED`` (keeping the key's ``closed_by``); one with the same values
   changes nothing.
5. **Horizon.** To keep memory bounded, each series remembers only its ``horizon`` latest closed keys
   (by ``time``; 16 by default: a quarter of an hour of minute candles). A candle older than all of
   them when all ``horizon`` are held may belong to a key that closed and was forgotten: it cannot be
   compared, so it is emitted as ``CORRECTED`` unchecked (a consumer that replaces by key is
   unaffected if it was not new) and counted in :attr:`ClosedCandles.unchecked`. Within the horizon
   each key is emitted ``CLOSED`` exactly once; beyond it, at most once.
6. **The clock** is the exchange's, passed in (``now_exchange``): the caller estimates it (as
   :class:`~rxinvest.fold.bars.BarFold` does from trades) or reads it from a scheduler.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeAlias

import attrs

from rxinvest.derived import Bar, BarState, ClosedBy
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.candles import interval_end
from rxinvest.model import Candle, CandleSource, SubscriptionInterval
from rxinvest.model.kinds import INTERVAL_LENGTH

__all__ = ["ClosedCandles"]

#: (instrument_uid, interval, candle_source_type): the candles of one subscription, one per time.
_Series: TypeAlias = tuple[str, SubscriptionInterval, CandleSource]
_Values: TypeAlias = tuple[Decimal, Decimal, Decimal, Decimal, int, int, int]


def _values(bar: Bar) -> _Values:
    """What a candle says (rule 1): what a correction must change."""
    return bar.open, bar.high, bar.low, bar.close, bar.volume, bar.volume_buy, bar.volume_sell


@attrs.define
class _State:
    """One series: its pending candle and the closed keys it still remembers."""

    latest: datetime  # the latest time of the series seen
    pending: Bar | None  # the FORMING bar of ``latest``, until it closes
    closed: dict[datetime, Bar] = attrs.field(factory=dict)  # time -> the key's last emitted version


class ClosedCandles:
    """Server candles in, each key once as a closed bar, then its corrections (the rules at the top
    of the module). ``grace`` (a ``timedelta`` of at least 0) is how long after its end a pending key
    waits, by the exchange clock; ``horizon`` (an int of at least 1) how many closed keys per series
    are remembered for corrections. Not thread-safe: one per subscription."""

    def __init__(self, *, grace: timedelta, horizon: int = 16) -> None:
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ConfigurationError(f"grace must be a timedelta of at least 0, not {grace!r}")
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ConfigurationError(f"horizon must be an int of at least 1, not {horizon!r}")
        self.grace, self.horizon = grace, horizon
        self._series: dict[_Series, _State] = {}
        self.unchecked = 0  # candles beyond the horizon, emitted as CORRECTED unchecked (rule 5)

    def candle(self, candle: Candle, now_exchange: datetime) -> list[Bar]:
        """One candle, received when the exchange clock says ``now_exchange``. DataIntegrityError
        for a candle without time or prices, or without an interval."""
        bar = self._bar(candle)
        series = (candle.instrument_uid, candle.interval, candle.candle_source_type)
        state = self._series.get(series)
        # The candle first, then the clock: a candle that arrives at the very moment its key's timer
        # would fire is the evidence, and the key closes with it.
        if state is None:
            self._series[series] = _State(latest=bar.start, pending=bar)
            return self.advance(now_exchange)
        return self._apply(state, bar) + self.advance(now_exchange)

    def _apply(self, state: _State, bar: Bar) -> list[Bar]:
        if state.pending is not None and bar.start == state.pending.start:
            state.pending = bar  # rule 2: a replacement; an equal one changes nothing
            return []
        if bar.start > state.latest:  # a later key: the pending one, if any, has closed
            out = [] if state.pending is None else [self._close(state, ClosedBy.SERVER)]
            state.latest, state.pending = bar.start, bar
            return out
        known = state.closed.get(bar.start)
        if known is not None:  # rule 4
            if _values(known) == _values(bar):
                return []
            corrected = attrs.evolve(bar, state=BarState.CORRECTED, closed_by=known.closed_by)
            state.closed[bar.start] = corrected
            return [corrected]
        if len(state.closed) < self.horizon or bar.start > min(state.closed):
            # Never seen: every key forgotten is older than every key remembered (rule 5).
            closed = attrs.evolve(bar, state=BarState.CLOSED, closed_by=ClosedBy.SERVER)
            self._remember(state, closed)
            return [closed]
        self.unchecked += 1
        return [attrs.evolve(bar, state=BarState.CORRECTED, closed_by=ClosedBy.SERVER)]

    def advance(self, now_exchange: datetime) -> list[Bar]:
        """The exchange clock says ``now_exchange``: close the pending keys whose ``end + grace`` it
        has reached."""
        return [
            self._close(state, ClosedBy.TIMER)
            for state in self._series.values()
            if state.pending is not None and now_exchange >= state.pending.end + self.grace
        ]

    def deadline(self) -> datetime | None:
        """The exchange time at which :meth:`advance` has something to close, or None."""
        ends = [state.pending.end for state in self._series.values() if state.pending is not None]
        return min(ends) + self.grace if ends else None

    def complete(self) -> list[Bar]:
        """The source completed: every pending key closes now."""
        return [
            self._close(state, ClosedBy.COMPLETION)
            for state in self._series.values()
            if state.pending is not None
        ]

    @staticmethod
    def _bar(candle: Candle) -> Bar:
        if candle.time is None or (
            candle.interval not in INTERVAL_LENGTH
            and candle.interval is not SubscriptionInterval.SUBSCRIPTION_INTERVAL_MONTH
        ):
            raise DataIntegrityError(
                f"a candle needs a time and an interval (time {candle.time}, {candle.interval.name})",
                instrument=candle.instrument_uid,
            )
        end = interval_end(candle.time, candle.interval)
        return Bar.from_candle(candle, end=end, state=BarState.FORMING, closed_by=None)

    def _close(self, state: _State, why: ClosedBy) -> Bar:
        assert state.pending is not None
        closed = attrs.evolve(state.pending, state=BarState.CLOSED, closed_by=why)
        state.pending = None
        self._remember(state, closed)
        return closed

    def _remember(self, state: _State, closed: Bar) -> None:
        state.closed[closed.start] = closed
        if len(state.closed) > self.horizon:
            del state.closed[min(state.closed)]  # the oldest goes: rule 5's order holds
