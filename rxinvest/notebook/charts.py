"""Charts of rxinvest's events for Jupyter, drawn with plain matplotlib.

* :func:`candlesticks`: OHLC candles of :class:`~rxinvest.derived.Bar` or :class:`~rxinvest.model.Candle`
  events (or of a DataFrame of them), with a volume panel below.
* :func:`depth_chart`: the cumulative quantity of one :class:`~rxinvest.model.OrderBook` snapshot, by
  price, bids and asks.
* :func:`positions_chart`: :class:`~rxinvest.derived.PositionCheck` events: what the fills say and
  what the positions stream says, per position, the verdicts, and the money positions' cash P&L.

Each returns a :class:`matplotlib.figure.Figure`, which a notebook cell displays as a PNG image when
it is the cell's value (``candlesticks(bars)`` alone in a cell): the figures made here carry a
``_repr_png_``, which a plain ``Figure`` lacks unless ``%matplotlib inline`` (or a pyplot figure) has
registered matplotlib's formatter. To show one from inside a cell, ``display(fig)``; to keep it,
``fig.savefig("chart.png")``. Given ``ax=``, a function draws into that axes and returns the figure
holding it, which displays the way that figure does.

Rules of this module:

* **Units as the events have them.** Prices and amounts are ``Decimal`` in the events and become
  ``float`` only to be drawn; volumes and book quantities are lots, positions units (pieces) for
  securities and amounts for money. Times are drawn in UTC (a naive time is taken as UTC).
* **No pyplot, no GUI.** Figures are made with the object-oriented API (``Figure``), so nothing
  depends on a backend or a display, and importing this module does not import ``matplotlib.pyplot``.
  Figures are not registered with pyplot: nothing is shown twice, nothing leaks.
* **Threads: none.** Each function draws what it is given, on the calling thread, and returns; to
  chart a live stream, collect its events (or ``to_dataframe`` them) and call again.
* **Errors.** Empty input, the wrong types, or values a chart cannot place (a candle without prices,
  a level without a price) raise :class:`~rxinvest.errors.ConfigurationError` saying what was
  expected. An order book with no levels at all is no error: its chart says it is empty.
* **Artists are findable.** The drawn artists carry a ``gid`` (``"candle-bodies"``, ``"wicks"``,
  ``"volume"``, ``"bids"``, ``"asks"``, ``"mid"``, ``"expected"``, ``"reported"``, ``"unexplained"``,
  ``"missing"``, ``"pnl"``), so tests and callers can find them without relying on drawing order.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, Locator

from rxinvest.derived import Bar, CheckStatus, PositionCheck
from rxinvest.errors import ConfigurationError
from rxinvest.model import Candle, Order, OrderBook
from rxinvest.model.kinds import INTERVAL_LENGTH

__all__ = ["candlesticks", "depth_chart", "positions_chart"]

UP_COLOUR = "#26a69a"  # a candle that closed at or above its open
DOWN_COLOUR = "#ef5350"  # a candle that closed below its open
BID_COLOUR = "#26a69a"
ASK_COLOUR = "#ef5350"
#: A candle body's width, as a share of the smallest distance between two candles' starts.
BODY_SHARE = 0.7


class _InlineFigure(Figure):
    """A Figure that a Jupyter cell shows as a PNG image by itself (a plain ``Figure`` shows only its
    text repr unless matplotlib's inline formatter is registered; when it is, that formatter wins,
    and the image is the same)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _root_figure(ax: Axes) -> Figure:
    """The figure an axes is drawn in (through a subfigure, if it is in one)."""
    figure = ax.figure
    return figure if isinstance(figure, Figure) else figure.figure


# matplotlib.dates has no type hints: its few functions used here, typed.
_date_locator: Callable[..., Locator] = mdates.AutoDateLocator
_date_formatter: Callable[..., Formatter] = mdates.ConciseDateFormatter
_date2num: Callable[[datetime], float] = mdates.date2num


def _x(moment: datetime) -> float:
    """A time as matplotlib's date number (days since its epoch), from UTC."""
    return float(_date2num(_utc(moment)))


