"""rxinvest.notebook.charts: what each chart draws, checked against the events, and that it is an image."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import attrs
import matplotlib.dates as mdates
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.formatters import DisplayFormatter
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch

from rxinvest.derived import Bar, BarState, CheckCause, CheckStatus, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.model import Candle, Order, OrderBook, SubscriptionInterval
from rxinvest.notebook.charts import DOWN_COLOUR, UP_COLOUR, candlesticks, depth_chart, positions_chart
from rxinvest.notebook.frames import to_dataframe
from rxinvest.testing.strategies import order_books

T0 = datetime(2025, 11, 21, 7, 0, tzinfo=UTC)
MSK = timezone(timedelta(hours=3))
UID = "962e2a95-02a9-4171-abd7-aa198dbe643a"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Drawing is slow next to the library's other properties: fewer examples, still varied.
few = settings(max_examples=25)


def png(figure: Figure) -> bytes:
    """The figure rendered to PNG, checked to be one of a sane size."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 300 <= width <= 3000
    assert 200 <= height <= 3000
    assert len(data) > 5_000  # something was drawn, not a blank canvas
    return data


def x(moment: datetime) -> float:
    return float(mdates.date2num(moment))


def bar(i: int, o: str, h: str, lo: str, c: str, volume: int, *, uid: str = UID, **more: object) -> Bar:
    start = T0 + timedelta(minutes=i)
    return Bar(
        instrument_uid=uid,
        ticker="SBER",
        interval=timedelta(minutes=1),
        start=start,
        end=start + timedelta(minutes=1),
        open=Decimal(o),
        high=Decimal(h),
        low=Decimal(lo),
        close=Decimal(c),
        volume=volume,
        state=BarState.CLOSED,
        **more,  # type: ignore[arg-type]
    )


BARS = [
    bar(0, "100", "102.5", "99.5", "101", 10),
    bar(1, "101", "101.5", "98", "99", 0),
    bar(2, "99", "99", "99", "99", 3),  # a doji: open == close == high == low
    bar(3, "99", "104", "98.75", "103.25", 25),
]


@attrs.frozen
class Box:
    """One rectangle of a drawn collection (a candle body or a volume bar), read off its path."""

    left: float
    bottom: float
    width: float
    height: float
    face: tuple[float, ...]

    @property
    def centre(self) -> float:
        return self.left + self.width / 2


def boxes(figure: Figure, gid: str) -> list[Box]:
    """The rectangles of the collections with this gid, in any axes of the figure, left to right."""
    found = []
    for collection in (c for ax in figure.axes for c in ax.collections if c.get_gid() == gid):
        assert isinstance(collection, PolyCollection)
        faces = collection.get_facecolor()
        for i, path in enumerate(collection.get_paths()):
            xs, ys = path.vertices[:, 0], path.vertices[:, 1]
            face = tuple(faces[i % len(faces)])
            found.append(Box(xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min(), face))
    return sorted(found, key=lambda box: box.left)


def bodies(figure: Figure) -> list[Box]:
    assert all(c.get_gid() != "candle-bodies" for ax in figure.axes[1:] for c in ax.collections)
    return boxes(figure, "candle-bodies")


def volume_bars(figure: Figure) -> list[Box]:
    return boxes(figure, "volume")


def wicks(figure: Figure) -> LineCollection:
    (found,) = [c for c in figure.axes[0].collections if c.get_gid() == "wicks"]
    assert isinstance(found, LineCollection)
    return found


def check_candles(figure: Figure, expected: list[tuple[datetime, float, float, float, float, float]]) -> None:
    """The figure's bodies, wicks and volumes are those of ``expected``: (start, o, h, l, c, v) by start."""
    drawn = bodies(figure)
    assert len(drawn) == len(expected)
    segments = sorted(wicks(figure).get_segments(), key=lambda s: float(s[0][0]))
    assert len(segments) == len(expected)
    volumes = volume_bars(figure)
    for (start, o, h, lo, c, v), body, wick, vol in zip(expected, drawn, segments, volumes, strict=False):
        assert body.centre == pytest.approx(x(start))
        assert body.bottom == pytest.approx(min(o, c))
        assert body.height == pytest.approx(abs(c - o))
        colour = UP_COLOUR if c >= o else DOWN_COLOUR
        assert body.face[:3] == pytest.approx(to_rgb(colour))
        assert vol.face[:3] == pytest.approx(to_rgb(colour))
        (x0, y0), (x1, y1) = wick
        assert x0 == x1 == pytest.approx(x(start))
        assert sorted((y0, y1)) == pytest.approx([lo, h])
        assert vol.centre == pytest.approx(x(start))
        assert vol.bottom == 0
        assert vol.height == pytest.approx(v)
    assert len(volumes) in (0, len(expected))


