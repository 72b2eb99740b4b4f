"""fold._make.positional: objects indistinguishable from those attrs' __init__ makes, and the
fallback to __init__ when a class is not plain."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.derived import PositionCheck, Quote
from rxinvest.fold import _make
from rxinvest.fold._make import positional

NAMES = (
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
prices = st.none() | st.decimals(min_value=0, max_value=10**6, places=3)


@given(
    uid=st.text(max_size=5),
    bid=prices,
    ask=prices,
    sizes=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    imbalance=st.none() | st.floats(-1, 1),
    ofi=st.none() | st.integers(-(10**6), 10**6),
)
def test_a_positional_object_is_the_one_init_makes(
    uid: str,
    bid: Decimal | None,
    ask: Decimal | None,
    sizes: tuple[int, int],
    imbalance: float | None,
    ofi: int | None,
) -> None:
    values = (uid, datetime(2025, 1, 2, tzinfo=UTC), bid, ask, *sizes, imbalance, 5, ofi, Decimal("0.01"))
    reference = Quote(**dict(zip(NAMES, values, strict=True)))
    for make in (positional(Quote, NAMES), _descriptors(Quote, NAMES)):
        made = make(*values)
        assert type(made) is Quote
        assert made == reference and hash(made) == hash(reference) and repr(made) == repr(reference)
        assert attrs.asdict(made) == attrs.asdict(reference)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            made.bid = None  # type: ignore[misc]
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            del made.ask  # type: ignore[misc]


def _descriptors(cls: type, names: tuple[str, ...]) -> object:
    """positional's second way, through the slot descriptors (where ``__class__`` cannot be set)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_make, "_WAYS", (_make._descriptors,))
        return positional(cls, names)


def test_the_fast_way_is_taken_for_the_hot_events() -> None:
    """CPython allows the ``__class__`` assignment: the derived events of the hot folds take it."""
    assert _make._faithful(_make._swapped(Quote, NAMES), Quote, NAMES)
    names = tuple(field.name for field in attrs.fields(PositionCheck))
    assert _make._faithful(_make._swapped(PositionCheck, names), PositionCheck, names)


def test_a_class_with_a_slot_the_trial_misses_is_made_by_its_init() -> None:
    """A cached hash lives in a slot of its own, which neither fast way sets: refused."""

    @attrs.frozen(cache_hash=True)
    class Cached:
        amount: int

    assert not _make._faithful(_make._swapped(Cached, ("amount",)), Cached, ("amount",))
    assert not _make._faithful(_make._descriptors(Cached, ("amount",)), Cached, ("amount",))
    made = positional(Cached, ("amount",))(3)
    assert made == Cached(3) and hash(made) == hash(Cached(3))


def test_a_class_that_is_not_plain_is_made_by_its_init() -> None:
    @attrs.frozen
    class Checked:
        amount: int = attrs.field(validator=attrs.validators.ge(0))

    make = positional(Checked, ("amount",))
    assert make(3) == Checked(3)
    with pytest.raises(ValueError, match="must be >= 0"):
        make(-1)  # the validator ran
    with pytest.raises(TypeError):
        positional(Quote, ("bid", "ask"))(1, 2)  # not every field: __init__ refuses


def test_field_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="not field names"):
        positional(Quote, ("bid); import os; (x",))