def _date_axis(ax: Axes) -> None:
    locator = _date_locator(tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(_date_formatter(locator, tz=UTC))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _describe(value: object) -> str:
    return type(value).__name__


# --- candlesticks ---------------------------------------------------------------------------------


@attrs.frozen
class _Candle:
    """One candle as drawn: floats for prices and volume, an aware UTC start."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


_OHLCV = ("open", "high", "low", "close", "volume")
_EXPECTED_CANDLES = (
    "an iterable of rxinvest.derived.Bar or rxinvest.model.Candle events, or a pandas DataFrame with "
    "columns open, high, low, close, volume and a DatetimeIndex (what to_dataframe gives)"
)


def candlesticks(
    bars: Iterable[Bar | Candle] | pd.DataFrame,
    *,
    volume: bool = True,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A candlestick chart of one instrument's bars, with their volumes below.

    ``bars``: :class:`~rxinvest.derived.Bar` or :class:`~rxinvest.model.Candle` events (a bar is placed
    at its ``start``, a candle at its ``time``), or a pandas DataFrame with columns ``open``, ``high``,
    ``low``, ``close``, ``volume`` (Decimals or numbers) and the start times as its DatetimeIndex, as
    ``to_dataframe`` makes of either (without a DatetimeIndex, a ``start`` or ``time`` column is used).
    Order does not matter; of several with the same start (a forming candle's revisions, a corrected
    bar) the last given is drawn. Events of more than one ``instrument_uid`` are refused.

    Candles are green when they close at or above their open, red below; wicks span low to high.
    Bodies are :data:`BODY_SHARE` of the smallest distance between two starts wide (one candle: its
    bar's length, or its candle interval's, else a minute). The time axis is UTC.

    ``volume``: a volume panel (lots) below the candles, sharing their time axis; with ``ax``, the
    volumes are drawn in ``ax`` itself instead, on a second y axis, as the lowest quarter of it.
    ``title``: defaults to the instrument's ticker (or uid) when the events name one.
    Returns the figure (new, or the one holding ``ax``); raises ConfigurationError on empty input,
    the wrong types, or a candle without a time or prices.
    """
    candles, name, single = _candles_of(bars)
    xs = [_x(candle.start) for candle in candles]
    length = _body_length(candles, single)
    width = BODY_SHARE * length / timedelta(days=1)
    colours = [UP_COLOUR if c.close >= c.open else DOWN_COLOUR for c in candles]

    price_ax: Axes
    volume_ax: Axes | None = None
    if ax is None:
        figure: Figure = _InlineFigure(figsize=(10, 6 if volume else 4.5), layout="constrained")
        if volume:
            price_ax, volume_ax = figure.subplots(
                2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)}, squeeze=True
            )
        else:
            price_ax = figure.add_subplot()
    else:
        figure = _root_figure(ax)
        price_ax = ax
        if volume:
            volume_ax = ax.twinx()
            ax.set_zorder(volume_ax.get_zorder() + 1)  # the candles over the volumes, not under
            ax.patch.set_visible(False)  # ... and the volumes seen through the candles' background

    price_ax.vlines(
        xs, [c.low for c in candles], [c.high for c in candles], colors=colours, linewidth=1, gid="wicks"
    )
    _boxes(  # a candle that closed at its open (a doji) is a line: the edge of a flat box
        price_ax,
        [(x, min(c.open, c.close), abs(c.close - c.open)) for x, c in zip(xs, candles, strict=True)],
        width,
        colours,
        gid="candle-bodies",
        alpha=1.0,
    )
    price_ax.set_ylabel("price")
    if title is not None or name:
        price_ax.set_title(title if title is not None else name)
    _date_axis(price_ax)
    price_ax.set_xlabel("time (UTC)")

    if volume_ax is not None:
        _boxes(
            volume_ax,
            [(x, 0.0, c.volume) for x, c in zip(xs, candles, strict=True)],
            width,
            colours,
            gid="volume",
            alpha=0.5 if ax is not None else 0.8,
        )
        volume_ax.set_ylabel("volume (lots)")
        if ax is None:
            price_ax.set_xlabel("")
            volume_ax.set_xlabel("time (UTC)")
            _date_axis(volume_ax)
            volume_ax.set_ylim(bottom=0)
        else:
            top = max(c.volume for c in candles)
            volume_ax.set_ylim(0, 4 * top if top > 0 else 1)
    return figure