def as_expected(bars: list[Bar]) -> list[tuple[datetime, float, float, float, float, float]]:
    rows = {b.start: b for b in bars}  # the last of each start
    return [
        (s, float(b.open), float(b.high), float(b.low), float(b.close), float(b.volume))
        for s, b in sorted(rows.items())
    ]


# --- candlesticks ---------------------------------------------------------------------------------


def test_candlesticks_of_bars_draws_each_bar_and_its_volume_below() -> None:
    figure = candlesticks(BARS)
    price_ax, volume_ax = figure.axes
    check_candles(figure, as_expected(BARS))
    assert len(volume_bars(figure)) == len(BARS)
    assert [c.get_gid() for c in volume_ax.collections] == ["volume"]
    assert volume_ax.get_ylim()[0] == 0
    assert price_ax.get_shared_x_axes().joined(price_ax, volume_ax)
    assert price_ax.get_position().y0 > volume_ax.get_position().y1  # volume below
    assert price_ax.get_title() == "SBER"
    # bodies are 70% of the minute between starts
    assert bodies(figure)[0].width == pytest.approx(0.7 / (24 * 60))
    png(figure)


def test_the_time_axis_is_utc_whatever_zone_the_events_carry() -> None:
    moscow = [attrs.evolve(b, start=b.start.astimezone(MSK), end=b.end.astimezone(MSK)) for b in BARS]
    figure = candlesticks(moscow)
    check_candles(figure, as_expected(BARS))
    png(figure)  # tick labels are made when drawn
    labels = " ".join(t.get_text() for t in figure.axes[-1].get_xticklabels())
    assert "07:0" in labels  # 07:00 UTC, not 10:00 Moscow
    assert "10:0" not in labels


def test_candlesticks_without_volume_has_one_axes() -> None:
    figure = candlesticks(BARS, volume=False, title="one minute")
    assert len(figure.axes) == 1
    assert figure.axes[0].get_title() == "one minute"
    assert not volume_bars(figure)
    check_candles(figure, as_expected(BARS))
    png(figure)


def test_candlesticks_of_candles_keeps_the_last_revision_of_each_start_in_time_order() -> None:
    def candle(i: int, close: str, volume: int) -> Candle:
        return Candle(
            interval=SubscriptionInterval.SUBSCRIPTION_INTERVAL_FIVE_MINUTES,
            open=Decimal(100),
            high=Decimal(110),
            low=Decimal(90),
            close=Decimal(close),
            volume=volume,
            time=T0 + timedelta(minutes=5 * i),
            instrument_uid=UID,
        )

    events = [candle(2, "95", 7), candle(0, "101", 1), candle(0, "105", 4), candle(1, "100", 2)]
    figure = candlesticks(iter(events))  # any iterable, a generator too
    check_candles(
        figure,
        [
            (T0, 100, 110, 90, 105, 4),
            (T0 + timedelta(minutes=5), 100, 110, 90, 100, 2),
            (T0 + timedelta(minutes=10), 100, 110, 90, 95, 7),
        ],
    )
    assert figure.axes[0].get_title() == UID
    png(figure)


def test_one_candle_is_as_wide_as_its_interval_allows() -> None:
    one = Candle(
        interval=SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_HOUR,
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal("0.5"),
        close=Decimal("1.5"),
        volume=1,
        time=T0,
    )
    (body,) = bodies(candlesticks([one]))
    assert body.width == pytest.approx(0.7 / 24)
    (body,) = bodies(candlesticks([BARS[0]]))
    assert body.width == pytest.approx(0.7 / (24 * 60))


def test_candlesticks_of_a_dataframe_as_to_dataframe_makes_it() -> None:
    for frame in (to_dataframe(BARS), to_dataframe(BARS, decimals="float")):
        assert isinstance(frame.index, pd.DatetimeIndex)
        figure = candlesticks(frame)
        check_candles(figure, as_expected(BARS))
        assert figure.axes[0].get_title() == "SBER"
    png(figure)


