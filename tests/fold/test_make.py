"""fold._make.positional: objects indistinguishable from those attrs' __init__ makes, and the
fallback to __init__ when a class is not plain."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.derived import Quote
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
    made = positional(Quote, NAMES)(*values)
    reference = Quote(**dict(zip(NAMES, values, strict=True)))
    assert type(made) is Quote
    assert made == reference and hash(made) == hash(reference) and repr(made) == repr(reference)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.bid = None  # type: ignore[misc]


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
