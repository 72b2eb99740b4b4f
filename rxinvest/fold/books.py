"""Order-book snapshots to diffs and back, sans-I/O: the logic of ``ops.book_diffs`` and ``ops.to_books``.

Rules of this module:

1. **Sides and order.** A book's ``bids`` are best (highest price) first, its ``asks`` best (lowest)
   first, each price at most once per side. A diff lists its changes bids first, then asks, each side
   best to worst, each price at most once per side. Prices are compared as ``Decimal`` values
   (``100.0`` and ``100`` are one price); quantities are lots.
2. **Kinds.** Per side, with ``D`` the depth of the book in question (``a.depth`` for the earlier
   book ``a``, ``b.depth`` for the later ``b``; a depth of 0 or less is unknown), a side is *full*
   when it has ``D`` or more levels; a side of unknown depth is never full.

   * a price in ``b`` only is ``INTO_VIEW`` if ``a``'s side was full and the price lies beyond its
     worst level (a bid lower than ``a``'s worst bid, an ask higher than its worst ask), else ``ADD``
     (``old`` = 0);
   * a price in ``a`` only is ``OUT_OF_VIEW`` if ``b``'s side is full and the price lies beyond
     ``b``'s worst level, else ``REMOVE`` (``new`` = 0);
   * a price in both with another quantity is ``UPDATE``; an equal quantity is no change.

   Crossed and locked books are diffed like any other: whether a book can be trusted is the business
   of book health, not of the diff.
3. **Reset.** A diff from no book (``a`` is None: the first snapshot of a key, or the first after a
   gap) is ``reset=True`` and lists every level of ``b`` as an ``ADD``. Applying a reset diff starts
   from an empty book, whatever book it is applied to.
4. **Header.** A diff carries the later snapshot's header (ids, depth, book type, time,
   ``is_consistent``, limits), so ``apply_diff(a, diff_books(a, b)) == b`` holds exactly, every field
   included. ``diff_books`` does not compare the two books' ids: keying books is the folds' job
   (rule 6).
5. **Integrity.** ``diff_books`` checks the later book ``b``: a level without a price, or a side
   whose prices are not strictly in order (best first, no price twice), is a ``BookIntegrityError``
   naming the instrument. The earlier book ``a`` is taken as checked, as it was when it was new: the
   check is part of the merge walk, and where ``b`` agrees with ``a`` level for level it inherits
   ``a``'s order, so only the prices of ``b`` that ``a`` has not are compared with their
   neighbours, and a side that is ``a``'s very tuple is not walked at all. A fold checks every book
   once, as it arrives (the first through a reset diff, which compares every level); to check a
   book of your own, diff it from None. A diff that does not fit the book it is applied to (removes
   or updates a price the book has not, or with an ``old`` quantity other than the book's, adds a
   price the book has, lists its changes out of order, or is not a reset while there is no book) is
   a ``BookIntegrityError`` too. A book or diff that a fold refuses is not kept: the next is taken
   against the last good one.
6. **Keys.** The folds keep one book per key: (``instrument_uid``, or ``figi`` when the uid is
   empty; ``depth``; ``order_book_type``). Books of different depth or type are never diffed against
   each other (a 5-level snapshot diffed against a 20-level one would remove and restore 15 levels
   on every switch). A gap forgets the books of an instrument, so its next snapshot gives a reset.
   Memory is bounded: one book per key.
7. **Cost.** An unchanged book allocates no ``LevelChange``: its diff's ``changes`` is the shared
   empty tuple ``()``. The diff is one merge walk over the two sorted level tuples (no dict, set or
   ``Decimal`` is built), O(levels) comparisons and one object per changed level. The wire decoder
   interns levels (one ``Order`` object per price and quantity while its cache holds it), so an
   unchanged level is usually the very object of the book before: an identity test passes it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeAlias

from rxinvest.derived import BookDiff, ChangeKind, LevelChange, Side
from rxinvest.errors import BookIntegrityError
from rxinvest.fold._make import positional
from rxinvest.model import Order, OrderBook, OrderBookType

__all__ = ["BookDiffFold", "BookKey", "BookRebuildFold", "apply_diff", "book_key", "diff_books"]

#: The key the folds keep one book under (rule 6): (instrument uid or figi, depth, book type).
BookKey: TypeAlias = tuple[str, int, OrderBookType]
Levels: TypeAlias = tuple[Order, ...]

_BID, _ASK = Side.BID, Side.ASK
_ADD, _REMOVE, _UPDATE = ChangeKind.ADD, ChangeKind.REMOVE, ChangeKind.UPDATE
_INTO, _OUT = ChangeKind.INTO_VIEW, ChangeKind.OUT_OF_VIEW
_INF, _NEG_INF = Decimal("Infinity"), Decimal("-Infinity")  # the sentinels "better than any price"


# Rule 7, the objects: made positionally, at a third of the cost of attrs' ``__init__`` (see
# :mod:`rxinvest.fold._make`).

#: ``LevelChange(side, price, old, new, kind)``.
_change = positional(LevelChange, ("side", "price", "old", "new", "kind"))
#: The header fields a diff copies from its snapshot (rule 4), followed by ``reset`` and ``changes``.
_HEADER = (
    "instrument_uid", "figi", "ticker", "class_code", "depth", "order_book_type", "time",
    "is_consistent", "limit_up", "limit_down",
)  # fmt: skip
_make_diff = positional(BookDiff, (*_HEADER, "reset", "changes"))


def _diff(book: OrderBook, reset: bool, changes: tuple[LevelChange, ...]) -> BookDiff:
    """``BookDiff`` with ``book``'s header (rule 4), ``reset`` and ``changes``."""
    return _make_diff(
        book.instrument_uid, book.figi, book.ticker, book.class_code, book.depth, book.order_book_type,
        book.time, book.is_consistent, book.limit_up, book.limit_down, reset, changes,
    )  # fmt: skip