def test_candlesticks_of_a_hand_made_dataframe_with_a_naive_index_or_a_time_column() -> None:
    rows = {
        "open": [Decimal(1), Decimal(2)],
        "high": [Decimal(3), Decimal(4)],
        "low": [Decimal("0.5"), Decimal(1)],
        "close": [Decimal(2), Decimal("1.5")],
        "volume": [5, 6],
    }
    naive = pd.DataFrame(rows, index=pd.DatetimeIndex([datetime(2025, 1, 1, 7), datetime(2025, 1, 1, 8)]))
    expected = [
        (datetime(2025, 1, 1, 7, tzinfo=UTC), 1.0, 3.0, 0.5, 2.0, 5.0),
        (datetime(2025, 1, 1, 8, tzinfo=UTC), 2.0, 4.0, 1.0, 1.5, 6.0),
    ]
    check_candles(candlesticks(naive), expected)
    with_column = pd.DataFrame({**rows, "time": [e[0] for e in expected]})
    check_candles(candlesticks(with_column), expected)


bar_lists = st.lists(
    st.tuples(
        st.integers(0, 500),  # minute
        st.lists(st.decimals(1, 10_000, places=2), min_size=4, max_size=4),
        st.integers(0, 10**6),
    ),
    min_size=1,
    max_size=30,
).map(
    lambda rows: [
        bar(
            minute,
            str(prices[0]),
            str(max(prices)),
            str(min(prices)),
            str(prices[3]),
            volume,
        )
        for minute, prices, volume in rows
    ]
)


@few
@given(bar_lists)
def test_candlesticks_draw_any_bars(bars: list[Bar]) -> None:
    figure = candlesticks(bars)
    check_candles(figure, as_expected(bars))
    assert len(volume_bars(figure)) == len(as_expected(bars))


def test_candlesticks_into_a_given_axes_puts_volume_on_a_second_y_axis() -> None:
    figure = Figure()
    ax = figure.add_subplot()
    assert candlesticks(BARS, ax=ax) is figure
    assert len(figure.axes) == 2  # ax and its twin
    check_candles(figure, as_expected(BARS))
    twin = figure.axes[1]
    assert twin.get_ylim() == pytest.approx((0, 4 * 25))  # volumes in the lowest quarter
    png(figure)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ([], "nothing to draw"),
        (iter(()), "nothing to draw"),
        (BARS[0], "got a Bar"),
        ("bars", "got a str"),
        (42, "got a int"),
        ([BARS[0], 3], "item #1 is a int"),
        ([BARS[0], bar(1, "1", "1", "1", "1", 1, uid="other")], "one instrument"),
        ([Candle(time=T0, open=Decimal(1), volume=1)], "lacks a price"),
        ([Candle(open=Decimal(1), high=Decimal(1), low=Decimal(1), close=Decimal(1))], "has no time"),
        (pd.DataFrame({"open": [1.0]}), "lacks ['high', 'low', 'close', 'volume']"),
        (
            pd.DataFrame({"open": [1], "high": [1], "low": [1], "close": [1], "volume": [1]}),
            "neither a DatetimeIndex",
        ),
        (
            pd.DataFrame(
                {"open": [None], "high": [1], "low": [1], "close": [1], "volume": [1]},
                index=pd.DatetimeIndex([T0]),
            ),
            "column open is",
        ),
        (to_dataframe([], of=Bar), "nothing to draw"),
    ],
)
def test_candlesticks_refuse_what_they_cannot_draw(given: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match="candlesticks") as caught:
        candlesticks(given)  # type: ignore[arg-type]
    assert says in str(caught.value)


# --- depth ----------------------------------------------------------------------------------------


def steps(figure: Figure, side: str) -> StepPatch | None:
    found = [p for p in figure.axes[0].patches if isinstance(p, StepPatch) and p.get_gid() == side]
    assert len(found) <= 1
    return found[0] if found else None


