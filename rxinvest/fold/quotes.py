"""Quotes of order-book snapshots, sans-I/O: the logic of ``ops.quotes``.

Rules of this module:

1. **The formulas** are those stated on :class:`~rxinvest.derived.Quote`, computed on the snapshot's
   best level of each side (``bid``/``ask`` and their sizes) and, for ``imbalance``, on the best
   ``levels`` levels. Prices stay ``Decimal`` (``mid``, ``microprice`` and ``spread_ticks`` are
   divisions, exact to the 28 significant digits of the default context); ``imbalance`` is a float.
2. **Empty sides.** A side is empty when it has no level or its best level has no price; its price
   is None and its size 0. Every field that needs both sides (``mid``, ``spread``,
   ``spread_ticks``, ``microprice``, ``imbalance``, ``ofi``) is then None. ``microprice`` is None
   also when both best sizes are 0, ``imbalance`` when the ``levels`` levels hold no quantity.
3. **OFI** compares the top of the snapshot with ``previous``, the quote of the instrument's
   previous snapshot: None without one (the first snapshot, or after a gap), or when a side was or
   is empty. :class:`QuoteFold` keeps the previous quote per instrument and forgets it on a gap.
4. **Arguments** are checked where they are given: ``levels`` is a positive int and an increment
   positive (:class:`~rxinvest.errors.ConfigurationError` otherwise); ``previous`` must be of the
   same instrument.
5. **Cost.** About 0.8 µs a snapshot (``benchmarks/ops.py``), 0.25 µs of it making the ``Quote``.
   ``mid``, ``spread``, ``spread_ticks`` and ``microprice`` are properties of the quote, computed
   when read; ``imbalance`` and ``ofi`` are fields, computed here (a lazy field would not be one for
   ``attrs``: not compared, hashed or in ``asdict``). The sizes of the ``levels`` levels are summed
   as ints, unrolled for the default 5; OFI tries ``is`` before a Decimal comparison (the decoder
   interns prices, so an unchanged price is the very object). The quote is made by
   :func:`~rxinvest.fold._make.positional` (a sixth of the cost of ``Quote(...)``, as cheap as any
   object of ten slots). :meth:`QuoteFold.step` holds the formulas and :func:`quote` is a fold of
   one step: one Python call a book fewer than a shared helper (a call costs about 0.05 µs).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from rxinvest.derived import Quote
from rxinvest.errors import ConfigurationError
from rxinvest.fold._make import positional
from rxinvest.model import OrderBook

__all__ = ["QuoteFold", "quote"]

#: ``Quote``'s fields, in the order :meth:`QuoteFold.step` gives them.
_FIELDS = (
    "instrument_uid",
    "time",
    "bid",
    "ask",
    "bid_size",
    "ask_size",
    "imbalance",
    "levels",
    "ofi",
    "increment",
)
#: ``Quote(...)`` positionally, at a sixth of the cost (see :mod:`rxinvest.fold._make`).
_make_quote = positional(Quote, _FIELDS)


def quote(
    book: OrderBook,
    *,
    levels: int = 5,
    increment: Decimal | None = None,
    previous: Quote | None = None,
) -> Quote:
    """The quote of one snapshot (the rules at the top of the module). ``increment``: the
    instrument's price step, for ``spread_ticks``; ``previous``: the quote of the instrument's
    previous snapshot, for ``ofi``."""
    uid = book.instrument_uid
    fold = QuoteFold(levels, None if increment is None else {uid: increment})  # checks both
    if previous is not None:
        if previous.instrument_uid != uid:
            raise ConfigurationError(f"previous is a quote of {previous.instrument_uid!r}, not of {uid!r}")
        fold._previous[uid] = previous
    return fold.step(book)


class QuoteFold:
    """Snapshots of any number of instruments in, their quotes out, with OFI against each
    instrument's previous snapshot (rule 3). ``increments``: price steps by instrument uid, for
    ``spread_ticks``. Not thread-safe: one per subscription."""

    def __init__(self, levels: int = 5, increments: Mapping[str, Decimal] | None = None) -> None:
        _check_levels(levels)
        for uid, increment in (increments or {}).items():
            _check_increment(increment, uid)
        self.levels = levels
        self._increments: Mapping[str, Decimal] = increments or {}
        self._previous: dict[str, Quote] = {}

    def step(self, book: OrderBook) -> Quote:
        """The quote of one snapshot; it becomes its instrument's previous quote."""
        uid = book.instrument_uid
        quotes, levels = self._previous, self.levels
        previous = quotes.get(uid)
        bids, asks = book.bids, book.asks
        bid = ask = None
        bid_size = ask_size = 0
        if bids:
            top = bids[0]
            bid = top.price
            if bid is not None:
                bid_size = top.quantity
        if asks:
            top = asks[0]
            ask = top.price
            if ask is not None:
                ask_size = top.quantity
        imbalance = ofi = None
        if bid is not None and ask is not None:
            # Rule 1: sizes of the best ``levels`` levels; the first is known already. The default
            # depth is summed unrolled (a loop over a slice costs twice as much), and a side shorter
            # than 5 found by IndexError (free when not raised, unlike two ``len`` calls).
            sell: int | None = None
            if levels == 5:
                try:
                    buy = bid_size + bids[1].quantity + bids[2].quantity + bids[3].quantity + bids[4].quantity
                    sell = (
                        ask_size + asks[1].quantity + asks[2].quantity + asks[3].quantity + asks[4].quantity
                    )
                except IndexError:
                    sell = None
            if sell is None:
                buy, sell = bid_size, ask_size
                for level in bids[1:levels]:
                    buy += level.quantity
                for level in asks[1:levels]:
                    sell += level.quantity
            total = buy + sell
            if total:
                imbalance = (buy - sell) / total
            if previous is not None:
                before_bid, before_ask = previous.bid, previous.ask
                if before_bid is not None and before_ask is not None:
                    # Decoded prices are interned: an unchanged price is the very object (``is``
                    # first spares a Decimal comparison in the common case).
                    if bid is before_bid or bid == before_bid:
                        e_bid = bid_size - previous.bid_size
                    elif bid > before_bid:
                        e_bid = bid_size
                    else:
                        e_bid = -previous.bid_size
                    if ask is before_ask or ask == before_ask:
                        e_ask = ask_size - previous.ask_size
                    elif ask < before_ask:
                        e_ask = ask_size
                    else:
                        e_ask = -previous.ask_size
                    ofi = e_bid - e_ask
        increments = self._increments
        made = quotes[uid] = _make_quote(
            uid,
            book.time,
            bid,
            ask,
            bid_size,
            ask_size,
            imbalance,
            levels,
            ofi,
            increments.get(uid) if increments else None,
        )
        return made

    def gap(self, instrument_uid: str = "") -> None:
        """Snapshots of the instrument (``""``: of every instrument) may have been lost: its next
        quote has no OFI."""
        if instrument_uid:
            self._previous.pop(instrument_uid, None)
        else:
            self._previous.clear()


def _check_levels(levels: object) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ConfigurationError(f"levels must be a positive int, not {levels!r}")


def _check_increment(increment: object, uid: str) -> None:
    if not isinstance(increment, Decimal) or not increment.is_finite() or increment <= 0:
        raise ConfigurationError(
            f"the price increment of {uid!r} must be a positive Decimal, not {increment!r}"
        )
