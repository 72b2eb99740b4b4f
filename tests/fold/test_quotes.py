"""fold.quotes against an oracle written here in exact fractions, with hypothesis, and OFI's sign
conventions on hand examples."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.derived import Quote
from rxinvest.errors import ConfigurationError
from rxinvest.fold.quotes import QuoteFold, quote
from rxinvest.model import Order, OrderBook

T0 = datetime(2025, 11, 21, 10, 0, tzinfo=UTC)
TICK = Decimal("0.01")


def make_book(uid: str, bids: list[tuple[str, int]], asks: list[tuple[str, int]]) -> OrderBook:
    return OrderBook(
        instrument_uid=uid,
        depth=10,
        is_consistent=True,
        bids=tuple(Order(price=Decimal(p), quantity=q) for p, q in bids),
        asks=tuple(Order(price=Decimal(p), quantity=q) for p, q in asks),
        time=T0,
    )


@st.composite
def books(draw: st.DrawFn, uid: str = "A") -> OrderBook:
    """Books on a tick grid, sides sorted as the API sends them, either side possibly empty, crossed
    ones included; quantities from 0 (a level the exchange empties) up."""
    bids = sorted(draw(st.sets(st.integers(9_990, 10_010), max_size=8)), reverse=True)
    asks = sorted(draw(st.sets(st.integers(9_990, 10_010), max_size=8)))
    quantity = st.integers(0, 5_000)
    return OrderBook(
        instrument_uid=uid,
        depth=10,
        is_consistent=True,
        bids=tuple(Order(price=t * TICK, quantity=draw(quantity)) for t in bids),
        asks=tuple(Order(price=t * TICK, quantity=draw(quantity)) for t in asks),
        time=T0,
    )


def F(value: Decimal) -> Fraction:
    return Fraction(value)


def oracle(book: OrderBook, levels: int, increment: Decimal | None) -> dict[str, object]:
    """Every field but ``ofi`` in exact fractions (None where undefined)."""
    bid = F(book.bids[0].price) if book.bids and book.bids[0].price is not None else None
    ask = F(book.asks[0].price) if book.asks and book.asks[0].price is not None else None
    bid_size = book.bids[0].quantity if bid is not None else 0
    ask_size = book.asks[0].quantity if ask is not None else 0
    out: dict[str, object] = {"bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}
    if bid is None or ask is None:
        return out | {
            "mid": None,
            "spread": None,
            "spread_ticks": None,
            "microprice": None,
            "imbalance": None,
        }
    big = sum(o.quantity for i, o in enumerate(book.bids) if i < levels)
    small = sum(o.quantity for i, o in enumerate(book.asks) if i < levels)
    return out | {
        "mid": (bid + ask) / 2,
        "spread": ask - bid,
        "spread_ticks": None if increment is None else (ask - bid) / F(increment),
        "microprice": (bid * ask_size + ask * bid_size) / (ask_size + bid_size)
        if ask_size + bid_size
        else None,
        "imbalance": Fraction(big - small, big + small) if big + small else None,
    }


def oracle_ofi(before: OrderBook, after: OrderBook) -> int | None:
    """Cont, Kukanov and Stoikov's e_n, with their indicator functions."""
    if not (before.bids and before.asks and after.bids and after.asks):
        return None
    pb, qb = F(after.bids[0].price), after.bids[0].quantity  # type: ignore[arg-type]
    pb0, qb0 = F(before.bids[0].price), before.bids[0].quantity  # type: ignore[arg-type]
    pa, qa = F(after.asks[0].price), after.asks[0].quantity  # type: ignore[arg-type]
    pa0, qa0 = F(before.asks[0].price), before.asks[0].quantity  # type: ignore[arg-type]
    return (pb >= pb0) * qb - (pb <= pb0) * qb0 - (pa <= pa0) * qa + (pa >= pa0) * qa0