def check_depth(figure: Figure, book: OrderBook, levels: int | None = None) -> None:
    """Each side's step values at its prices are the totals of the levels at that price or better."""
    bids = sorted(book.bids, key=lambda o: o.price or 0, reverse=True)[:levels]
    asks = sorted(book.asks, key=lambda o: o.price or 0)[:levels]
    for side, kept, better in (
        ("bids", bids, lambda p, q: q >= p),
        ("asks", asks, lambda p, q: q <= p),
    ):
        patch = steps(figure, side)
        if not kept:
            assert patch is None
            continue
        assert patch is not None
        values, edges, baseline = patch.get_data()
        prices = sorted(float(o.price) for o in kept if o.price is not None)
        totals = [sum(o.quantity for o in kept if better(p, float(o.price or 0))) for p in prices]
        assert list(values) == pytest.approx(totals)
        assert list(edges[1:] if side == "bids" else edges[:-1]) == pytest.approx(prices)
        assert baseline == 0
    mids = [line for line in figure.axes[0].lines if line.get_gid() == "mid"]
    if bids and asks:
        (mid,) = mids
        assert mid.get_xdata()[0] == pytest.approx(float((bids[0].price + asks[0].price) / 2))  # type: ignore[operator]
    else:
        assert not mids


def level(price: str, quantity: int) -> Order:
    return Order(price=Decimal(price), quantity=quantity)


BOOK = OrderBook(
    depth=10,
    is_consistent=True,
    bids=(level("99.5", 3), level("99", 5), level("98.5", 1)),
    asks=(level("100", 2), level("100.5", 7)),
    time=T0,
    instrument_uid=UID,
    ticker="SBER",
)


def test_depth_chart_steps_are_cumulative_quantities_and_the_mid_is_marked() -> None:
    figure = depth_chart(BOOK)
    check_depth(figure, BOOK)
    bids = steps(figure, "bids")
    assert bids is not None
    assert list(bids.get_data().values) == [9, 8, 3]  # by hand: 98.5 -> 1+5+3, 99 -> 5+3, 99.5 -> 3
    assert "SBER" in figure.axes[0].get_title()
    assert "07:00:00 UTC" in figure.axes[0].get_title()
    assert {t.get_text() for t in figure.axes[0].get_legend().get_texts()} == {"bids", "asks", "mid 99.75"}
    png(figure)


@few
@given(order_books(depth=50), st.none() | st.integers(1, 60))
def test_depth_chart_of_any_book(book: OrderBook, levels: int | None) -> None:
    check_depth(depth_chart(book, levels=levels), book, levels)


def test_depth_chart_takes_levels_in_any_order() -> None:
    shuffled = OrderBook(
        bids=(level("1", 1), level("3", 2), level("2", 4)), asks=(level("5", 1), level("4", 3))
    )
    figure = depth_chart(shuffled)
    check_depth(figure, shuffled)
    bids, asks = steps(figure, "bids"), steps(figure, "asks")
    assert bids is not None
    assert asks is not None
    assert list(bids.get_data().values) == [7, 6, 2]
    assert list(asks.get_data().values) == [3, 4]


@pytest.mark.parametrize(
    "book",
    [
        OrderBook(bids=BOOK.bids, time=T0),
        OrderBook(asks=BOOK.asks),
        OrderBook(asks=(level("10", 4),)),
        OrderBook(),
    ],
    ids=["bids only", "asks only", "one level", "empty"],
)
def test_depth_chart_of_a_book_missing_sides(book: OrderBook) -> None:
    figure = depth_chart(book)
    check_depth(figure, book)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == (["empty book"] if not book.bids and not book.asks else [])
    png(figure)


def test_depth_chart_levels_and_a_given_axes() -> None:
    figure = Figure()
    ax = figure.subplots(1, 2)[1]
    assert depth_chart(BOOK, levels=2, ax=ax) is figure
    bids = [p for p in ax.patches if p.get_gid() == "bids"]
    assert isinstance(bids[0], StepPatch)
    assert list(bids[0].get_data().values) == [8, 3]
    assert not figure.axes[0].patches


@pytest.mark.parametrize(
    ("given", "levels", "says"),
    [
        ([BOOK], None, "expects one rxinvest.model.OrderBook; got a list"),
        (None, None, "got a NoneType"),
        (BOOK, 0, "levels must be a positive int"),
        (BOOK, -3, "levels must be a positive int"),
        (BOOK, True, "levels must be a positive int"),
        (BOOK, "5", "levels must be a positive int"),
        (OrderBook(bids=(Order(quantity=3),)), None, "bid #0 is not an Order with a price"),
    ],
)
def test_depth_chart_refuses(given: object, levels: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match="depth_chart") as caught:
        depth_chart(given, levels=levels)  # type: ignore[arg-type]
    assert says in str(caught.value)


