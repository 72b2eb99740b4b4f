"""Order books, derived: what changed between two snapshots, whether a book can be trusted, and its quote.

The T-Invest book stream sends full snapshots (up to the subscribed depth, at most every 100 ms, no
sequence numbers). rxinvest derives three kinds of events from them:

* :class:`BookDiff`: the level changes from one snapshot of a book (an instrument at one depth and
  book type) to the next. A level that left the visible depth because better levels pushed it out is
  ``OUT_OF_VIEW``, not ``REMOVE``; its mirror is ``INTO_VIEW``. ``reset=True`` marks a diff from an
  empty book (the first snapshot, or the first after a gap), so a consumer rebuilding the book starts
  afresh. A diff carries the snapshot's header (time, flags, limits), so diffs can be stored and
  turned back into the very snapshots (``fold.books.apply_diff``, ``ops.to_books``).
* :class:`BookHealth`: one event per change of an instrument's health (edge-triggered), naming the
  problems (:class:`BookProblem`) the book has now; an empty set is healthy.
* :class:`Quote`: top of book and microstructure measures of one snapshot, each formula stated on
  its field.

Prices are ``Decimal`` per unit, quantities in lots, times aware UTC.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import attrs

from rxinvest.model import OrderBookType, SecurityTradingStatus

__all__ = ["BookDiff", "BookHealth", "BookProblem", "ChangeKind", "LevelChange", "Quote", "Side"]


class Side(enum.Enum):
    BID = "bid"
    ASK = "ask"


class ChangeKind(enum.Enum):
    ADD = "add"  # a new price within the visible range (or on a side shorter than the depth)
    REMOVE = "remove"  # a price gone from within the visible range: its orders left
    UPDATE = "update"  # the same price, another quantity
    INTO_VIEW = "into_view"  # a price beyond the old worst level of a full side: it scrolled in
    OUT_OF_VIEW = "out_of_view"  # a price beyond the new worst level of a full side: pushed out


@attrs.frozen(kw_only=True)
class LevelChange:
    """One price level of one side that changed: ``old`` and ``new`` quantities in lots (0 where the
    level is absent: ``old`` for ADD and INTO_VIEW, ``new`` for REMOVE and OUT_OF_VIEW)."""

    side: Side
    price: Decimal
    old: int
    new: int
    kind: ChangeKind


@attrs.frozen(kw_only=True)
class BookDiff:
    """The changes from the previous snapshot of a book to this one, with this one's header.

    ``changes``: bids first, then asks, each side best to worst, each price once; empty (the shared
    ``()``) when the levels did not change. ``reset``: the previous book is empty (first snapshot, or
    the first after a gap): every level is an ADD. The header fields are the snapshot's (see
    :class:`~rxinvest.model.OrderBook`).
    """

    instrument_uid: str
    figi: str = ""
    ticker: str = ""
    class_code: str = ""
    depth: int
    order_book_type: OrderBookType = OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED
    time: datetime | None
    is_consistent: bool = True
    limit_up: Decimal | None = None
    limit_down: Decimal | None = None
    reset: bool = False
    changes: tuple[LevelChange, ...] = ()


class BookProblem(enum.Enum):
    NO_BOOK = "no_book"  # subscribed (or a gap) but no snapshot yet: the API sends one on change only
    CROSSED = "crossed"  # best bid > best ask
    LOCKED = "locked"  # best bid == best ask
    INCONSISTENT = "inconsistent"  # the snapshot says is_consistent=False: levels may be missing
    OUTSIDE_LIMITS = "outside_limits"  # a level priced below limit_down or above limit_up
    STALE = "stale"  # no snapshot for stale_after while the instrument trades
    RESET = "reset"  # a gap: the last book may be out of date until the next snapshot


@attrs.frozen(kw_only=True)
class BookHealth:
    """An instrument's book health changed: ``problems`` now (empty: healthy again).

    ``expected``: the problems are normal for the trading status (a crossed or locked book during an
    auction), so not a fault of the feed. ``trading_status`` is the one in force at the book's
    exchange time, as far as known (None if no status stream was given). ``time``: the snapshot's
    time, or the scheduler's for a timer or a gap.
    """

    instrument_uid: str
    time: datetime | None
    problems: frozenset[BookProblem]
    expected: bool = False
    trading_status: SecurityTradingStatus | None = None

    @property
    def healthy(self) -> bool:
        return not self.problems


@attrs.frozen(kw_only=True)
class Quote:
    """The top of one book snapshot and measures derived from it; None where a side is empty.

    * ``mid`` = (bid + ask) / 2; ``spread`` = ask - bid; ``spread_ticks`` = spread / ``increment``
      (the instrument's price step; None if not known). These three and ``microprice`` are
      computed when read (a quote is made per book; most are read for a few fields only).
    * ``microprice`` = (bid * ask_size + ask * bid_size) / (bid_size + ask_size): the mid weighted
      towards the side with less quantity (where the price is likelier to move); None if both are 0.
    * ``imbalance`` = (B - A) / (B + A) over the quantities of the best ``levels`` levels of each
      side (B bids, A asks), in [-1, 1]; positive: more to buy.
    * ``ofi``: order-flow imbalance against the previous snapshot of the instrument (Cont, Kukanov
      and Stoikov, 2014), in lots: e_bid - e_ask, where e_bid = bid_size if the bid rose, bid_size -
      previous bid_size if it stayed, - previous bid_size if it fell; e_ask mirrors it (a falling
      ask adds ask_size). None for the first snapshot and after a gap.
    """

    instrument_uid: str
    time: datetime | None
    bid: Decimal | None
    ask: Decimal | None
    bid_size: int
    ask_size: int
    imbalance: float | None
    levels: int
    ofi: int | None
    increment: Decimal | None = None

    @property
    def mid(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        return None if bid is None or ask is None else (bid + ask) / 2

    @property
    def spread(self) -> Decimal | None:
        bid, ask = self.bid, self.ask
        return None if bid is None or ask is None else ask - bid

    @property
    def spread_ticks(self) -> Decimal | None:
        spread = self.spread
        return None if spread is None or self.increment is None else spread / self.increment

    @property
    def microprice(self) -> Decimal | None:
        bid, ask, sizes = self.bid, self.ask, self.bid_size + self.ask_size
        if bid is None or ask is None or not sizes:
            return None
        return (bid * self.ask_size + ask * self.bid_size) / sizes
