"""fold.books against an independent oracle written here with dicts and sets, with hypothesis over
books on a 0.01 tick grid (empty and full sides, crossed books, depth 1 to 50), and examples of every
change kind, integrity error and fold key."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.derived import BookDiff, ChangeKind, LevelChange, Side
from rxinvest.errors import BookIntegrityError
from rxinvest.fold.books import BookDiffFold, BookRebuildFold, apply_diff, book_key, diff_books
from rxinvest.model import Order, OrderBook, OrderBookType

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TICK = Decimal("0.01")
BID, ASK = Side.BID, Side.ASK
ADD, REMOVE, UPDATE = ChangeKind.ADD, ChangeKind.REMOVE, ChangeKind.UPDATE
INTO, OUT = ChangeKind.INTO_VIEW, ChangeKind.OUT_OF_VIEW
EMPTY: tuple[()] = ()  # the shared empty tuple: an unchanged book makes no new one


def book(
    bids: list[tuple[str, int]],
    asks: list[tuple[str, int]],
    *,
    depth: int = 3,
    uid: str = "U",
    **header: object,
) -> OrderBook:
    """A book from (price, lots) pairs, best first."""
    return OrderBook(
        instrument_uid=uid,
        depth=depth,
        bids=tuple(Order(price=Decimal(p), quantity=q) for p, q in bids),
        asks=tuple(Order(price=Decimal(p), quantity=q) for p, q in asks),
        **header,  # type: ignore[arg-type]
    )


def summary(diff: BookDiff) -> list[tuple[Side, Decimal, int, int, ChangeKind]]:
    return [(c.side, c.price, c.old, c.new, c.kind) for c in diff.changes]


def as_dict(levels: tuple[Order, ...]) -> dict[Decimal, int]:
    """price -> lots (the books drawn here have a price on every level)."""
    out = {}
    for level in levels:
        assert level.price is not None
        out[level.price] = level.quantity
    return out


# --- strategies -------------------------------------------------------------------------------------


@st.composite
def sides(draw: st.DrawFn, depth: int, best_high: bool) -> tuple[Order, ...]:
    """One side on the tick grid: 0 to ``depth`` levels (often exactly ``depth``), best first."""
    count = draw(st.one_of(st.just(depth), st.integers(0, depth)))
    ticks = draw(st.sets(st.integers(9_970, 10_030 + depth), min_size=count, max_size=count))
    lots = st.one_of(st.integers(1, 3), st.integers(1, 1000))  # small lots: often equal quantities
    return tuple(Order(price=tick * TICK, quantity=draw(lots)) for tick in sorted(ticks, reverse=best_high))


@st.composite
def books(draw: st.DrawFn, depth: int | None = None) -> OrderBook:
    """A book with both sides independent (so crossed and locked books too) and a random header."""
    depth = draw(st.integers(1, 50)) if depth is None else depth
    return OrderBook(
        figi=draw(st.sampled_from(["", "FIGI1"])),
        depth=depth,
        is_consistent=draw(st.booleans()),
        bids=draw(sides(depth, True)),
        asks=draw(sides(depth, False)),
        time=draw(
            st.one_of(st.none(), st.integers(0, 10**6).map(lambda ms: T0 + timedelta(milliseconds=ms)))
        ),
        limit_up=draw(st.one_of(st.none(), st.integers(10_000, 11_000).map(lambda t: t * TICK))),
        limit_down=draw(st.one_of(st.none(), st.integers(9_000, 10_000).map(lambda t: t * TICK))),
        instrument_uid=draw(st.sampled_from(["U1", "U2", ""])),
        order_book_type=draw(st.sampled_from(list(OrderBookType))),
        ticker=draw(st.sampled_from(["", "SBER"])),
        class_code=draw(st.sampled_from(["", "TQBR"])),
    )


@st.composite
def successors(draw: st.DrawFn, a: OrderBook) -> OrderBook:
    """A book like the next snapshot of ``a``: a few levels changed, added or removed, at ``a``'s depth
    (or, now and then, any book at all)."""
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(books())
    if choice == 1:  # the quote moves: levels scroll in at one end of each side and out at the other
        shift = draw(st.integers(-3, 3)) * TICK
        scrolled = [
            tuple(Order(price=level.price + shift, quantity=level.quantity) for level in levels)  # type: ignore[operator]
            for levels in (a.bids, a.asks)
        ]
        return attrs.evolve(a, bids=scrolled[0], asks=scrolled[1])
    new_sides = []
    for levels, best_high in ((a.bids, True), (a.asks, False)):
        prices = as_dict(levels)
        for _ in range(draw(st.integers(0, 4))):
            tick = draw(st.integers(9_970, 10_030 + a.depth)) * TICK
            if tick in prices and draw(st.booleans()):
                del prices[tick]
            else:
                prices[tick] = draw(st.integers(1, 1000))
        kept = sorted(prices, reverse=best_high)[: a.depth]
        new_sides.append(tuple(Order(price=p, quantity=prices[p]) for p in kept))
    return attrs.evolve(
        a,
        bids=new_sides[0],
        asks=new_sides[1],
        time=None if a.time is None else a.time + timedelta(seconds=1),
    )


@st.composite
def pairs(draw: st.DrawFn) -> tuple[OrderBook, OrderBook]:
    a = draw(books())
    return a, draw(successors(a))


# --- the oracle -------------------------------------------------------------------------------------


def oracle(a: OrderBook | None, b: OrderBook) -> list[tuple[Side, Decimal, int, int, ChangeKind]]:
    """The changes from a to b by the rules, with dicts and sets: the obvious way, and slow."""
    out: list[tuple[Side, Decimal, int, int, ChangeKind]] = []
    for side, best_high in ((BID, True), (ASK, False)):
        old_levels = () if a is None else (a.bids if side is BID else a.asks)
        new_levels = b.bids if side is BID else b.asks
        old, new = as_dict(old_levels), as_dict(new_levels)
        a_depth = 0 if a is None else a.depth
        a_full = a_depth > 0 and len(old) >= a_depth
        b_full = b.depth > 0 and len(new) >= b.depth
        a_worst = (min(old) if best_high else max(old)) if old else None
        b_worst = (min(new) if best_high else max(new)) if new else None

        def beyond(price: Decimal, worst: Decimal | None, best_high: bool = best_high) -> bool:
            return worst is not None and (price < worst if best_high else price > worst)

        for price in sorted(set(old) | set(new), reverse=best_high):
            if price in old and price in new:
                if old[price] != new[price]:
                    out.append((side, price, old[price], new[price], UPDATE))
            elif price in new:
                kind = INTO if a_full and beyond(price, a_worst) else ADD
                out.append((side, price, 0, new[price], kind))
            else:
                kind = OUT if b_full and beyond(price, b_worst) else REMOVE
                out.append((side, price, old[price], 0, kind))
    return out


# --- properties -------------------------------------------------------------------------------------


@given(pairs())
def test_the_diff_is_the_oracles(pair: tuple[OrderBook, OrderBook]) -> None:
    a, b = pair
    assert summary(diff_books(a, b)) == oracle(a, b)


@given(books())
def test_a_diff_from_no_book_is_a_reset_of_adds(b: OrderBook) -> None:
    diff = diff_books(None, b)
    assert diff.reset
    assert summary(diff) == oracle(None, b)
    assert all(c.kind is ADD and c.old == 0 for c in diff.changes)
    assert len(diff.changes) == len(b.bids) + len(b.asks)


@given(pairs())
def test_round_trip(pair: tuple[OrderBook, OrderBook]) -> None:
    a, b = pair
    assert apply_diff(a, diff_books(a, b)) == b
    assert apply_diff(None, diff_books(None, b)) == b
    assert apply_diff(a, diff_books(None, b)) == b  # a reset ignores the book it is applied to


@given(pairs())
def test_the_header_is_the_later_books(pair: tuple[OrderBook, OrderBook]) -> None:
    a, b = pair
    diff = diff_books(a, b)
    header = attrs.asdict(b, recurse=False)
    del header["bids"], header["asks"]
    assert {name: getattr(diff, name) for name in header} == header
    assert not diff.reset
    # made without attrs' __init__ (rule 7): the same as one made through it, hash and repr too
    same = BookDiff(
        **header, reset=diff.reset, changes=tuple(LevelChange(**attrs.asdict(c)) for c in diff.changes)
    )
    assert diff == same
    assert hash(diff) == hash(same)
    assert repr(diff) == repr(same)


@given(books())
def test_no_change_no_objects(a: OrderBook) -> None:
    assert diff_books(a, a).changes is EMPTY
    twin = attrs.evolve(
        a,
        bids=tuple(Order(price=Decimal(str(o.price)), quantity=o.quantity) for o in a.bids),
        asks=tuple(Order(price=Decimal(str(o.price)), quantity=o.quantity) for o in a.asks),
    )
    assert diff_books(a, twin).changes is EMPTY


@given(books(), st.data())
def test_composition(a: OrderBook, data: st.DataObject) -> None:
    b = data.draw(successors(a))
    c = data.draw(successors(b))
    via_b = apply_diff(apply_diff(a, diff_books(a, b)), diff_books(b, c))
    assert via_b == apply_diff(a, diff_books(a, c)) == c


@given(pairs())
def test_each_price_once_in_order_bids_first(pair: tuple[OrderBook, OrderBook]) -> None:
    a, b = pair
    changes = diff_books(a, b).changes
    sides = [c.side for c in changes]
    assert sides == sorted(sides, key=lambda s: s is ASK)  # bids, then asks
    bids = [c.price for c in changes if c.side is BID]
    asks = [c.price for c in changes if c.side is ASK]
    assert all(x > y for x, y in itertools.pairwise(bids))  # strictly: best first, no repeat
    assert all(x < y for x, y in itertools.pairwise(asks))


@given(pairs())
def test_view_kinds_only_at_the_edge_of_a_full_side(pair: tuple[OrderBook, OrderBook]) -> None:
    a, b = pair
    for c in diff_books(a, b).changes:
        old_side = a.bids if c.side is BID else a.asks
        new_side = b.bids if c.side is BID else b.asks
        if c.kind is OUT:
            assert len(new_side) >= b.depth
            worst = new_side[-1].price
            assert worst is not None
            assert c.price < worst if c.side is BID else c.price > worst
        if c.kind is INTO:
            assert len(old_side) >= a.depth
            worst = old_side[-1].price
            assert worst is not None
            assert c.price < worst if c.side is BID else c.price > worst
        if c.kind in (ADD, INTO):
            assert c.old == 0
        if c.kind in (REMOVE, OUT):
            assert c.new == 0


@given(st.lists(books(depth=5), min_size=1, max_size=8), st.lists(books(depth=20), max_size=8))
def test_the_folds_round_trip_a_mixed_feed(shallow: list[OrderBook], deep: list[OrderBook]) -> None:
    feed = [book for pair in zip(shallow, deep, strict=False) for book in pair] + shallow[len(deep) :]
    diffs, rebuild = BookDiffFold(), BookRebuildFold()
    seen: set[object] = set()
    for b in feed:
        diff = diffs.step(b)
        assert diff.reset == (book_key(b) not in seen)
        seen.add(book_key(b))
        assert rebuild.step(diff) == b
    assert len(diffs) == len(rebuild) == len(seen)


# --- examples of each kind ----------------------------------------------------------------------------


def test_update_add_and_remove_within_the_view() -> None:
    a = book([("10.0", 5), ("9.9", 1), ("9.7", 2)], [("10.1", 3)])
    b = book([("10.0", 6), ("9.8", 4), ("9.7", 2)], [("10.1", 3)])
    assert summary(diff_books(a, b)) == [
        (BID, Decimal("10.0"), 5, 6, UPDATE),
        (BID, Decimal("9.9"), 1, 0, REMOVE),
        (BID, Decimal("9.8"), 0, 4, ADD),
    ]


def test_out_of_view_and_into_view_at_the_bottom_of_full_sides() -> None:
    a = book([("10.0", 1), ("9.9", 1), ("9.8", 1)], [("10.2", 1), ("10.3", 1), ("10.4", 1)])
    b = book([("10.1", 2), ("10.0", 1), ("9.9", 1)], [("10.3", 1), ("10.4", 1), ("10.5", 7)])
    assert summary(diff_books(a, b)) == [
        (BID, Decimal("10.1"), 0, 2, ADD),  # a better bid
        (BID, Decimal("9.8"), 1, 0, OUT),  # pushed out of the 3 levels
        (ASK, Decimal("10.2"), 1, 0, REMOVE),  # the best ask went
        (ASK, Decimal("10.5"), 0, 7, INTO),  # scrolled into view
    ]


def test_into_view_on_the_bids_and_out_of_view_on_the_asks() -> None:
    a = book([("10.0", 1), ("9.9", 1), ("9.8", 1)], [("10.2", 1), ("10.3", 1), ("10.4", 1)])
    b = book([("9.9", 1), ("9.8", 1), ("9.7", 5)], [("10.1", 2), ("10.2", 1), ("10.3", 1)])
    assert summary(diff_books(a, b)) == [
        (BID, Decimal("10.0"), 1, 0, REMOVE),
        (BID, Decimal("9.7"), 0, 5, INTO),
        (ASK, Decimal("10.1"), 0, 2, ADD),
        (ASK, Decimal("10.4"), 1, 0, OUT),
    ]
    assert apply_diff(a, diff_books(a, b)) == b


def test_a_side_shorter_than_the_depth_has_no_view_changes() -> None:
    a = book([("10.0", 1), ("9.9", 1)], [], depth=3)
    b = book([("10.1", 1), ("9.8", 1)], [], depth=3)
    assert [c.kind for c in diff_books(a, b).changes] == [ADD, REMOVE, REMOVE, ADD]
    c = book([("10.0", 1)], [], depth=3)
    d = book([("10.0", 1), ("9.0", 1), ("8.0", 1)], [], depth=3)  # a was not full: ADD, not INTO
    assert [c.kind for c in diff_books(c, d).changes] == [ADD, ADD]


def test_an_unknown_depth_is_never_full() -> None:
    a = book([("10.0", 1), ("9.9", 1)], [("10.2", 1)], depth=0)
    b = book([("10.1", 1), ("10.0", 1)], [("10.3", 1)], depth=0)
    assert [c.kind for c in diff_books(a, b).changes] == [ADD, REMOVE, REMOVE, ADD]


def test_a_crossed_book_is_diffed_like_any_other() -> None:
    a = book([("10.0", 1)], [("10.1", 1)])
    b = book([("10.2", 1)], [("10.1", 1)])  # bid above ask: health's business
    assert summary(diff_books(a, b)) == [
        (BID, Decimal("10.2"), 0, 1, ADD),
        (BID, Decimal("10.0"), 1, 0, REMOVE),
    ]
    assert apply_diff(a, diff_books(a, b)) == b


def test_equal_prices_of_other_exponents_are_one_price() -> None:
    a = book([("10.0", 1)], [])
    b = book([("10.00", 1)], [])
    assert diff_books(a, b).changes == ()


# --- integrity --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ([("9.9", 1), ("10.0", 1)], []),  # bids worst first
        ([("10.0", 1), ("10.0", 2)], []),  # a price twice
        ([], [("10.2", 1), ("10.1", 1)]),  # asks worst first
        ([], [("10.1", 1), ("10.1", 1)]),
        ([("10.0", 1), ("9.0", 1), ("9.5", 1)], []),  # out of order below a price a has
    ],
)
def test_a_later_book_out_of_order_is_refused(
    bids: list[tuple[str, int]], asks: list[tuple[str, int]]
) -> None:
    bad = book(bids, asks, uid="BAD", depth=5)
    good = book([("10.0", 1), ("9.0", 1)], [("10.1", 1)], uid="BAD", depth=5)
    for earlier in (None, good):
        with pytest.raises(BookIntegrityError, match="not strictly in order") as caught:
            diff_books(earlier, bad)
        assert caught.value.instrument == "BAD"


def test_a_level_without_a_price_is_refused() -> None:
    good = book([("10.0", 1)], [("10.1", 1)], uid="U7")
    for bad in (
        attrs.evolve(good, bids=(Order(price=None, quantity=1),)),
        attrs.evolve(good, asks=(Order(price=Decimal("10.1"), quantity=1), Order(price=None, quantity=1))),
    ):
        for earlier in (None, good):
            with pytest.raises(BookIntegrityError, match="price") as caught:
                diff_books(earlier, bad)
            assert caught.value.instrument == "U7"


def test_an_unchecked_book_is_checked_by_diffing_it_from_none() -> None:
    # Rule 5: the earlier book is taken as checked; a book that agrees with it inherits its order.
    unsorted = book([("9.0", 1), ("10.0", 1)], [])
    assert diff_books(unsorted, unsorted).changes == ()
    with pytest.raises(BookIntegrityError):
        diff_books(None, unsorted)


def test_a_diff_that_does_not_fit_the_book_is_refused() -> None:
    a = book([("10.0", 5)], [("10.1", 3)], uid="U9")

    def change(side: Side, price: str, old: int, new: int, kind: ChangeKind) -> LevelChange:
        return LevelChange(side=side, price=Decimal(price), old=old, new=new, kind=kind)

    def diff(*changes: LevelChange, reset: bool = False) -> BookDiff:
        return BookDiff(instrument_uid="U9", depth=3, time=None, reset=reset, changes=changes)

    bad = [
        diff(change(BID, "9.9", 1, 0, REMOVE)),  # no such price
        diff(change(BID, "9.9", 1, 0, OUT)),
        diff(change(BID, "9.9", 1, 2, UPDATE)),
        diff(change(BID, "10.0", 4, 6, UPDATE)),  # old is not the book's
        diff(change(BID, "10.0", 4, 0, REMOVE)),
        diff(change(BID, "10.0", 0, 6, ADD)),  # the book has that price
        diff(change(ASK, "10.1", 0, 6, INTO)),
        diff(change(BID, "9.8", 0, 1, ADD), change(BID, "9.9", 0, 1, ADD)),  # out of order
        diff(change(ASK, "10.3", 0, 1, ADD), change(ASK, "10.2", 0, 1, ADD)),
        diff(change(ASK, "10.3", 0, 1, ADD), change(BID, "10.5", 0, 1, ADD)),  # a bid after the asks
        diff(change(BID, "9.9", 0, 1, ADD), change(BID, "9.9", 0, 1, ADD)),  # a price twice
        diff(change(BID, "9.9", 1, 0, REMOVE), reset=True),  # nothing to remove from
    ]
    for d in bad:
        with pytest.raises(BookIntegrityError, match="does not fit") as caught:
            apply_diff(a, d)
        assert caught.value.instrument == "U9"
    with pytest.raises(BookIntegrityError, match="not a reset"):
        apply_diff(None, diff())
    fits = diff(change(BID, "10.0", 5, 6, UPDATE), change(ASK, "10.1", 3, 0, REMOVE))
    assert apply_diff(a, fits) == book([("10.0", 6)], [], uid="U9", time=None, is_consistent=True)


# --- the folds --------------------------------------------------------------------------------------


def test_books_of_another_depth_or_type_are_never_diffed_against_each_other() -> None:
    fold = BookDiffFold()
    ten = book([("10.0", 1)], [("10.1", 1)], depth=10)
    twenty = book([("10.0", 1)], [("10.1", 1)], depth=20)
    dealer = attrs.evolve(ten, order_book_type=OrderBookType.ORDERBOOK_TYPE_DEALER)
    assert fold.step(ten).reset
    assert fold.step(twenty).reset  # not a diff against the 10-level book
    assert fold.step(dealer).reset
    later = attrs.evolve(ten, bids=(Order(price=Decimal("10.0"), quantity=2),))
    diff = fold.step(later)
    assert not diff.reset
    assert summary(diff) == [(BID, Decimal("10.0"), 1, 2, UPDATE)]
    assert len(fold) == 3
    for _ in range(5):
        fold.step(later)
    assert len(fold) == 3  # one book per key


def test_a_book_without_uid_is_keyed_by_figi() -> None:
    fold = BookDiffFold()
    a = book([("10.0", 1)], [], uid="", figi="F1")
    assert book_key(a) == ("F1", 3, OrderBookType.ORDERBOOK_TYPE_UNSPECIFIED)
    assert fold.step(a).reset
    assert fold.step(attrs.evolve(a, figi="F2")).reset
    assert not fold.step(a).reset
    fold.gap("F1")
    assert fold.step(a).reset


def test_a_gap_resets_its_instrument_only() -> None:
    fold = BookDiffFold()
    u1 = book([("10.0", 1)], [], uid="U1")
    u1_deep = book([("10.0", 1)], [], uid="U1", depth=20)
    u2 = book([("10.0", 1)], [], uid="U2")
    for b in (u1, u1_deep, u2):
        fold.step(b)
    fold.gap("U1")
    assert fold.step(u1).reset
    assert fold.step(u1_deep).reset  # every depth of the instrument
    assert not fold.step(u2).reset
    fold.gap()
    assert fold.step(u2).reset
    assert summary(fold.step(u2)) == []


def test_a_refused_book_is_not_kept() -> None:
    fold = BookDiffFold()
    a = book([("10.0", 1), ("9.9", 1)], [])
    fold.step(a)
    with pytest.raises(BookIntegrityError):
        fold.step(book([("9.0", 1), ("10.0", 1)], []))
    b = book([("10.0", 2), ("9.9", 1)], [])
    assert summary(fold.step(b)) == [(BID, Decimal("10.0"), 1, 2, UPDATE)]  # against a


def test_the_rebuild_fold_needs_a_reset_first_and_keeps_the_last_good_book() -> None:
    a = book([("10.0", 1)], [("10.1", 1)], uid="R", time=T0)
    b = book([("10.0", 3)], [("10.2", 1)], uid="R", time=T0 + timedelta(seconds=1))
    fold = BookRebuildFold()
    with pytest.raises(BookIntegrityError, match="not a reset") as caught:
        fold.step(diff_books(a, b))
    assert caught.value.instrument == "R"
    assert fold.step(diff_books(None, a)) == a
    with pytest.raises(BookIntegrityError):  # made against another book: does not fit
        fold.step(diff_books(book([("10.0", 9)], [], uid="R"), b))
    assert fold.step(diff_books(a, b)) == b  # still against a
    assert len(fold) == 1
    fold.gap("R")
    with pytest.raises(BookIntegrityError):
        fold.step(diff_books(a, b))
    assert fold.step(diff_books(None, b)) == b