def book_key(item: OrderBook | BookDiff) -> BookKey:
    """The key of a book or a diff (rule 6)."""
    return (item.instrument_uid or item.figi, item.depth, item.order_book_type)


def diff_books(a: OrderBook | None, b: OrderBook) -> BookDiff:
    """The changes from book ``a`` to book ``b`` (rules 1 to 4; ``a`` None: a reset diff).

    Prices per unit, quantities in lots. ``BookIntegrityError`` (naming ``b``'s instrument) for a
    level without a price or a side out of order (rule 5).
    """
    out: list[LevelChange] = []
    b_bids, b_asks = b.bids, b.asks
    if a is None:
        reset = True
        a_bids: Levels = ()
        a_asks: Levels = ()
        a_depth = 0
    else:
        reset = False
        a_bids, a_asks, a_depth = a.bids, a.asks, a.depth
    try:
        # The fast path: a side that is the very same tuple is not walked. An equal tuple is walked:
        # comparing two tuples of Orders (attrs __eq__, once per level) costs as much as the walk,
        # which checks the order and stops at nothing, and is wasted on a side that changed.
        # Rule 2: a side is full when it has at least its book's depth of levels (0 < depth <= len).
        if a_bids is not b_bids:
            _walk_bids(a_bids, b_bids, 0 < a_depth <= len(a_bids), 0 < b.depth <= len(b_bids), out)
        if a_asks is not b_asks:
            _walk_asks(a_asks, b_asks, 0 < a_depth <= len(a_asks), 0 < b.depth <= len(b_asks), out)
    except _Unsorted as bad:
        raise _integrity(
            bad.side, a_bids if bad.side is _BID else a_asks, b_bids if bad.side is _BID else b_asks, b
        ) from None
    except (TypeError, ArithmeticError) as error:  # None (or NaN) compared: a level without a price
        raise BookIntegrityError(
            f"a level of the book of {_name(b)} has no comparable price", instrument=_name(b)
        ) from error
    return _diff(b, reset, tuple(out) if out else ())


class _Unsorted(Exception):
    """Internal: the walk met a price not strictly worse than the one before it on ``side``."""

    def __init__(self, side: Side) -> None:
        self.side = side


def _name(book: OrderBook | BookDiff) -> str:
    return book.instrument_uid or book.figi


