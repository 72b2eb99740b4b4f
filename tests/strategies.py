"""Hypothesis strategies for every model class (to be shipped later as ``rxinvest.testing``).

``messages(cls)`` builds any wire message; its fields draw from the strategies below: prices on a
tick grid (and the extremes of the Quotation range), aware datetimes in several zones, int64 values
up to the limits, every enum member, empty and short repeated fields, absent optional values.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

from hypothesis import strategies as st

from rxinvest import model as m
from rxinvest.wire.schema import FieldSpec, WireType, fields_of

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)

#: Minimum price increments seen on MOEX: shares, bonds (percent), futures points, FX.
TICKS = tuple(map(Decimal, ("0.01", "0.1", "0.5", "1", "0.0001", "0.0025", "0.000000001", "10")))


def prices(tick: Decimal | None = None, *, max_ticks: int = 10**12) -> st.SearchStrategy[Decimal]:
    """Prices on a tick grid (a given ``tick``, or one of :data:`TICKS`), negative ones included."""
    ticks = st.just(tick) if tick is not None else st.sampled_from(TICKS)
    return st.builds(lambda t, n: t * n, ticks, st.integers(-max_ticks, max_ticks))


def quotations() -> st.SearchStrategy[Decimal]:
    """Any Decimal a Quotation can carry: tick-grid prices plus the int64 / 9-decimal extremes."""
    extremes = st.builds(
        lambda units, nano: Decimal(units) + Decimal(nano).scaleb(-9) * (1 if units >= 0 else -1),
        st.integers(*INT64),
        st.integers(0, 10**9 - 1),
    )
    return st.one_of(prices(), extremes, st.just(Decimal(0)))


def datetimes() -> st.SearchStrategy[datetime]:
    """Aware datetimes at microsecond precision, in UTC and other offsets."""
    zones = st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))])
    return st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)


def money() -> st.SearchStrategy[m.Money]:
    return st.builds(m.Money, quotations(), st.sampled_from(["rub", "usd", "RUB", "eur", "cny", ""]))


def texts() -> st.SearchStrategy[str]:
    """Identifiers and free text, any Unicode that JSON can carry (no lone surrogates)."""
    return st.one_of(
        st.sampled_from(["", "BBG004730RP0", "962e2a95-02a9-4171-abd7-aa198dbe643a", "SBER", "TQBR"]),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
    )


def _scalar(spec: FieldSpec) -> st.SearchStrategy[Any]:
    kind = spec.kind
    if kind is WireType.STRING:
        return texts()
    if kind is WireType.BOOL:
        return st.booleans()
    if kind is WireType.INT64:
        return st.one_of(st.integers(*INT64), st.integers(0, 10**6))
    if kind is WireType.INT32:
        return st.integers(*INT32)
    if kind is WireType.QUOTATION:
        return quotations()
    if kind is WireType.MONEY:
        return money()
    if kind is WireType.TIMESTAMP:
        return datetimes()
    if kind is WireType.ENUM:
        target: type[enum.Enum] = spec.target
        return st.sampled_from(list(target))
    return st.deferred(lambda: messages(spec.target))


def _field(spec: FieldSpec) -> st.SearchStrategy[Any]:
    value = _scalar(spec)
    if spec.repeated:
        return st.lists(value, max_size=3).map(tuple)
    return st.none() | value if spec.nullable else value


@cache
def messages(cls: type) -> st.SearchStrategy[Any]:
    """Any instance of the model class ``cls``, every field drawn independently."""
    return st.builds(cls, **{spec.name: _field(spec) for spec in fields_of(cls)})


def order_books(*, depth: int = 20, tick: Decimal = Decimal("0.01")) -> st.SearchStrategy[m.OrderBook]:
    """Uncrossed books: bids descending below asks ascending, on one tick grid, up to ``depth`` levels."""

    @st.composite
    def build(draw: st.DrawFn) -> m.OrderBook:
        mid = draw(st.integers(2 * depth + 2, 10**7))
        bid_gaps = draw(st.lists(st.integers(1, 3), max_size=depth))
        ask_gaps = draw(st.lists(st.integers(1, 3), max_size=depth))
        quantity = st.integers(1, 10**6)

        def side(gaps: list[int], sign: int) -> tuple[m.Order, ...]:
            level, out = mid, []
            for gap in gaps:
                level += sign * gap
                out.append(m.Order(price=level * tick, quantity=draw(quantity)))
            return tuple(out)

        return m.OrderBook(
            figi="BBG004730RP0",
            depth=depth,
            is_consistent=True,
            bids=side(bid_gaps, -1),
            asks=side(ask_gaps, +1),
            time=draw(datetimes()),
            instrument_uid="962e2a95-02a9-4171-abd7-aa198dbe643a",
            order_book_type=m.OrderBookType.ORDERBOOK_TYPE_EXCHANGE,
        )

    return build()


def model_classes() -> list[type]:
    """Every wire message class of the model (all attrs classes but ``Money`` and the kind table's rows)."""
    import attrs

    return [
        cls
        for name in m.__all__
        if isinstance(cls := getattr(m, name), type) and attrs.has(cls) and cls not in (m.Money, m.KindSpec)
    ]