def _boxes(
    ax: Axes,
    boxes: Sequence[tuple[float, float, float]],
    width: float,
    colours: Sequence[str],
    *,
    gid: str,
    alpha: float,
) -> None:
    """Rectangles centred on ``x``, from ``bottom`` up by ``height`` (one collection: thousands of
    them draw in a blink, where as many ``Axes.bar`` patches take seconds)."""
    half = width / 2
    corners = [
        [(x - half, bottom), (x + half, bottom), (x + half, bottom + height), (x - half, bottom + height)]
        for x, bottom, height in boxes
    ]
    faces = [to_rgba(colour, alpha) for colour in colours]
    ax.add_collection(
        PolyCollection(corners, facecolors=faces, edgecolors=colours, linewidths=0.8, zorder=3, gid=gid)
    )
    ax.autoscale_view()


def _candles_of(bars: object) -> tuple[list[_Candle], str, timedelta | None]:
    """The candles to draw, by start (the last of each start), the instrument's name, and the length
    of a single candle when the input says it."""
    if isinstance(bars, pd.DataFrame):
        by_start, name, single = _from_frame(bars)
    elif isinstance(bars, Bar | Candle | str | bytes) or not isinstance(bars, Iterable):
        raise ConfigurationError(f"candlesticks expects {_EXPECTED_CANDLES}; got a {_describe(bars)}")
    else:
        by_start, name, single = _from_events(bars)
    if not by_start:
        raise ConfigurationError(
            f"candlesticks has nothing to draw: it expects {_EXPECTED_CANDLES}, non-empty"
        )
    return [by_start[start] for start in sorted(by_start)], name, single


def _from_events(events: Iterable[object]) -> tuple[dict[datetime, _Candle], str, timedelta | None]:
    by_start: dict[datetime, _Candle] = {}
    uids: set[str] = set()
    name, single = "", None
    for index, event in enumerate(events):
        if isinstance(event, Bar):
            start = event.start
            prices: tuple[Decimal | None, ...] = (event.open, event.high, event.low, event.close)
            single = event.end - event.start
        elif isinstance(event, Candle):
            if event.time is None:
                raise ConfigurationError(f"candlesticks: candle #{index} has no time")
            start, prices = event.time, (event.open, event.high, event.low, event.close)
            single = INTERVAL_LENGTH.get(event.interval)
        else:
            raise ConfigurationError(
                f"candlesticks expects {_EXPECTED_CANDLES}; item #{index} is a {_describe(event)}"
            )
        open_, high, low, close = prices
        if open_ is None or high is None or low is None or close is None:
            raise ConfigurationError(f"candlesticks: candle #{index} (at {start}) lacks a price")
        if event.instrument_uid:
            uids.add(event.instrument_uid)
        name = name or event.ticker or event.instrument_uid
        start = _utc(start)
        by_start[start] = _Candle(
            start, float(open_), float(high), float(low), float(close), float(event.volume)
        )
    if len(uids) > 1:
        raise ConfigurationError(
            f"candlesticks draws one instrument; these events have {len(uids)}: {sorted(uids)}"
        )
    return by_start, name, single


