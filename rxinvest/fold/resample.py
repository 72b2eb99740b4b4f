"""Resampling: bars (or the server's candles, as bars) to a larger interval, sans-I/O.

Rules of this module:

1. The target interval is a whole multiple of the source bars' (a ``timedelta``, or an API interval
   whose length is fixed, or WEEK/MONTH over bars of at most a day); a source bar that does not fit
   inside one target bucket is a DataIntegrityError.
2. Revisions replace: a ``FORMING`` or ``CORRECTED`` bar with the same instrument and start as one
   seen before replaces it, so repeated updates of one candle never add up. The target bar is the
   :func:`~rxinvest.fold.bars.merge` of the latest version of each of its parts.
3. A target bar closes when a part of a later target bucket of its instrument arrives (its source
   has moved on), when its last part (the one ending at its end) arrives closed, or at completion.
   It is emitted once as ``CLOSED``; a later change of one of its parts emits it again as
   ``CORRECTED``. Closed target bars
   are kept for corrections up to ``keep`` per instrument (the oldest forgotten first), so memory
   stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

import attrs

from rxinvest.derived import Bar, BarState, ClosedBy
from rxinvest.errors import DataIntegrityError
from rxinvest.fold.bars import Interval, bucket, merge

__all__ = ["ResampleFold"]


class ResampleFold:
    """Bars of many instruments in, bars of ``interval`` out (the rules at the top). One per
    subscription; not thread-safe."""

    def __init__(self, interval: Interval, *, keep: int = 8) -> None:
        bucket(datetime(1970, 1, 1, tzinfo=UTC), interval)  # refuses a bad interval now
        self.interval, self.keep = interval, keep
        # (instrument, target start) -> {part start -> latest version of the part}
        self._parts: dict[tuple[str, datetime], dict[datetime, Bar]] = {}
        self._closed: dict[str, OrderedDict[datetime, None]] = {}  # closed targets kept for corrections

    def bar(self, part: Bar) -> list[Bar]:
        start, end = bucket(part.start, self.interval)
        if part.end > end:
            raise DataIntegrityError(
                f"a bar [{part.start}, {part.end}) does not fit in one {self.interval} bar: "
                "resample to a multiple of its interval",
                instrument=part.instrument_uid,
            )
        uid = part.instrument_uid
        out: list[Bar] = []
        closed = self._closed.setdefault(uid, OrderedDict())
        # A part of a later target (even a forming one: its source moved on) closes the earlier ones.
        for other, other_start in [k for k in self._parts if k[0] == uid and k[1] < start]:
            if other_start not in closed:
                out.append(self._emit(other, other_start, BarState.CLOSED, ClosedBy.NEXT_TRADE))
        self._parts.setdefault((uid, start), {})[part.start] = part
        if start in closed:  # a part of a target already emitted: a correction
            out.append(self._emit(uid, start, BarState.CORRECTED, part.closed_by))
        elif part.end == end and part.state is not BarState.FORMING:
            out.append(self._emit(uid, start, BarState.CLOSED, part.closed_by))
        return out

    def complete(self) -> list[Bar]:
        return [
            self._emit(uid, start, BarState.CLOSED, ClosedBy.COMPLETION)
            for (uid, start) in list(self._parts)
            if start not in self._closed.get(uid, {})
        ]

    def _emit(self, uid: str, start: datetime, state: BarState, closed_by: ClosedBy | None) -> Bar:
        parts = self._parts[(uid, start)]
        ordered = [parts[key] for key in sorted(parts)]
        merged = ordered[0]
        for part in ordered[1:]:
            merged = merge(
                attrs.evolve(merged, end=part.start), part
            )  # no trades in between: nothing changes
        _, end = bucket(start, self.interval)
        closed = self._closed.setdefault(uid, OrderedDict())
        closed[start] = None
        while len(closed) > self.keep:  # bounded: the oldest closed target is forgotten
            forgotten, _ = closed.popitem(last=False)
            self._parts.pop((uid, forgotten), None)
        return attrs.evolve(
            merged, interval=self.interval, start=start, end=end, state=state, closed_by=closed_by
        )
