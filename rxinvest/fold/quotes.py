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
5. **Cost.** Three Decimal comparisons for OFI; ``mid``, ``spread``, ``spread_ticks`` and
   ``microprice`` are properties of the quote, computed when read; the sizes of the ``levels``
   levels are summed as ints.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from rxinvest.derived import Quote
from rxinvest.errors import ConfigurationError
from rxinvest.fold._make import positional
from rxinvest.model import OrderBook

__all__ = ["QuoteFold", "quote"]

#: ``Quote(...)`` positionally, at a third of the cost (see :mod:`rxinvest.fold._make`).
_make_quote = positional(
    Quote,
    (
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
    ),
)


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
    _check_levels(levels)
    if increment is not None:
        _check_increment(increment, book.instrument_uid)
    if previous is not None and previous.instrument_uid != book.instrument_uid:
        raise ConfigurationError(
            f"previous is a quote of {previous.instrument_uid!r}, not of {book.instrument_uid!r}"
        )
    return _quote(book, levels, increment, previous)


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
        made = self._previous[uid] = _quote(
            book, self.levels, self._increments.get(uid), self._previous.get(uid)
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


def _quote(book: OrderBook, levels: int, increment: Decimal | None, previous: Quote | None) -> Quote:
    bids, asks = book.bids, book.asks
    if bids:
        top = bids[0]
        bid, bid_size = top.price, top.quantity
        if bid is None:
            bid_size = 0
    else:
        bid, bid_size = None, 0
    if asks:
        top = asks[0]
        ask, ask_size = top.price, top.quantity
        if ask is None:
            ask_size = 0
    else:
        ask, ask_size = None, 0
    if bid is None or ask is None:
        return _make_quote(
            book.instrument_uid, book.time, bid, ask, bid_size, ask_size, None, levels, None, increment
        )
    # Rule 1: sizes of the best ``levels`` levels; the first is known already.
    buy, sell = bid_size, ask_size
    for level in bids[1:levels]:
        buy += level.quantity
    for level in asks[1:levels]:
        sell += level.quantity
    total = buy + sell
    ofi = None
    if previous is not None:
        before_bid, before_ask = previous.bid, previous.ask
        if before_bid is not None and before_ask is not None:
            if bid > before_bid:
                e_bid = bid_size
            elif bid == before_bid:
                e_bid = bid_size - previous.bid_size
            else:
                e_bid = -previous.bid_size
            if ask < before_ask:
                e_ask = ask_size
            elif ask == before_ask:
                e_ask = ask_size - previous.ask_size
            else:
                e_ask = -previous.ask_size
            ofi = e_bid - e_ask
    imbalance = (buy - sell) / total if total else None
    return _make_quote(
        book.instrument_uid, book.time, bid, ask, bid_size, ask_size, imbalance, levels, ofi, increment
    )
