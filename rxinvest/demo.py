"""``rxinvest demo``: a live terminal view of several instruments and an account, then a summary.

Against the embedded simulator by default; ``--target prod`` with a token (``INVEST_TOKEN``) shows
the real market read-only (account panels need ``--account``). The view is drawn with ``rich``.

Rule: the live view and the summary each fit a terminal of :data:`COLUMNS` x :data:`ROWS` (80x24),
whatever arrives: every row of the view is one line (a cell that does not fit ends in an ellipsis),
and the tables show a bounded number of rows (the first instruments, the latest orders).
"""

from __future__ import annotations

import enum
import threading
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

import rxinvest
from rxinvest import model as m
from rxinvest.streams import ConnectionStatus, Metrics

__all__ = ["run"]

INSTRUMENTS = ("SBER_TQBR", "GAZP_TQBR", "LKOH_TQBR", "VTBR_TQBR", "YDEX_TQBR", "TMOS_TQTF")
COLUMNS, ROWS = 80, 24  # the terminal the demo is drawn for
# Rows of each table, so that the view fits ROWS: a headline, the market (2 + 8 lines), a title, the
# orders (2 + 5), the positions, the status line and the last error make 22.
_MARKET_ROWS, _ORDER_ROWS = 8, 5
# The summary: a blank line, a title, a header of 2 lines, the event types, 3 lines of the client's
# metrics and the last errors make 22.
_SUMMARY_ROWS, _SUMMARY_ERRORS = 12, 3
# The tables' columns, (title, widest width): each table's widths, and 2 between columns (a padding
# and a divider), add up to COLUMNS or less, so rich never narrows a column that holds something
# short, such as the ticker.
_MARKET_COLUMNS = (
    ("ticker", 8),
    ("status", 10),
    ("last", 8),
    ("bid", 8),
    ("ask", 8),
    ("1m candle O H L C", 27),
)
_ORDER_COLUMNS = (
    ("order", 14),
    ("ticker", 8),
    ("side", 4),
    ("status", 13),
    ("done/asked", 15),
    ("price", 12),
)
_SUMMARY_COLUMNS = (("event", 30), ("count", 12))


class _View:
    """What the subscriptions have delivered so far; updated on delivery threads, read by the UI."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prices: dict[str, m.LastPrice] = {}
        self.books: dict[str, m.OrderBook] = {}
        self.candles: dict[str, m.Candle] = {}
        self.statuses: dict[str, m.TradingStatus] = {}
        self.orders: dict[str, m.OrderState] = {}
        self.positions: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.tickers: dict[str, str] = {}  # instrument uid -> ticker

    def take(self, event: Any) -> None:
        with self.lock:
            self.counts[type(event).__name__] += 1
            uid = getattr(event, "instrument_uid", "")
            if getattr(event, "ticker", ""):
                self.tickers[uid] = event.ticker
            if isinstance(event, m.LastPrice):
                self.prices[uid] = event
            elif isinstance(event, m.OrderBook):
                self.books[uid] = event
            elif isinstance(event, m.Candle):
                self.candles[uid] = event
            elif isinstance(event, m.TradingStatus):
                self.statuses[uid] = event
            elif isinstance(event, m.OrderState):
                self.orders[event.order_id] = event
            elif isinstance(event, m.PositionData | m.PositionsResponse):
                for security in event.securities:
                    self.positions[security.instrument_uid] = security
                money = (
                    [mv.available_value for mv in event.money]
                    if isinstance(event, m.PositionData)
                    else event.money
                )
                for value in money:
                    if value is not None:
                        self.positions[f"money:{value.currency}"] = value

    def fail(self, where: str) -> Any:
        def record(error: Exception) -> None:
            with self.lock:
                self.errors.append(f"{where}: {error}")

        return record

    def render(self, headline: str, remaining: float, reconnects: int) -> Group:
        """The live view: market, orders, positions and the last error, under ``headline``."""
        with self.lock:
            lines: list[RenderableType] = [_line(headline, style="bold")]
            market = _table(_MARKET_COLUMNS)
            uids = sorted(self.prices.keys() | self.books.keys(), key=lambda u: self.tickers.get(u, u))
            for uid in uids[:_MARKET_ROWS]:
                price, book, candle = self.prices.get(uid), self.books.get(uid), self.candles.get(uid)
                trading = self.statuses.get(uid)
                market.add_row(
                    self.tickers.get(uid, uid[:8]),
                    _short(trading.trading_status, "SECURITY_TRADING_STATUS_").removesuffix(" trading")
                    if trading
                    else "",
                    _num(price.price if price else None),
                    _num(book.bids[0].price if book and book.bids else None),
                    _num(book.asks[0].price if book and book.asks else None),
                    " ".join(_num(p) for p in (candle.open, candle.high, candle.low, candle.close))
                    if candle
                    else "",
                )
            lines += [market, _line("Orders (latest states)", style="bold")]
            orders = _table(_ORDER_COLUMNS)
            for state in list(self.orders.values())[-_ORDER_ROWS:]:
                orders.add_row(
                    state.order_id,
                    state.ticker,
                    _short(state.direction, "ORDER_DIRECTION_"),
                    _short(state.execution_report_status, "EXECUTION_REPORT_STATUS_"),
                    f"{state.lots_executed}/{state.lots_requested}",
                    _num(state.order_price.amount if state.order_price else None),
                )
            lines += [
                orders,
                _line("positions: " + " · ".join(self._positions())),
                _line(
                    f"{remaining:.0f} s left · {sum(self.counts.values())} events · reconnects: {reconnects}"
                ),
            ]
            if self.errors:
                lines.append(_line(f"errors: {len(self.errors)}, last: {self.errors[-1]}", style="red"))
        return Group(*lines)

    def _positions(self) -> list[str]:
        shown = []
        for key, value in sorted(self.positions.items(), key=lambda kv: kv[0]):
            if key.startswith("money:"):
                shown.append(f"{value.currency.upper()} {_num(value.amount)}")
            else:
                blocked = f" ({value.blocked} blocked)" if value.blocked else ""
                ticker = value.ticker or self.tickers.get(key, key[:8])
                shown.append(f"{ticker} {value.balance}{blocked}")
        return shown

    def summary(self, duration: float, metrics: Metrics | None = None) -> Group:
        """The most frequent event types with their counts, the client's metrics, the last errors."""
        table = _table(_SUMMARY_COLUMNS, text_columns=1)
        with self.lock:
            for name, count in self.counts.most_common(_SUMMARY_ROWS):
                table.add_row(name, str(count))
            errors = [_line(f"error: {error}", style="red") for error in self.errors[-_SUMMARY_ERRORS:]]
        lines = []
        if metrics is not None:
            lines = [
                _line(
                    f"reconnects {metrics.reconnects}, gaps {metrics.gaps}, recovered "
                    f"{metrics.recovered}, dropped {sum(metrics.dropped.values())}, conflated "
                    f"{sum(metrics.conflated.values())}"
                ),
                _line(
                    f"requests {metrics.requests_used} of {metrics.request_budget or '-'} a window, "
                    f"subscriptions {list(metrics.subscriptions)} on {metrics.connections} connections"
                ),
                _line(
                    f"backlog {metrics.backlog} (deepest {metrics.deepest}), malformed {metrics.malformed}"
                ),
            ]
        return Group(_line(f"Received in {duration:.0f} s", style="bold"), table, *lines, *errors)


