"""Events that rxinvest derives from the stream events, rather than receives: bars, book diffs, book
health, quotes, reconciliation events, and the markers (:mod:`rxinvest.derived.markers`) that make
every loss visible in-band.

Rules of this package:

* Plain frozen, slotted, keyword-only attrs classes, like :mod:`rxinvest.model`, with the same value
  conventions (money as ``Decimal``, instants as aware UTC ``datetime``), and free to use types the
  wire has no form for (``timedelta``, sets).
* The wire codec never reads this package (the import contract forbids it): a derived event is never
  sent or received, so adding one can never break decoding.
* It imports only :mod:`rxinvest.model` and :mod:`rxinvest.errors`; :mod:`rxinvest.fold` builds its
  events, :mod:`rxinvest.ops` and :mod:`rxinvest.streams` deliver them.
"""

from rxinvest.derived.bars import Bar, BarState, ClosedBy, LateTrade
from rxinvest.derived.books import BookDiff, BookHealth, BookProblem, ChangeKind, LevelChange, Quote, Side
from rxinvest.derived.markers import Gap, GapCause, Marker, Recovered, Refused, Subscribed
from rxinvest.derived.positions import CheckCause, CheckStatus, PositionCheck

__all__ = [
    "Bar",
    "BarState",
    "BookDiff",
    "BookHealth",
    "BookProblem",
    "ChangeKind",
    "CheckCause",
    "CheckStatus",
    "ClosedBy",
    "Gap",
    "GapCause",
    "LateTrade",
    "LevelChange",
    "Marker",
    "PositionCheck",
    "Quote",
    "Recovered",
    "Refused",
    "Side",
    "Subscribed",
]