# --- positions ------------------------------------------------------------------------------------


VERDICTS = (CheckStatus.UNEXPLAINED, CheckStatus.MISSING)


def check(
    minute: int,
    expected: str,
    reported: str | None,
    status: CheckStatus = CheckStatus.MATCHED,
    *,
    uid: str = UID,
    currency: str = "",
    account: str = "2000",
) -> PositionCheck:
    exp = Decimal(expected)
    rep = None if reported is None else Decimal(reported)
    return PositionCheck(
        account_id=account,
        instrument_uid=uid,
        currency=currency,
        time=T0 + timedelta(minutes=minute),
        expected=exp,
        reported=rep,
        difference=(rep or 0) - exp,
        status=status,
        cause=CheckCause.TIMEOUT
        if status in (CheckStatus.UNEXPLAINED, CheckStatus.MISSING)
        else CheckCause.FILL,
    )


SHARES = [
    check(0, "0", None),
    check(1, "10", "0", CheckStatus.PENDING),
    check(3, "10", "0", CheckStatus.MISSING),
    check(4, "0", "0"),
]
CASH = [
    check(0, "1000", "1000", uid="", currency="rub"),
    check(1, "1000", "1000", uid="", currency="rub"),
    check(2, "1000", "750.5", CheckStatus.UNEXPLAINED, uid="", currency="rub"),
    check(5, "750.5", "1250", uid="", currency="rub"),
]


def lines(ax: object, gid: str) -> list[Line2D]:
    return [line for line in ax.lines if line.get_gid() == gid]  # type: ignore[attr-defined]