def _from_frame(frame: pd.DataFrame) -> tuple[dict[datetime, _Candle], str, timedelta | None]:
    missing = [column for column in _OHLCV if column not in frame.columns]
    if missing:
        raise ConfigurationError(f"candlesticks expects {_EXPECTED_CANDLES}; the DataFrame lacks {missing}")
    if isinstance(frame.index, pd.DatetimeIndex):
        index = frame.index
    else:
        column = next((c for c in ("start", "time") if c in frame.columns), None)
        if column is None:
            raise ConfigurationError(
                f"candlesticks expects {_EXPECTED_CANDLES}; the DataFrame has neither a DatetimeIndex "
                "nor a start or time column"
            )
        try:
            index = pd.DatetimeIndex(frame[column])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"candlesticks: the DataFrame's {column} column is not times") from exc
    index = index.tz_localize(UTC) if index.tz is None else index.tz_convert(UTC)
    name = ""
    for column in ("instrument_uid", "ticker"):
        if column in frame.columns:
            names = {str(v) for v in frame[column] if isinstance(v, str) and v}
            if column == "instrument_uid" and len(names) > 1:
                raise ConfigurationError(
                    f"candlesticks draws one instrument; this DataFrame has {len(names)}: {sorted(names)}"
                )
            name = next(iter(names)) if len(names) == 1 else name
    by_start: dict[datetime, _Candle] = {}
    rows = zip(index, *(frame[column] for column in _OHLCV), strict=True)
    for position, (start, *values) in enumerate(rows):
        if pd.isna(start):
            raise ConfigurationError(f"candlesticks: row {position} of the DataFrame has no time")
        numbers = [_number(value, column, position) for value, column in zip(values, _OHLCV, strict=True)]
        when = start.to_pydatetime()
        by_start[when] = _Candle(when, *numbers)
    single = None
    if len(frame) == 1 and "end" in frame.columns:  # one bar: its own length, when it has an end
        end = frame["end"].iloc[0]
        if isinstance(end, datetime) and not pd.isna(end):
            single = _utc(pd.Timestamp(end).to_pydatetime()) - next(iter(by_start))
    return by_start, name, single


def _number(value: Any, column: str, position: int) -> float:
    """A DataFrame cell as a float: Decimals and numbers are; None, NaN and the rest are refused."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float):
        try:
            value = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"candlesticks: row {position}, column {column} is {value!r}, not a number"
            ) from exc
    number = float(value)
    if math.isnan(number):
        raise ConfigurationError(f"candlesticks: row {position}, column {column} is missing (NaN)")
    return number


def _body_length(candles: Sequence[_Candle], single: timedelta | None) -> timedelta:
    gaps = [b.start - a.start for a, b in itertools.pairwise(candles)]
    if gaps:
        return min(gaps)  # starts are distinct and sorted: every gap is positive
    if single is not None and single > timedelta(0):
        return single
    return timedelta(minutes=1)


# --- order-book depth -----------------------------------------------------------------------------


def depth_chart(book: OrderBook, *, levels: int | None = None, ax: Axes | None = None) -> Figure:
    """The depth of one order-book snapshot: at each price, the quantity (lots) of the levels at it
    and better, bids (green) to the left and asks (red) to the right, as step areas.

    Left of a bid price (down to the next bid) the bids' area stands at the total of the bids at that
    price or higher; right of an ask price (up to the next ask) the asks' area at the total of the asks
    at that price or lower: the ``cumulative quantity`` a market order would sweep down or up to
    there. Each side's area goes on past its last level by a twentieth of the book's price span, so
    its total shows (drawn with ``Axes.stairs``: a ``StepPatch`` whose values are the totals). The
    mid ``(best bid + best ask) / 2`` is a dashed vertical line when both sides have levels.
    ``levels``: only the best so many levels of each side (None: all). A side with no levels draws
    nothing; a book with none says "empty book".
    Returns the figure (new, or the one holding ``ax``); raises ConfigurationError when ``book`` is
    not an OrderBook, ``levels`` is not a positive int, or a level has no price.
    """
    if not isinstance(book, OrderBook):
        raise ConfigurationError(f"depth_chart expects one rxinvest.model.OrderBook; got a {_describe(book)}")
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 1):
        raise ConfigurationError(f"depth_chart: levels must be a positive int or None, not {levels!r}")
    bids = _side(book.bids, "bid", descending=True)[:levels]
    asks = _side(book.asks, "ask", descending=False)[:levels]

    if ax is None:
        figure: Figure = _InlineFigure(figsize=(8, 4.5), layout="constrained")
        ax = figure.add_subplot()
    else:
        figure = _root_figure(ax)

    pad = _padding([float(price) for price, _ in bids + asks])
    if bids:  # from the lowest price up: on (previous price, price] the total of the bids >= price
        prices = [float(price) for price, _ in reversed(bids)]
        totals = _running_totals([quantity for _, quantity in bids])[::-1]
        _stairs(ax, totals, [prices[0] - pad, *prices], BID_COLOUR, "bids")
    if asks:  # on [price, next price) the total of the asks <= price
        prices = [float(price) for price, _ in asks]
        totals = _running_totals([quantity for _, quantity in asks])
        _stairs(ax, totals, [*prices, prices[-1] + pad], ASK_COLOUR, "asks")
    if bids and asks:
        mid = (bids[0][0] + asks[0][0]) / 2
        ax.axvline(float(mid), color="grey", linestyle="--", linewidth=1, label=f"mid {mid}", gid="mid")
    if not bids and not asks:
        ax.text(0.5, 0.5, "empty book", transform=ax.transAxes, ha="center", va="center", color="grey")
    else:
        ax.legend(loc="upper center")
    ax.set_xlabel("price")
    ax.set_ylabel("cumulative quantity (lots)")
    ax.set_ylim(bottom=0)
    name = book.ticker or book.instrument_uid or book.figi
    when = _utc(book.time).isoformat(sep=" ").replace("+00:00", " UTC") if book.time is not None else ""
    heading = " · ".join(part for part in (name, when) if part)
    if heading:
        ax.set_title(heading)
    return figure


def _side(orders: Sequence[Order], what: str, *, descending: bool) -> list[tuple[Decimal, int]]:
    """One side's (price, quantity) levels, best first (by price, whatever order they came in)."""
    out = []
    for index, order in enumerate(orders):
        if not isinstance(order, Order) or order.price is None:
            raise ConfigurationError(f"depth_chart: {what} #{index} is not an Order with a price: {order!r}")
        out.append((order.price, order.quantity))
    return sorted(out, key=lambda level: level[0], reverse=descending)