def _integrity(side: Side, a: Levels, b: Levels, book: OrderBook) -> BookIntegrityError:
    """The error for an unsorted side, saying which book (the earlier or the later) it is in."""
    for which, levels in (("later", b), ("earlier", a)):
        prices = [level.price for level in levels]
        for i in range(1, len(prices)):
            before, price = prices[i - 1], prices[i]
            if before is None or price is None:
                return BookIntegrityError(
                    f"a level of the {which} book of {_name(book)} has no price", instrument=_name(book)
                )
            if (price >= before) if side is _BID else (price <= before):
                return BookIntegrityError(
                    f"the {side.value}s of the {which} book of {_name(book)} are not strictly in order,"
                    f" best first: {price} after {before}",
                    instrument=_name(book),
                )
    return BookIntegrityError(f"the {side.value}s of {_name(book)} are out of order", instrument=_name(book))


# The two walks mirror each other (bids: better is higher; asks: better is lower). They are written
# out twice rather than parametrised by a comparison: this is the hot path, run for every level.
#
# A walk alternates two steps. An aligned run zips the two books from the current levels on for as
# long as their prices agree (most levels, in a feed of snapshots): only quantities can differ there.
# At the first price that differs, the better of the two is in one book only: it is emitted and the
# walk goes on with the next run. Rule 5: ``a`` is in order (it was checked when it was new), so the
# levels of ``b`` in a run are in order too, and need no comparison (a third of the walk's cost);
# every other price emitted, a price of one book only, must be strictly worse than the one emitted
# before it, which checks the rest of ``b``. Before one book is exhausted, a price of the other lies
# within its range; in the tail, once it is exhausted, beyond its worst level: only there can
# INTO_VIEW and OUT_OF_VIEW occur.
# Prices are ``Decimal | None`` to the type checker; a None fails a comparison with a TypeError, which
# diff_books turns into a BookIntegrityError (rule 5), so the walks hold prices as ``Any``.


def _walk_bids(a: Levels, b: Levels, a_full: bool, b_full: bool, out: list[LevelChange]) -> None:
    level_a: Any
    level_b: Any
    price: Any
    last: Any = _INF
    na, nb = len(a), len(b)
    i = j = 0
    while i < na and j < nb:
        run = 0
        for level_a, level_b in zip(a[i:] if i else a, b[j:] if j else b, strict=False):
            if level_a is level_b:  # the decoder interns levels: an unchanged one is the same object
                run += 1
                continue
            if level_a.price != level_b.price:
                break
            if level_a.quantity != level_b.quantity:
                out.append(_change(_BID, level_b.price, level_a.quantity, level_b.quantity, _UPDATE))
            run += 1
        if run:
            i += run
            j += run
            last = b[j - 1].price
        if i < na and j < nb:
            level_a, level_b = a[i], b[j]
            if level_a.price > level_b.price:  # in a only, within b's range
                price = level_a.price
                if not price < last:
                    raise _Unsorted(_BID)
                out.append(_change(_BID, price, level_a.quantity, 0, _REMOVE))
                i += 1
            else:  # in b only, within a's range
                price = level_b.price
                if not price < last:
                    raise _Unsorted(_BID)
                out.append(_change(_BID, price, 0, level_b.quantity, _ADD))
                j += 1
            last = price
    if i < na:
        kind = _OUT if b_full else _REMOVE
        for level in a[i:] if i else a:
            price = level.price
            if not price < last:
                raise _Unsorted(_BID)
            last = price
            out.append(_change(_BID, price, level.quantity, 0, kind))
    elif j < nb:
        kind = _INTO if a_full else _ADD
        for level in b[j:] if j else b:
            price = level.price
            if not price < last:
                raise _Unsorted(_BID)
            last = price
            out.append(_change(_BID, price, 0, level.quantity, kind))