def floats(values: list[Decimal | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def test_positions_chart_draws_expected_and_reported_per_position_and_the_verdicts() -> None:
    figure = positions_chart(SHARES[:2] + CASH + SHARES[2:])  # interleaved, as a ledger emits them
    shares_ax, cash_ax, pnl_ax = figure.axes
    for ax, events in ((shares_ax, SHARES), (cash_ax, CASH)):
        (expected,) = lines(ax, "expected")
        (reported,) = lines(ax, "reported")
        assert expected.get_drawstyle() == "steps-post"
        assert list(expected.get_xdata()) == pytest.approx([x(e.time) for e in events])
        assert list(expected.get_ydata()) == pytest.approx(floats([e.expected for e in events]))
        assert list(reported.get_ydata()) == pytest.approx(floats([e.reported for e in events]), nan_ok=True)
    (missing,) = [c for c in shares_ax.collections if c.get_gid() == "missing"]
    (unexplained,) = [c for c in cash_ax.collections if c.get_gid() == "unexplained"]
    assert isinstance(missing, PathCollection)
    assert missing.get_offsets().tolist()[0] == pytest.approx([x(T0 + timedelta(minutes=3)), 0.0])
    assert unexplained.get_offsets().tolist()[0] == pytest.approx([x(T0 + timedelta(minutes=2)), 750.5])
    assert len(missing.get_offsets()) == len(unexplained.get_offsets()) == 1
    assert "missing" in {t.get_text() for t in shares_ax.get_legend().get_texts()}
    assert "unexplained" in {t.get_text() for t in cash_ax.get_legend().get_texts()}
    assert not [c for c in cash_ax.collections if c.get_gid() == "missing"]
    assert "2000 · " + UID in shares_ax.get_title(loc="left")
    assert "2000 · RUB" in cash_ax.get_title(loc="left")
    # cash P&L: the money's reported amount minus its first
    (pnl,) = lines(pnl_ax, "pnl")
    assert list(pnl.get_ydata()) == pytest.approx([0, 0, -249.5, 250])
    assert list(pnl.get_xdata()) == pytest.approx([x(e.time) for e in CASH])
    assert "cash P&L" in pnl_ax.get_title(loc="left")
    png(figure)


def test_positions_chart_sorts_each_positions_events_by_time() -> None:
    figure = positions_chart(list(reversed(SHARES)))
    (expected,) = lines(figure.axes[0], "expected")
    assert list(expected.get_ydata()) == pytest.approx(floats([e.expected for e in SHARES]))


def test_positions_chart_without_money_says_so_in_the_pnl_panel() -> None:
    figure = positions_chart(SHARES)
    assert len(figure.axes) == 2
    assert not lines(figure.axes[1], "pnl")
    assert [t.get_text() for t in figure.axes[1].texts] == ["no money positions reported"]
    png(figure)


def test_positions_chart_into_a_given_axes_draws_every_position_there_without_pnl() -> None:
    figure = Figure()
    ax = figure.add_subplot()
    assert positions_chart(SHARES + CASH + [check(0, "5", "5", account="other")], ax=ax) is figure
    assert len(figure.axes) == 1
    assert len(lines(ax, "expected")) == len(lines(ax, "reported")) == 3
    assert not lines(ax, "pnl")
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert f"other · {UID}: expected" in labels
    assert "2000 · RUB: unexplained" in labels
    png(figure)


statuses = st.sampled_from(list(CheckStatus))
position_events = st.lists(
    st.tuples(
        st.sampled_from([("2000", UID, ""), ("2000", "", "rub"), ("3000", "", "usd"), ("3000", UID, "")]),
        st.integers(0, 10_000),  # seconds after T0
        st.decimals(-(10**6), 10**6, places=2),
        st.none() | st.decimals(-(10**6), 10**6, places=2),
        statuses,
    ),
    min_size=1,
    max_size=25,
)


@few
@given(position_events)
def test_positions_chart_of_any_checks(
    rows: list[tuple[tuple[str, str, str], int, Decimal, Decimal | None, CheckStatus]],
) -> None:
    events = [
        PositionCheck(
            account_id=account,
            instrument_uid=uid,
            currency=currency,
            time=T0 + timedelta(seconds=second),
            expected=expected,
            reported=reported,
            difference=(reported or 0) - expected,
            status=status,
            cause=CheckCause.FILL,
        )
        for (account, uid, currency), second, expected, reported, status in rows
    ]
    figure = positions_chart(events)
    positions: dict[tuple[str, str, str], list[PositionCheck]] = {}
    for event in events:
        positions.setdefault((event.account_id, event.instrument_uid, event.currency), []).append(event)
    assert len(figure.axes) == len(positions) + 1
    pnl_lines = lines(figure.axes[-1], "pnl")
    money_lines = iter(pnl_lines)
    for ax, group in zip(figure.axes, positions.values(), strict=False):
        group = sorted(group, key=lambda e: e.time)  # stable: ties keep their order
        (expected,) = lines(ax, "expected")
        (reported,) = lines(ax, "reported")
        assert list(expected.get_ydata()) == pytest.approx(floats([e.expected for e in group]))
        assert list(reported.get_ydata()) == pytest.approx(floats([e.reported for e in group]), nan_ok=True)
        for status, gid in ((CheckStatus.UNEXPLAINED, "unexplained"), (CheckStatus.MISSING, "missing")):
            judged = [e for e in group if e.status is status]
            points = [c for c in ax.collections if c.get_gid() == gid]
            assert len(points) == (1 if judged else 0)
            if judged:
                assert len(points[0].get_offsets()) == len(judged)
        money = [e.reported for e in group if e.is_money and e.reported is not None]
        if money:
            pnl = next(money_lines)
            assert list(pnl.get_ydata()) == pytest.approx([float(m - money[0]) for m in money])
    assert next(money_lines, None) is None


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ([], "nothing to draw"),
        (SHARES[0], "got a PositionCheck"),
        ("checks", "got a str"),
        (None, "got a NoneType"),
        ([SHARES[0], BARS[0]], "item #1 is a Bar"),
    ],
)
def test_positions_chart_refuses(given: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match="positions_chart") as caught:
        positions_chart(given)  # type: ignore[arg-type]
    assert says in str(caught.value)


# --- in a notebook --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: candlesticks(BARS), lambda: depth_chart(BOOK), lambda: positions_chart(SHARES + CASH)],
    ids=["candlesticks", "depth_chart", "positions_chart"],
)
def test_a_chart_displays_as_a_png_image_in_ipython(make: object) -> None:
    """What a notebook cell ending in ``candlesticks(bars)`` shows: IPython's formatter finds a PNG
    (a plain Figure made without pyplot gives only text unless %matplotlib inline ran)."""
    data, _ = DisplayFormatter().format(make())  # type: ignore[operator]
    assert data["image/png"].startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data["image/png"][16:24])
    assert width > 300
    assert height > 200


def test_importing_the_charts_does_not_import_pyplot() -> None:
    code = "import sys, rxinvest.notebook.charts; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