def _table(columns: Sequence[tuple[str, int]], text_columns: int = 2) -> Table:
    """A table without a frame, one line per row, of ``columns`` (title, widest width): the first
    ``text_columns`` are text (to the left), the others numbers (to the right). A column takes the
    width of its content up to its widest; a cell wider than that ends in an ellipsis."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for index, (title, width) in enumerate(columns):
        justify: JustifyMethod = "left" if index < text_columns else "right"
        table.add_column(title, justify=justify, no_wrap=True, overflow="ellipsis", max_width=width)
    return table


def _line(text: str, style: str = "") -> Text:
    """``text`` on one line, cut with an ellipsis where the console ends."""
    return Text(" ".join(text.split()), style=style, no_wrap=True, overflow="ellipsis")


def _short(value: enum.Enum, prefix: str) -> str:
    """An enum member's name without its prefix, in lower case: ``normal trading``."""
    return value.name.removeprefix(prefix).lower().replace("_", " ")


def _num(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def run(
    *,
    duration: float = 20.0,
    target: str | None = None,
    token: str | None = None,
    accounts: Sequence[str] = (),
    instruments: Sequence[str] = INSTRUMENTS,
    console: Console | None = None,
) -> Counter[str]:
    """Show the live view for ``duration`` seconds; returns the count of events by type."""
    console = console or Console()
    view = _View()
    reconnects = 0

    def status(event: Any) -> None:
        nonlocal reconnects
        if isinstance(event, ConnectionStatus) and event.state == "reconnecting":
            reconnects += 1

    options: dict[str, Any] = {"sim_options": {"seed": 7}} if (target in (None, "sim") and not token) else {}
    with rxinvest.connect(token, target=target, **options) as client:
        client.statuses.subscribe(status)
        latest: list[Metrics] = []
        client.metrics(interval=min(1.0, duration / 2)).subscribe(latest.append)
        if client.sim is not None:
            accounts = accounts or client.sim.accounts[:1]
            headline = f"rxinvest demo · simulator {client.sim.base_url}"
        else:
            headline = f"rxinvest demo · {client.base_url} (read-only)"
        md = client.market_data
        md.last_prices(instruments).subscribe(view.take, view.fail("last prices"))
        md.order_books(instruments, depth=10).subscribe(view.take, view.fail("books"))
        md.candles(instruments, m.SubscriptionInterval.SUBSCRIPTION_INTERVAL_ONE_MINUTE).subscribe(
            view.take, view.fail("1-minute candles")
        )
        md.trading_statuses(instruments).subscribe(view.take, view.fail("statuses"))
        if accounts:
            client.orders.order_states(accounts).subscribe(view.take, view.fail("orders"))
            client.operations.positions(accounts).subscribe(view.take, view.fail("positions"))
        deadline = time.monotonic() + duration
        first = view.render(headline, duration, 0)
        with Live(first, console=console, refresh_per_second=4, transient=False) as live:
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(0.25, left))
                live.update(view.render(headline, left, reconnects))
    console.print()  # after the live view's last line
    console.print(view.summary(duration, latest[-1] if latest else None))
    return view.counts