def check(made: Quote, book: OrderBook, levels: int, increment: Decimal | None) -> None:
    want = oracle(book, levels, increment)
    assert made.instrument_uid == book.instrument_uid
    assert made.time == book.time
    assert made.levels == levels
    for name in ("bid", "ask", "mid", "spread", "spread_ticks"):
        value = getattr(made, name)
        assert (None if value is None else F(value)) == want[name], name
        assert value is None or isinstance(value, Decimal)
    assert (made.bid_size, made.ask_size) == (want["bid_size"], want["ask_size"])
    exact = want["microprice"]
    if exact is None:
        assert made.microprice is None
    else:
        assert isinstance(made.microprice, Decimal)
        assert isinstance(exact, Fraction)
        assert abs(F(made.microprice) - exact) <= abs(exact) * Fraction(1, 10**26)
        bid, ask = want["bid"], want["ask"]
        assert isinstance(bid, Fraction)
        assert isinstance(ask, Fraction)
        assert min(bid, ask) <= exact <= max(bid, ask)
    imbalance = want["imbalance"]
    if imbalance is None:
        assert made.imbalance is None
    else:
        assert isinstance(made.imbalance, float)
        assert made.imbalance == float(imbalance)  # type: ignore[arg-type]
        assert -1 <= made.imbalance <= 1


@given(books(), st.integers(1, 12), st.sampled_from([None, TICK, Decimal("0.05"), Decimal("1")]))
def test_formulas_against_fractions(book: OrderBook, levels: int, increment: Decimal | None) -> None:
    made = quote(book, levels=levels, increment=increment)
    check(made, book, levels, increment)
    assert made.ofi is None  # no previous


@given(books(), books(), st.integers(1, 5))
def test_ofi_against_the_indicator_form(before: OrderBook, after: OrderBook, levels: int) -> None:
    previous = quote(before, levels=levels)
    made = quote(after, levels=levels, previous=previous)
    check(made, after, levels, None)
    assert made.ofi == oracle_ofi(before, after)


@given(st.lists(books(), max_size=8), st.integers(1, 5))
def test_fold_keeps_the_previous_quote_per_instrument(sequence: list[OrderBook], levels: int) -> None:
    fold = QuoteFold(levels, {"A": TICK})
    previous: OrderBook | None = None
    for book in sequence:
        made = fold.step(book)
        check(made, book, levels, TICK)
        assert made.ofi == (None if previous is None else oracle_ofi(previous, book))
        previous = book


# --- OFI by hand ----------------------------------------------------------------------------------

BEFORE = make_book("A", [("100.00", 10)], [("100.05", 20)])


@pytest.mark.parametrize(
    ("bid", "ask", "ofi"),
    [
        (("100.01", 7), ("100.05", 20), 7),  # bid up: its whole size is new demand
        (("100.00", 15), ("100.05", 20), 5),  # bid same, more size: the difference
        (("100.00", 4), ("100.05", 20), -6),  # bid same, less size (cancels or fills)
        (("99.99", 3), ("100.05", 20), -10),  # bid down: the old bid's size is gone
        (("100.00", 10), ("100.04", 8), -8),  # ask down: its whole size is new supply
        (("100.00", 10), ("100.05", 26), -6),  # ask same, more size
        (("100.00", 10), ("100.05", 12), 8),  # ask same, less size: supply taken away
        (("100.00", 10), ("100.06", 1), 20),  # ask up: the old ask's size is gone
        (("100.01", 7), ("100.04", 8), -1),  # both improve: 7 - 8
        (("100.00", 10), ("100.05", 20), 0),  # nothing changed
    ],
)
def test_ofi_signs_by_hand(bid: tuple[str, int], ask: tuple[str, int], ofi: int) -> None:
    made = quote(make_book("A", [bid], [ask]), previous=quote(BEFORE))
    assert made.ofi == ofi


def test_first_quote_and_after_gap_have_no_ofi() -> None:
    fold = QuoteFold()
    assert fold.step(BEFORE).ofi is None
    assert fold.step(make_book("B", [("1", 1)], [("2", 1)])).ofi is None
    up = make_book("A", [("100.01", 7)], [("100.05", 20)])
    assert fold.step(up).ofi == 7
    fold.gap("A")
    assert fold.step(BEFORE).ofi is None
    assert fold.step(make_book("B", [("1", 3)], [("2", 1)])).ofi == 2  # B kept its previous
    fold.gap()
    assert fold.step(BEFORE).ofi is None
    assert fold.step(make_book("B", [("1", 3)], [("2", 1)])).ofi is None


