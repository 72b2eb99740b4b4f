"""Events as DataFrames: every event type, wire and derived, round-trips through a frame with its
Decimals exact; empty input gives a typed empty frame; columns, types and index follow the rules."""

from __future__ import annotations

import enum
import types
import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxinvest.derived as d
from rxinvest import model as m
from rxinvest.errors import ConfigurationError
from rxinvest.notebook import book_levels, from_dataframe, to_dataframe
from rxinvest.testing.strategies import datetimes, messages, model_classes, order_books, quotations, texts

DERIVED = [
    cls
    for cls in vars(d).values()
    if isinstance(cls, type) and attrs.has(cls) and cls.__module__.startswith("rxinvest")
]


def strategy_of(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a type hint, for the derived classes (the wire ones have ``messages``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else strategy_of(a) for a in args])
    if origin is tuple:
        return st.lists(strategy_of(args[0]), max_size=3).map(tuple)
    if origin is frozenset:
        return st.frozensets(strategy_of(args[0]), max_size=3)
    if hint is Decimal:
        return quotations()
    if hint is datetime:
        return datetimes()
    if hint is timedelta:
        return st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
    if hint is str:
        return texts()
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(-(2**63), 2**63 - 1)
    if hint is float:
        return st.floats(allow_nan=False)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and attrs.has(hint):
        return events_of(hint)
    raise NotImplementedError(hint)


def events_of(cls: type) -> st.SearchStrategy[Any]:
    if cls in model_classes() or cls is m.Money:
        return (
            messages(cls) if cls is not m.Money else st.builds(m.Money, amount=quotations(), currency=texts())
        )
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_of(hints[f.name]) for f in attrs.fields(cls) if f.init})


@pytest.mark.parametrize("cls", model_classes() + DERIVED, ids=lambda c: c.__name__)
def test_every_event_type_round_trips_with_decimals_exact(cls: type) -> None:
    @settings(max_examples=50)  # per class, of 80: the suite's budget
    @given(st.lists(events_of(cls), max_size=5))
    def round_trip(events: list[Any]) -> None:
        frame = to_dataframe(events, of=cls)
        assert len(frame) == len(events)
        back = from_dataframe(frame, of=cls)
        assert back == events
        for event, again in zip(events, back, strict=True):  # Decimals exactly: digits and exponent
            for field in attrs.fields(cls):
                value = getattr(event, field.name)
                if isinstance(value, Decimal):
                    assert getattr(again, field.name).as_tuple() == value.as_tuple()

    round_trip()


@pytest.mark.parametrize(
    "cls", [m.Trade, m.OrderBook, m.OrderState, d.Bar, d.Quote, d.PositionCheck, d.BookDiff]
)
def test_empty_input_gives_a_typed_empty_frame(cls: type) -> None:
    empty = to_dataframe([], of=cls)
    assert len(empty) == 0

    @given(events_of(cls))
    def same_columns_and_types(event: Any) -> None:
        full = to_dataframe([event], of=cls)
        assert list(empty.columns) == list(full.columns)
        assert dict(empty.dtypes) == dict(full.dtypes)
        assert type(empty.index) is type(full.index)

    same_columns_and_types()


def test_columns_types_and_index_follow_the_rules() -> None:
    price = m.Money(amount=Decimal("101.50"), currency="RUB")
    state = m.OrderState(
        order_id="1",
        execution_report_status=m.OrderExecutionReportStatus.EXECUTION_REPORT_STATUS_FILL,
        lots_requested=2,
        lots_executed=2,
        executed_order_price=price,
        direction=m.OrderDirection.ORDER_DIRECTION_BUY,
        created_at=datetime(2026, 11, 30, 10, tzinfo=UTC),
    )
    frame = to_dataframe([state])
    assert frame["executed_order_price.amount"].iloc[0] == Decimal("101.50")
    assert frame["executed_order_price.currency"].iloc[0] == "rub"
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "created_at"
    assert frame["direction"].iloc[0] == "ORDER_DIRECTION_BUY"
    assert isinstance(frame["direction"].dtype, pd.CategoricalDtype)
    assert frame["lots_executed"].dtype == "int64"
    trade = m.Trade(
        instrument_uid="u", price=Decimal("100.5"), quantity=3, time=datetime(2026, 11, 30, tzinfo=UTC)
    )
    trades = to_dataframe([trade, trade])
    assert isinstance(trades.index, pd.DatetimeIndex) and str(trades.index.tz) == "UTC"
    assert trades.index.name == "time" and "time" not in trades.columns
    assert to_dataframe([trade], decimals="float")["price"].dtype == "float64"
    quote = d.Quote(
        instrument_uid="u",
        time=datetime(2026, 11, 30, tzinfo=UTC),
        bid=Decimal("99.5"),
        ask=Decimal("100.5"),
        bid_size=3,
        ask_size=1,
        imbalance=0.5,
        levels=5,
        ofi=None,
        increment=Decimal("0.5"),
    )
    quotes = to_dataframe([quote])
    assert quotes["mid"].iloc[0] == Decimal(100) and quotes["spread_ticks"].iloc[0] == Decimal(2)


def test_mixed_types_need_of_and_empty_input_needs_of() -> None:
    trade = m.Trade(
        instrument_uid="u", price=Decimal("100.5"), quantity=3, time=datetime(2026, 11, 30, tzinfo=UTC)
    )
    now = datetime(2026, 11, 30, tzinfo=UTC)
    gap = d.Gap(instrument_uid="x", cause=d.GapCause.RECONNECT, since=now, until=now)
    with pytest.raises(ConfigurationError, match=r"Trade \(1\)"):
        to_dataframe([trade, gap])
    assert len(to_dataframe([trade, gap, trade], of=m.Trade)) == 2  # markers left out when asked
    with pytest.raises(ConfigurationError, match="of="):
        to_dataframe([])
    with pytest.raises(ConfigurationError, match="decimals"):
        to_dataframe([trade], decimals="double")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lacks"):
        from_dataframe(pd.DataFrame({"x": [1]}), of=m.Trade)


@given(st.lists(order_books(), max_size=4))
def test_book_levels_has_a_row_per_level(books: list[m.OrderBook]) -> None:
    frame = book_levels(books)
    assert len(frame) == sum(len(b.bids) + len(b.asks) for b in books)
    expected = [
        (b.instrument_uid, side, n, level.price, level.quantity)
        for b in books
        for side, levels in (("bid", b.bids), ("ask", b.asks))
        for n, level in enumerate(levels)
    ]
    rows = list(
        zip(
            frame["instrument_uid"],
            frame["side"],
            frame["level"],
            frame["price"],
            frame["quantity"],
            strict=True,
        )
    )
    assert rows == expected


def test_a_column_inside_an_optional_object_has_one_dtype_whatever_the_rows() -> None:
    cls = m.MarketDataServerSideStreamRequest
    request = m.SubscribeCandlesRequest(waiting_close=True)
    with_it, without = cls(subscribe_candles_request=request), cls()
    frames = [to_dataframe(events, of=cls) for events in ([], [with_it], [without], [with_it, without])]
    column = "subscribe_candles_request.waiting_close"
    assert len({str(frame[column].dtype) for frame in frames}) == 1
    assert from_dataframe(frames[3], of=cls) == [with_it, without]
    with pytest.raises(ConfigurationError, match="index"):
        from_dataframe(to_dataframe([messages_example_trade()]).reset_index(), of=m.Trade)


def messages_example_trade() -> m.Trade:
    return m.Trade(
        instrument_uid="u", price=Decimal("1.5"), quantity=1, time=datetime(2026, 11, 30, tzinfo=UTC)
    )