def _stairs(ax: Axes, totals: Sequence[int], edges: Sequence[float], colour: str, side: str) -> None:
    """One side's cumulative quantities as a filled step area: ``totals[i]`` between ``edges[i]`` and
    ``edges[i + 1]``."""
    ax.stairs(
        totals,
        edges,
        fill=True,
        facecolor=to_rgba(colour, 0.3),
        edgecolor=colour,
        linewidth=1.5,
        label=side,
        gid=side,
    )


def _padding(prices: Sequence[float]) -> float:
    """How far each side's area goes past its last level, so that its total shows: a twentieth of
    the book's price span (a hundredth of the price for a book of one level)."""
    if not prices:
        return 0.0
    span = max(prices) - min(prices)
    return span / 20 if span > 0 else (abs(prices[0]) / 100 or 1.0)


def _running_totals(quantities: Sequence[int]) -> list[int]:
    totals, total = [], 0
    for quantity in quantities:
        total += quantity
        totals.append(total)
    return totals


# --- positions ------------------------------------------------------------------------------------


_EXPECTED_CHECKS = "an iterable of rxinvest.derived.PositionCheck events"
_VERDICTS = {
    CheckStatus.UNEXPLAINED: ("unexplained", "X", "#d62728"),
    CheckStatus.MISSING: ("missing", "o", "#9467bd"),
}


