"""``rxinvest demo``: a live terminal view of several instruments and an account, then a summary.

Against the embedded simulator by default; ``--target prod`` with a token (``INVEST_TOKEN``) shows
the real market read-only (account panels need ``--account``). The view is drawn with ``rich``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

import rxinvest
from rxinvest import model as m
from rxinvest.streams import ConnectionStatus

__all__ = ["run"]

INSTRUMENTS = ("SBER_TQBR", "GAZP_TQBR", "LKOH_TQBR", "VTBR_TQBR", "YDEX_TQBR", "TMOS_TQTF")


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

    def render(self, remaining: float, reconnects: int) -> Group:
        with self.lock:
            market = Table(title="Market", expand=True)
            for column in ("instrument", "status", "last", "bid", "ask", "candle 1m (O H L C V)"):
                market.add_column(column, justify="left" if column in ("instrument", "status") else "right")
            for uid in sorted(self.prices.keys() | self.books.keys(), key=lambda u: self.tickers.get(u, u)):
                price, book, candle = self.prices.get(uid), self.books.get(uid), self.candles.get(uid)
                status = self.statuses.get(uid)
                market.add_row(
                    self.tickers.get(uid, uid[:8]),
                    status.trading_status.name.removeprefix("SECURITY_TRADING_STATUS_") if status else "",
                    _num(price.price if price else None),
                    _num(book.bids[0].price if book and book.bids else None),
                    _num(book.asks[0].price if book and book.asks else None),
                    _ohlcv(candle),
                )
            orders = Table(title="Orders (latest state)", expand=True)
            for column in ("order", "ticker", "side", "status", "done/asked", "price"):
                orders.add_column(column)
            for state in list(self.orders.values())[-8:]:
                orders.add_row(
                    state.order_id,
                    state.ticker,
                    state.direction.name.removeprefix("ORDER_DIRECTION_"),
                    state.execution_report_status.name.removeprefix("EXECUTION_REPORT_STATUS_"),
                    f"{state.lots_executed}/{state.lots_requested}",
                    _num(state.order_price.amount if state.order_price else None),
                )
            positions = Table(title="Positions", expand=True)
            positions.add_column("position")
            positions.add_column("balance", justify="right")
            for key, value in sorted(self.positions.items(), key=lambda kv: kv[0]):
                if key.startswith("money:"):
                    positions.add_row(value.currency.upper(), _num(value.amount))
                else:
                    positions.add_row(
                        self.tickers.get(key, key[:8]), f"{value.balance} (+{value.blocked} blocked)"
                    )
            footer = (
                f"{remaining:4.0f} s left · events: {sum(self.counts.values())} · reconnects: {reconnects}"
            )
            if self.errors:
                footer += f" · errors: {self.errors[-1]}"
        return Group(market, orders, positions, Panel(footer))


def _num(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def _ohlcv(candle: m.Candle | None) -> str:
    if candle is None:
        return ""
    return " ".join(map(_num, (candle.open, candle.high, candle.low, candle.close))) + f" {candle.volume}"


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
        if client.sim is not None:
            accounts = accounts or client.sim.accounts[:1]
            console.print(
                f"[bold]rxinvest demo[/bold] against the embedded simulator at {client.sim.base_url}"
            )
        else:
            console.print(f"[bold]rxinvest demo[/bold] against {client.base_url} (read-only)")
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
        with Live(view.render(duration, 0), console=console, refresh_per_second=4, transient=False) as live:
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(0.25, left))
                live.update(view.render(left, reconnects))
    console.print()
    summary = Table(title=f"Received in {duration:.0f} s")
    summary.add_column("event")
    summary.add_column("count", justify="right")
    for name, count in view.counts.most_common():
        summary.add_row(name, str(count))
    console.print(summary)
    if view.errors:
        console.print("[red]errors:[/red] " + "; ".join(view.errors))
    return view.counts