def test_empty_sides() -> None:
    for book in (
        make_book("A", [], []),
        make_book("A", [("100", 5)], []),
        make_book("A", [], [("100", 5)]),
    ):
        made = quote(book, increment=TICK, previous=quote(BEFORE))
        assert (made.mid, made.spread, made.spread_ticks, made.microprice, made.imbalance, made.ofi) == (
            None,
        ) * 6
        assert made.bid_size == (5 if book.bids else 0)
        assert made.ask_size == (5 if book.asks else 0)
    # a two-sided book after a one-sided one: no OFI either
    made = quote(BEFORE, previous=quote(make_book("A", [("100", 5)], [])))
    assert made.ofi is None
    assert made.mid == Decimal("100.025")


def test_zero_sizes() -> None:
    made = quote(make_book("A", [("100", 0)], [("101", 0)]))
    assert made.microprice is None
    assert made.imbalance is None
    assert made.mid == Decimal("100.5")


@pytest.mark.parametrize("levels", [0, -1, True, 1.5, "5", None])
def test_bad_levels(levels: object) -> None:
    with pytest.raises(ConfigurationError):
        quote(BEFORE, levels=levels)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        QuoteFold(levels)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "increment", [Decimal(0), Decimal("-0.01"), Decimal("NaN"), Decimal("Infinity"), 0.01]
)
def test_bad_increment(increment: object) -> None:
    with pytest.raises(ConfigurationError):
        quote(BEFORE, increment=increment)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        QuoteFold(5, {"A": increment})  # type: ignore[dict-item]


def test_previous_of_another_instrument() -> None:
    with pytest.raises(ConfigurationError):
        quote(BEFORE, previous=quote(make_book("B", [("1", 1)], [("2", 1)])))


# --- the fast constructor (rule 5) ------------------------------------------------------------------


@given(books(), books(), st.integers(1, 6), st.sampled_from([None, TICK]))
def test_a_quote_is_the_value_init_makes(
    before: OrderBook, after: OrderBook, levels: int, increment: Decimal | None
) -> None:
    """The quote made by ``fold._make.positional`` is, as a value, the ``Quote(...)`` of its own
    fields: same type, equal, same hash, repr and asdict, frozen."""
    made = quote(after, levels=levels, increment=increment, previous=quote(before, levels=levels))
    again = Quote(**{field.name: getattr(made, field.name) for field in attrs.fields(Quote)})
    assert type(made) is Quote
    assert made == again
    assert hash(made) == hash(again)
    assert repr(made) == repr(again)
    assert attrs.asdict(made) == attrs.asdict(again)
    assert attrs.evolve(made, ofi=None) == attrs.evolve(again, ofi=None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.bid = None  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del made.ask  # type: ignore[misc]


@pytest.mark.parametrize("levels", [4, 5, 6])
@pytest.mark.parametrize("depth", [(5, 5), (5, 7), (4, 6), (7, 4)])
def test_sums_around_the_unrolled_default(levels: int, depth: tuple[int, int]) -> None:
    """The default ``levels=5`` is summed unrolled when both sides have 5 levels, by a loop else."""
    bids = [(f"{100 - i}", 10 + i) for i in range(depth[0])]
    asks = [(f"{101 + i}", 100 + 7 * i) for i in range(depth[1])]
    book = make_book("A", bids, asks)
    check(quote(book, levels=levels), book, levels, None)


def test_ofi_with_the_very_price_objects() -> None:
    """Decoded prices are interned: the next book may hold the very Decimal objects."""
    bid, ask = Decimal("100.00"), Decimal("100.05")
    first = make_book("A", [], [])
    first = attrs.evolve(first, bids=(Order(price=bid, quantity=10),), asks=(Order(price=ask, quantity=20),))
    second = attrs.evolve(first, bids=(Order(price=bid, quantity=13),), asks=(Order(price=ask, quantity=5),))
    fold = QuoteFold()
    fold.step(first)
    assert fold.step(first).ofi == 0
    assert fold.step(second).ofi == 3 - (5 - 20)