def positions_chart(checks: Iterable[PositionCheck], *, ax: Axes | None = None) -> Figure:
    """The reconciliation of an account's positions over time, from PositionCheck events.

    One panel per position (an account's instrument, or its money in one currency), in the order
    they first appear: ``expected`` (what the fills say) and ``reported`` (what the positions stream
    says; gaps where it has said nothing yet) as step lines, each value holding until the next
    event, and the verdicts as points at the reported value (or the expected, when nothing was
    reported): UNEXPLAINED as crosses, MISSING as circles, in the legend. Securities are in units
    (pieces), money in its currency.

    Below them, **cash P&L**: for each money position, its reported amount minus the first amount
    reported, over time. It is the change of cash, not a P&L marked to market: buying a security
    shows as a loss until it is sold, and what the securities held are worth is not counted.

    ``ax``: draw every position into that one axes instead (labels name the positions), without the
    P&L panel. Returns the figure (new, or the one holding ``ax``); raises ConfigurationError on
    empty input or an item that is not a PositionCheck.
    """
    if isinstance(checks, PositionCheck | str | bytes) or not isinstance(checks, Iterable):
        raise ConfigurationError(f"positions_chart expects {_EXPECTED_CHECKS}; got a {_describe(checks)}")
    by_position: dict[tuple[str, str], list[PositionCheck]] = {}
    for index, check in enumerate(checks):
        if not isinstance(check, PositionCheck):
            raise ConfigurationError(
                f"positions_chart expects {_EXPECTED_CHECKS}; item #{index} is a {_describe(check)}"
            )
        by_position.setdefault((check.account_id, check.instrument_uid or check.currency.upper()), []).append(
            check
        )
    if not by_position:
        raise ConfigurationError(
            f"positions_chart has nothing to draw: it expects {_EXPECTED_CHECKS}, non-empty"
        )
    for events in by_position.values():
        events.sort(key=lambda check: (_utc(check.time), check.seq))  # stable: equal keys keep their order

    if ax is None:
        panels = len(by_position) + 1
        figure: Figure = _InlineFigure(figsize=(10, 1.0 + 2.4 * panels), layout="constrained")
        axes = list(figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0])
        for (account, what), position_ax in zip(by_position, axes, strict=False):
            _draw_position(position_ax, by_position[(account, what)], label="")
            position_ax.set_title(f"{account} · {what}", loc="left", fontsize="medium")
            position_ax.set_ylabel("units" if by_position[(account, what)][0].instrument_uid else what)
        _draw_pnl(axes[-1], by_position)
        for each in axes:
            _date_axis(each)
        axes[-1].set_xlabel("time (UTC)")
    else:
        figure = _root_figure(ax)
        for (account, what), events in by_position.items():
            _draw_position(ax, events, label=f"{account} · {what}: ")
        _date_axis(ax)
        ax.set_xlabel("time (UTC)")
    return figure


def _draw_position(ax: Axes, events: Sequence[PositionCheck], *, label: str) -> None:
    times = [_x(check.time) for check in events]
    expected = [float(check.expected) for check in events]
    reported = [math.nan if check.reported is None else float(check.reported) for check in events]
    ax.step(times, expected, where="post", label=f"{label}expected", gid="expected", color="#1f77b4")
    ax.step(
        times,
        reported,
        where="post",
        label=f"{label}reported",
        gid="reported",
        color="#ff7f0e",
        linestyle="--",
    )
    for status, (name, marker, colour) in _VERDICTS.items():
        judged = [check for check in events if check.status is status]
        if judged:
            ax.scatter(
                [_x(check.time) for check in judged],
                [float(check.expected if check.reported is None else check.reported) for check in judged],
                marker=marker,
                color=colour,
                s=60,
                zorder=4,
                label=f"{label}{name}",
                gid=name,
            )
    ax.legend(loc="best", fontsize="small")


def _draw_pnl(ax: Axes, by_position: dict[tuple[str, str], list[PositionCheck]]) -> None:
    drawn = False
    for (account, currency), events in by_position.items():
        money = [check for check in events if check.is_money and check.reported is not None]
        if not money:
            continue
        first = money[0].reported
        assert first is not None  # filtered above
        ax.step(
            [_x(check.time) for check in money],
            [float(check.reported - first) for check in money if check.reported is not None],
            where="post",
            label=f"{account} · {currency}",
            gid="pnl",
        )
        drawn = True
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_title("cash P&L (reported money minus its first amount)", loc="left", fontsize="medium")
    if drawn:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no money positions reported", transform=ax.transAxes, ha="center", va="center")
