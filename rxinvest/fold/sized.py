"""Tick and volume bars from trades, sans-I/O: the logic of ``ops.tick_bars`` and ``ops.volume_bars``.

Rules of this module:

1. **Per instrument.** Each instrument (``Trade.instrument_uid``) has its own bar, in the order its
   trades arrive; trades of other instruments never touch it. A bar's size counts arrivals, not
   exchange time, so no clock is needed: a bar closes the moment it is full (``THRESHOLD``), and
   :meth:`~TickBarFold.complete` flushes the partial ones (``COMPLETION``). Bars are emitted
   ``CLOSED`` only, with ``interval`` None.
2. **Times and prices.** ``start`` and ``end`` are the exchange times of the bar's earliest and
   latest trade: both included (unlike a time bar's ``[start, end)``), so a one-trade bar has
   ``start == end``. ``open`` is the price of the earliest trade, ``close`` of the latest (ties: the
   one that arrived first opens, the one that arrived last closes), as for time bars; in a tape that
   arrives in time order that is simply the first and the last trade of the bar.
3. **Tick bars** hold exactly ``n`` trades.
4. **Volume bars** hold exactly ``lots``. A trade that crosses the threshold is split: the part that
   fills the bar goes into it, the rest into the next bar (and, if the rest is ``lots`` or more, into
   as many further bars as it fills). Every part carries the trade's price, time and side, so buy
   and sell volume split the same way, and **a trade counts once in every bar it touches**: the
   ``trade_count`` of the bars can add up to more than the number of trades. A trade of zero lots
   joins the current bar (opening one if none is open) without filling it. All arithmetic is on
   integers, so nothing is lost to rounding: the volume of the bars is the volume of the trades,
   per side too. With ``split=False`` a trade is never split: the bar that it takes to ``lots`` or
   beyond closes holding all of it (it overshoots by less than that trade's quantity), and the next
   bar starts empty.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from rxinvest.derived import Bar, BarState, ClosedBy
from rxinvest.errors import ConfigurationError, DataIntegrityError
from rxinvest.fold.bars import Accumulator
from rxinvest.model import Trade

__all__ = ["TickBarFold", "VolumeBarFold"]


def _bar(run: Accumulator, why: ClosedBy) -> Bar:
    """A sized bar spans the exchange times of its earliest and latest trade, both included."""
    return run.to_bar(
        interval=None, start=run.open_at, end=run.close_at, state=BarState.CLOSED, closed_by=why
    )


def _size(value: object, what: str) -> int:
    """A bar size: an int of at least 1 (a bool is no size, though Python counts it as an int)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{what} must be an int of at least 1, not {value!r}")
    return value


class _SizedFold:
    """What tick and volume bars share: one open bar per instrument, and the flush."""

    def __init__(self) -> None:
        self._open: dict[str, Accumulator] = {}  # instrument uid -> its bar being built

    @staticmethod
    def _checked(trade: Trade) -> tuple[Decimal, datetime]:
        if trade.time is None or trade.price is None:
            raise DataIntegrityError(
                "a trade without time or price makes no bar", instrument=trade.instrument_uid
            )
        if trade.quantity < 0:
            raise DataIntegrityError(
                f"a trade of {trade.quantity} lots makes no bar", instrument=trade.instrument_uid
            )
        return trade.price, trade.time

    def _run(self, trade: Trade, price: Decimal, time: datetime) -> Accumulator:
        """The instrument's open bar, opened by this trade if none is."""
        run = self._open.get(trade.instrument_uid)
        if run is None:
            run = self._open[trade.instrument_uid] = Accumulator(trade, price, time)
        return run

    def complete(self) -> list[Bar]:
        """The source completed: every partial bar closes now (``COMPLETION``), and the fold is empty."""
        out = [_bar(run, ClosedBy.COMPLETION) for run in self._open.values()]
        self._open.clear()
        return out


class TickBarFold(_SizedFold):
    """Bars of exactly ``n`` trades per instrument (the rules at the top of the module). Not
    thread-safe: one per subscription. ConfigurationError unless ``n`` is an int of at least 1."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = _size(n, "a tick bar's trade count n")

    def trade(self, trade: Trade) -> list[Bar]:
        """One trade in; the bar it fills, if it does. DataIntegrityError for a trade without time
        or price, or of a negative quantity."""
        price, time = self._checked(trade)
        run = self._run(trade, price, time)
        run.add(price, time, trade.quantity, trade.direction)
        if run.count < self.n:
            return []
        del self._open[trade.instrument_uid]
        return [_bar(run, ClosedBy.THRESHOLD)]


class VolumeBarFold(_SizedFold):
    """Bars of exactly ``lots`` lots per instrument, splitting the trades that cross (or, with
    ``split=False``, overshooting by them): the rules at the top of the module. Not thread-safe: one
    per subscription. ConfigurationError unless ``lots`` is an int of at least 1."""

    def __init__(self, lots: int, *, split: bool = True) -> None:
        super().__init__()
        self.lots = _size(lots, "a volume bar's size in lots")
        self.split = split

    def trade(self, trade: Trade) -> list[Bar]:
        """One trade in; the bars it fills (several, if it is larger than a bar). DataIntegrityError
        for a trade without time or price, or of a negative quantity."""
        price, time = self._checked(trade)
        uid, direction, rest = trade.instrument_uid, trade.direction, trade.quantity
        out: list[Bar] = []
        while True:
            run = self._run(trade, price, time)
            room = self.lots - run.volume
            if rest < room:  # it fits (an open bar always has room: a full one has closed)
                run.add(price, time, rest, direction)
                return out
            # It fills the bar: all of it without splitting (the overshoot of rule 4), else the part
            # that fits. A split leaves a rest of 0 when the trade fills the bar exactly; then no
            # next bar is opened, since the trade has nothing left to put in it.
            part = rest if not self.split else room
            run.add(price, time, part, direction)
            del self._open[uid]
            out.append(_bar(run, ClosedBy.THRESHOLD))
            rest -= part
            if rest == 0:
                return out