def _walk_asks(a: Levels, b: Levels, a_full: bool, b_full: bool, out: list[LevelChange]) -> None:
    level_a: Any
    level_b: Any
    price: Any
    last: Any = _NEG_INF
    na, nb = len(a), len(b)
    i = j = 0
    while i < na and j < nb:
        run = 0
        for level_a, level_b in zip(a[i:] if i else a, b[j:] if j else b, strict=False):
            if level_a is level_b:  # the decoder interns levels: an unchanged one is the same object
                run += 1
                continue
            if level_a.price != level_b.price:
                break
            if level_a.quantity != level_b.quantity:
                out.append(_change(_ASK, level_b.price, level_a.quantity, level_b.quantity, _UPDATE))
            run += 1
        if run:
            i += run
            j += run
            last = b[j - 1].price
        if i < na and j < nb:
            level_a, level_b = a[i], b[j]
            if level_a.price < level_b.price:  # in a only, within b's range
                price = level_a.price
                if not price > last:
                    raise _Unsorted(_ASK)
                out.append(_change(_ASK, price, level_a.quantity, 0, _REMOVE))
                i += 1
            else:  # in b only, within a's range
                price = level_b.price
                if not price > last:
                    raise _Unsorted(_ASK)
                out.append(_change(_ASK, price, 0, level_b.quantity, _ADD))
                j += 1
            last = price
    if i < na:
        kind = _OUT if b_full else _REMOVE
        for level in a[i:] if i else a:
            price = level.price
            if not price > last:
                raise _Unsorted(_ASK)
            last = price
            out.append(_change(_ASK, price, level.quantity, 0, kind))
    elif j < nb:
        kind = _INTO if a_full else _ADD
        for level in b[j:] if j else b:
            price = level.price
            if not price > last:
                raise _Unsorted(_ASK)
            last = price
            out.append(_change(_ASK, price, 0, level.quantity, kind))


def apply_diff(book: OrderBook | None, diff: BookDiff) -> OrderBook:
    """The book ``diff`` leads to from ``book`` (from an empty book if ``diff.reset``; rules 3 and 4).

    Unchanged levels are ``book``'s own ``Order`` objects, new and updated ones
    ``Order(price=..., quantity=...)``; the header is the diff's. ``BookIntegrityError`` (naming the
    diff's instrument) for a diff that does not fit the book (rule 5).
    """
    if diff.reset:
        bids: Levels = ()
        asks: Levels = ()
    elif book is None:
        raise BookIntegrityError(
            f"a diff of {_name(diff)} that is not a reset needs the book it was made from",
            instrument=_name(diff),
        )
    else:
        bids, asks = book.bids, book.asks
    changes = diff.changes
    if changes:
        count, split = len(changes), 0
        while split < count and changes[split].side is _BID:
            split += 1
        try:
            if split:
                bids = _apply_bids(bids, changes[:split], diff)
            if split < count:
                asks = _apply_asks(asks, changes[split:], diff)
        except (TypeError, ArithmeticError) as error:
            raise BookIntegrityError(
                f"a level of the book of {_name(diff)} has no comparable price", instrument=_name(diff)
            ) from error
    return OrderBook(
        figi=diff.figi, depth=diff.depth, is_consistent=diff.is_consistent, bids=bids, asks=asks,
        time=diff.time, limit_up=diff.limit_up, limit_down=diff.limit_down,
        instrument_uid=diff.instrument_uid, order_book_type=diff.order_book_type, ticker=diff.ticker,
        class_code=diff.class_code,
    )  # fmt: skip


def _misfit(diff: BookDiff, change: LevelChange, why: str) -> BookIntegrityError:
    return BookIntegrityError(
        f"a diff of {_name(diff)} does not fit the book: {change.kind.value} {change.side.value}"
        f" {change.price} ({change.old} -> {change.new}) {why}",
        instrument=_name(diff),
    )


def _fit(level: Order, change: LevelChange, diff: BookDiff) -> Order | None:
    """A change at a price the book has: the level it leaves (None: removed)."""
    kind = change.kind
    if kind is _ADD or kind is _INTO:
        raise _misfit(diff, change, "but the book has that price")
    if change.old != level.quantity:
        raise _misfit(diff, change, f"but the book has {level.quantity} lots there")
    return Order(price=change.price, quantity=change.new) if kind is _UPDATE else None


def _new(change: LevelChange, diff: BookDiff) -> Order:
    """A change at a price the book has not: the level it adds."""
    kind = change.kind
    if kind is not _ADD and kind is not _INTO:
        raise _misfit(diff, change, "but the book has no such price")
    return Order(price=change.price, quantity=change.new)


def _apply_bids(levels: Levels, changes: tuple[LevelChange, ...], diff: BookDiff) -> Levels:
    out: list[Order] = []
    i, n = 0, len(levels)
    last = _INF
    for change in changes:
        price = change.price
        if not price < last:
            raise _misfit(diff, change, "out of order (bids best first, each price once)")
        last = price
        while i < n:
            held: Any = levels[i].price  # a None fails the comparison: rule 5
            if not held > price:
                break
            out.append(levels[i])
            i += 1
        if i < n and levels[i].price == price:
            kept = _fit(levels[i], change, diff)
            if kept is not None:
                out.append(kept)
            i += 1
        else:
            out.append(_new(change, diff))
    out.extend(levels[i:])
    return tuple(out)


def _apply_asks(levels: Levels, changes: tuple[LevelChange, ...], diff: BookDiff) -> Levels:
    out: list[Order] = []
    i, n = 0, len(levels)
    last = _NEG_INF
    for change in changes:
        if change.side is not _ASK:
            raise _misfit(diff, change, "after the asks (bids come first)")
        price = change.price
        if not price > last:
            raise _misfit(diff, change, "out of order (asks best first, each price once)")
        last = price
        while i < n:
            held: Any = levels[i].price  # a None fails the comparison: rule 5
            if not held < price:
                break
            out.append(levels[i])
            i += 1
        if i < n and levels[i].price == price:
            kept = _fit(levels[i], change, diff)
            if kept is not None:
                out.append(kept)
            i += 1
        else:
            out.append(_new(change, diff))
    out.extend(levels[i:])
    return tuple(out)


class BookDiffFold:
    """Snapshots in, diffs out: the state of one subscription of ``ops.book_diffs`` (rule 6).

    Keeps the last snapshot per key; not thread-safe.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[BookKey, OrderBook] = {}

    def step(self, book: OrderBook) -> BookDiff:
        """The diff from the last snapshot of ``book``'s key (a reset if none). ``BookIntegrityError``
        as :func:`diff_books`; a refused book is not kept."""
        key = (book.instrument_uid or book.figi, book.depth, book.order_book_type)
        diff = diff_books(self._last.get(key), book)
        self._last[key] = book
        return diff

    def gap(self, instrument_uid: str = "") -> None:
        """Forget the last books of an instrument (its uid, or its figi if its books have no uid), at
        every depth and type; of every instrument if ``instrument_uid`` is empty. The next snapshot of
        each gives a reset diff."""
        _forget(self._last, instrument_uid)

    def __len__(self) -> int:
        """How many books are kept (one per key)."""
        return len(self._last)


class BookRebuildFold:
    """Diffs in, snapshots out: the state of one subscription of ``ops.to_books`` (rule 6).

    Keeps the last book per key; not thread-safe.
    """

    __slots__ = ("_books",)

    def __init__(self) -> None:
        self._books: dict[BookKey, OrderBook] = {}

    def step(self, diff: BookDiff) -> OrderBook:
        """The book ``diff`` leads to from the last book of its key. ``BookIntegrityError`` for a diff
        that is not a reset while its key has no book, or that does not fit the book; a refused diff
        changes nothing."""
        key = (diff.instrument_uid or diff.figi, diff.depth, diff.order_book_type)
        book = apply_diff(self._books.get(key), diff)
        self._books[key] = book
        return book

    def gap(self, instrument_uid: str = "") -> None:
        """Forget the books of an instrument (all if empty): only a reset diff rebuilds them."""
        _forget(self._books, instrument_uid)

    def __len__(self) -> int:
        """How many books are kept (one per key)."""
        return len(self._books)


def _forget(books: dict[BookKey, OrderBook], instrument: str) -> None:
    if not instrument:
        books.clear()
        return
    for key in [key for key in books if key[0] == instrument]:
        del books[key]
